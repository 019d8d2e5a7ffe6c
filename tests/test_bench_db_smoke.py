"""The database benchmark still runs (tiny sizes; it measures nothing here)."""
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _run(tmp_path, *args):
    out = tmp_path / 'result.json'
    proc = subprocess.run(
        [sys.executable, '-m', 'bench', 'db', '--quick', '--sizes', '20',
         '--duration', '0.05', '--repeat', '1', '--dir', str(tmp_path),
         '--json', str(out)] + list(args),
        cwd=str(ROOT), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, json.loads(out.read_text())


def test_bench_db_prints_the_table_and_writes_json_on_zodb_both_sides(tmp_path):
    # --calibrate runs ZODB's DB on both sides: this checks the harness
    # whatever state objstore's DB is in.
    stdout, report = _run(tmp_path, '--calibrate')
    assert report['errors'] == []
    assert 'objstore database benchmark' in stdout
    assert 'time travel' in stdout and 'tx/s' in stdout
    keys = {(r['pair'], r['key']) for r in report['rows']
            if r['ratio'] is not None}
    for pair in ('memory', 'file'):
        for phase in ('add', 'update', 'cold', 'warm', 'hot', 'travel'):
            assert (pair, '%s 20' % phase) in keys
        assert (pair, 'travel/cold objstore 20') in keys
        assert (pair, 'contention') in keys


def test_bench_db_objstore_pairs_run_every_phase_without_errors(tmp_path):
    stdout, report = _run(tmp_path, '--clock', 'cpu')
    if report['skipped']:
        pytest.skip('; '.join(report['skipped'].values()))
    assert report['errors'] == []
    rows = [r for r in report['rows'] if r['target'] != 'info']
    assert rows and all(r['ratio'] is not None for r in rows)
    assert 'objstore DB on objstore FileStorage' in stdout
    assert 'clock: CPU time' in stdout
