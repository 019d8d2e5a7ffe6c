"""The storage benchmark still runs (tiny sizes; it measures nothing here)."""
import json
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _storages_bench():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from bench import storages
    return storages


def _run(tmp_path, *args):
    out = tmp_path / 'result.json'
    code = _storages_bench().main(
        ['--sizes', '30', '--batch', '10', '--commits', '5', '--repeat', '1',
         '--dir', str(tmp_path), '--json', str(out)] + list(args))
    assert code == 0
    return json.loads(out.read_text())


def test_bench_memory_pair_fills_every_row_without_errors(tmp_path, capsys):
    report = _run(tmp_path, '--pairs', 'memory')
    assert report['errors'] == []
    rows = {r['key']: r for r in report['rows']}
    for key in ('store 30', 'load 30', 'loadBefore 30', 'iterate 30',
                'pack 30', 'commit'):
        assert rows[key]['ratio'] > 0, key
    assert 'memory' in capsys.readouterr().out


def test_bench_file_rows_run_on_zodb_both_sides(tmp_path):
    # --calibrate drives ZODB's FileStorage on both sides: this checks the
    # harness (child writer, crash copy, open rows) whatever state the
    # objstore FileStorage is in.
    report = _run(tmp_path, '--pairs', 'file', '--calibrate',
                  '--open-records', '200')
    assert report['errors'] == []
    keys = {r['key'] for r in report['rows'] if r['ratio'] is not None}
    assert {'store 30', 'open-clean 200', 'open-crash 200', 'open-scan 200',
            'commit', 'commit/fsync'} <= keys


def test_bench_file_pair_runs_every_row_without_errors(tmp_path):
    report = _run(tmp_path, '--pairs', 'file', '--open-records', '200')
    if 'file' in report['skipped']:
        pytest.skip(report['skipped']['file'])
    assert report['errors'] == []
    keys = {r['key'] for r in report['rows'] if r['ratio'] is not None}
    assert {'store 30', 'load 30', 'loadBefore 30', 'iterate 30', 'pack 30',
            'open-clean 200', 'open-crash 200', 'open-scan 200',
            'crash-vs-scan', 'commit', 'commit/fsync'} <= keys
