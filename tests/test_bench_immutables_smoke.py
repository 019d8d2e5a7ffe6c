"""The immutables benchmark still runs (tiny sizes; it measures nothing here)."""
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

DICT_KEYS = ('create', 'store', 'store-bytes', 'update', 'update-bytes',
             'update-block', 'update-commit')
HISTORY_KEYS = ('build', 'query', 'query-cold')
STATUSES = {'met', 'missed', 'info', 'not available', 'error'}


def _run(tmp_path, *args):
    out = tmp_path / 'result.json'
    proc = subprocess.run(
        [sys.executable, '-m', 'bench', 'immutables', '--quick',
         '--entries', '50', '--revisions', '300', '--repeat', '2',
         '--dir', str(tmp_path), '--json', str(out)] + list(args),
        cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, json.loads(out.read_text())


def test_bench_immutables_prints_every_row_and_writes_json(tmp_path):
    stdout, report = _run(tmp_path)
    assert report['errors'] == []
    assert 'objstore immutables benchmark' in stdout
    assert 'shoobx.immutable' in stdout
    rows = {(r['group'], r['key']): r for r in report['rows']}
    assert list(rows) == ([('dict', k) for k in DICT_KEYS]
                          + [('history', k) for k in HISTORY_KEYS])
    for row in report['rows']:
        assert row['status'] in STATUSES
        assert row['label'] in stdout
    for key in ('create', 'update', 'update-bytes'):
        row = rows['dict', key]
        assert len(row['ours_runs']) == len(row['ref_runs']) == 2
        assert row['ratio'] is not None and row['status'] in ('met', 'missed')
    assert rows['dict', 'update']['target'] == '<= 5.00 ms'
    assert rows['dict', 'update-bytes']['target'] == '<= 16.0 KiB'
    assert rows['history', 'query']['target'] == '<= 2.00 ms'
    assert len(rows['history', 'query']['ref_runs']) == 2


def test_bench_immutables_measures_the_history_of_the_container(tmp_path):
    stdout, report = _run(tmp_path)
    if 'objstore history' in report['skipped']:
        pytest.skip(report['skipped']['objstore history'])
    rows = {r['key']: r for r in report['rows'] if r['group'] == 'history'}
    assert rows['query']['status'] in ('met', 'missed')
    assert len(rows['query']['ours_runs']) == 2
    assert rows['query-cold']['ours'] is not None


def test_bench_immutables_without_the_container_says_not_available(
        tmp_path, monkeypatch):
    from bench import immutables
    monkeypatch.setattr(immutables, '_container_class',
                        lambda: (None, 'ImportError: no container here'))
    opts = immutables.parse_args(
        ['--quick', '--entries', '20', '--revisions', '200', '--repeat', '1',
         '--dir', str(tmp_path)])
    report = immutables.run(opts, log=lambda message: None)
    assert report['errors'] == []
    history = [r for r in report['rows'] if r['group'] == 'history']
    assert [r['status'] for r in history] == ['not available'] * 3
    assert history[1]['ref'] is not None    # shoobx still measured
    text = immutables.format_report(report)
    assert 'n/a' in text and 'no container here' in text


def test_bench_immutables_without_history_has_only_the_dict_rows(tmp_path):
    _, report = _run(tmp_path, '--revisions', '0')
    assert {r['group'] for r in report['rows']} == {'dict'}
    assert report['errors'] == []
