"""The pmem benchmark still runs (tiny sizes; it measures nothing here)."""
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

SIZES = (60, 120)
PHASES = ('build', 'load', 'raw', 'raw-unpickle', 'raw-target', 'commit',
          'open', 'open-storage', 'crash')


@pytest.fixture(scope='module')
def result(tmp_path_factory):
    """``(stdout, report)`` of one tiny run, shared by the tests."""
    tmp_path = tmp_path_factory.mktemp('bench-pmem')
    out = tmp_path / 'result.json'
    proc = subprocess.run(
        [sys.executable, '-m', 'bench', 'pmem', '--quick', '--sizes',
         ','.join(map(str, SIZES)), '--loads', '30', '--commits', '3',
         '--opens', '2', '--repeat', '2', '--batch', '50', '--dir',
         str(tmp_path), '--json', str(out)],
        cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, json.loads(out.read_text())


def test_bench_pmem_prints_every_row_and_writes_json(result):
    stdout, report = result
    assert report['errors'] == []
    assert 'objstore pmem storage benchmark' in stdout
    head = [line for line in stdout.splitlines() if line.startswith('row ')]
    assert len(head) == 1
    for column in ('PMem', 'objstore FS', 'ZODB FS', 'LMDB', 'ratio',
                   'target'):
        assert column in head[0]
    keys = [r['key'] for r in report['rows']]
    expected = ['%s %d' % (phase, n) for phase in PHASES for n in SIZES]
    assert keys == expected + ['open-scaling']
    assert [r for r in report['rows'] if r['target'] != 'info'] == [
        r for r in report['rows']
        if r['key'].split()[0] in ('load', 'raw-target', 'open-scaling')]
    for row in report['rows']:
        assert row['status'] in ('met', 'missed', 'info', 'not available')
        assert row['label'] in stdout


def test_bench_pmem_measures_every_available_side_every_repetition(result):
    stdout, report = result
    available = [s for s in ('pmem', 'objstore-file', 'zodb-file', 'lmdb')
                 if s not in report['skipped']]
    assert {'objstore-file', 'zodb-file'} <= set(available)
    for row in report['rows']:
        for side, runs in row['runs'].items():
            if side in available and row['key'] != 'open-scaling':
                expected = 1 if row['key'].startswith('build') else 2
                assert runs is not None and len(runs) == expected, (
                    row['key'], side)
    for side, reason in report['skipped'].items():
        assert reason.startswith('not available')
        assert 'skipped %s: not available' % side in stdout
    # A side that is not there reads n/a, and its targets say why.
    if 'pmem' in report['skipped']:
        loads = [r for r in report['rows'] if r['key'].startswith('load')]
        assert all(r['status'] == 'not available' for r in loads)
