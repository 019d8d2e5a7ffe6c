"""The PostgreSQL benchmark still runs (tiny sizes; it measures nothing here).

Needs the PostgreSQL server of the brief (127.0.0.1:5432, trust auth): the
tests skip with the reason when none answers, except under CI=true, where
they fail instead.
"""
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PHASES = ('add', 'update', 'warm', 'cold', 'hot', 'steamin', 'conflicts')


@pytest.fixture(scope='module')
def server():
    from bench.postgresql import server_unreachable
    reason = server_unreachable()
    if reason is not None:
        message = 'no PostgreSQL server at 127.0.0.1:5432: %s' % reason
        if os.environ.get('CI') == 'true':
            pytest.fail(message)
        pytest.skip(message)


def _run(tmp_path, *args):
    out = tmp_path / 'result.json'
    proc = subprocess.run(
        [sys.executable, '-m', 'bench', 'postgresql', '--quick', '--sizes',
         '10', '--conflict-txns', '3', '--repeat', '1', '--json', str(out)]
        + list(args),
        cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, json.loads(out.read_text())


def _existing_databases():
    from bench.postgresql import DEFAULT_SERVER, _connect_admin
    conn = _connect_admin(DEFAULT_SERVER, 'postgres')
    try:
        cur = conn.cursor()
        cur.execute('SELECT datname FROM pg_database')
        return {row[0] for row in cur.fetchall()}
    finally:
        conn.close()


def test_bench_pg_prints_the_table_and_json_with_relstorage_on_both_sides(
        server, tmp_path):
    # --calibrate runs RelStorage on both sides: this checks the harness
    # whatever state objstore's PostgreSQL storage is in.
    stdout, report = _run(tmp_path, '--calibrate')
    assert report['errors'] == []
    assert report['skipped'] == {}
    assert 'objstore PostgreSQL benchmark' in stdout
    assert 'CALIBRATION RUN' in stdout
    for column in ('phase', 'processes', 'objstore', 'RelStorage', 'ratio',
                   'target', 'met/missed'):
        assert column in stdout.split('\n-')[0]
    rows = {(r['phase'], r['procs']): r for r in report['rows']}
    assert set(rows) == {(ph, p) for ph in PHASES for p in (1, 4)}
    for row in rows.values():
        assert row['ours'] > 0 and row['ref'] > 0 and row['ratio'] > 0
        assert row['target'] == 'info'
    assert 'tx/s' in stdout
    assert report['server']['server_version']
    # A new database per side and configuration, every one dropped after.
    assert len(report['databases']) == 4
    assert not set(report['databases']) & _existing_databases()


def test_bench_pg_objstore_rows_run_or_say_not_available(server, tmp_path):
    stdout, report = _run(tmp_path, '--procs', '1')
    rows = report['rows']
    assert {r['phase'] for r in rows} == set(PHASES)
    assert all(r['target'] == '>=1.00' for r in rows)
    assert all(r['ref'] for r in rows), 'the RelStorage side always runs'
    if 'objstore' in report['skipped']:
        assert all(r['status'] == 'not available' for r in rows)
        assert all(r['ours'] is None for r in rows)
        assert 'not available' in stdout
        assert report['errors'] == []
    else:
        assert report['errors'] == []
        assert all(r['ratio'] is not None for r in rows)
        assert all(r['status'] in ('met', 'missed') for r in rows)
