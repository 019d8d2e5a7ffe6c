"""PMemStorage when its writer process is killed (SIGKILL) at random
moments, again and again, on one pool.

:func:`objstore.testing.pmem_crash.run` starts a worker process that
commits in a loop (small and big transactions on a small pool that grows,
snapshots that keep old revisions for a few commits, garbage and packs)
and kills it while it commits or while it opens and recovers the pool;
after each kill the pool must open (read-only too) to every transaction
the worker reported, and nothing of the one in flight unless all of it,
then take a commit and open through ``objstore.DB``. The next worker goes
on with the same pool. ``OBJSTORE_CRASH_KILLS`` sets how many kills
(default 15; ``python -m objstore.testing.pmem_crash --kills N`` runs a
long one), ``OBJSTORE_CRASH_SEED`` the seed.

Also here: a read-only process's snapshot must stay readable whatever
the writers do meanwhile, die or close.
"""
import os
import random
import signal
import subprocess
import sys
import textwrap

import pytest

from objstore.storages.base import p64, z64
from objstore.testing import pmem_crash
from objstore.testing.helpers import commit
from objstore.testing.pmem_recovered import node_record, read_state

KILLS = int(os.environ.get('OBJSTORE_CRASH_KILLS', '15'))

def seed():
    return int(os.environ.get('OBJSTORE_CRASH_SEED',
                              random.randrange(1 << 30)))


def test_a_writer_killed_again_and_again_loses_nothing_acknowledged(
        tmp_path):
    result = pmem_crash.run(str(tmp_path), KILLS, seed())
    assert not result.failures, '\n'.join(result.failures)
    assert result.kills == KILLS
    assert result.transactions > KILLS, result.summary()


def test_a_snapshot_held_across_killed_writers_reads_the_same(tmp_path):
    """A read-only storage here holds snapshots across kills (and the
    checks' own commits and clean closes)."""
    result = pmem_crash.run(str(tmp_path), max(4, KILLS // 2), seed(),
                            readers=0.7)
    assert not result.failures, '\n'.join(result.failures)
    assert result.readers >= 1, result.summary()


# A writer process: commits a new revision of each object ``rounds``
# times, then closes the pool or dies.
WRITER = textwrap.dedent('''
    import os, signal, sys
    from objstore.storages.base import p64
    from objstore.storages.pmem import PMemStorage
    from objstore.testing.helpers import commit
    from objstore.testing.pmem_recovered import node_record
    path, end, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    storage = PMemStorage(path)
    for n in range(rounds):
        for i in range(1, 6):
            oid = p64(i)
            commit(storage, {oid: (storage.load(oid)[1],
                                   node_record('writer %d' % n, 700))})
    if end == 'die':
        os.kill(os.getpid(), signal.SIGKILL)
    storage.close()
''')


def writer(path, end, rounds=3):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env['PYTHONPATH'] = root + os.pathsep + env.get('PYTHONPATH', '')
    proc = subprocess.run([sys.executable, '-c', WRITER, path, end,
                           str(rounds)], env=env, capture_output=True,
                          text=True, timeout=60)
    expected = -signal.SIGKILL if end == 'die' else 0
    assert proc.returncode == expected, proc.stderr


@pytest.mark.parametrize('end', ['die', 'close'])
def test_a_reader_snapshot_outlives_writers_that_end(tmp_path, end):
    """A reader holds a snapshot; a writer process supersedes every
    object in it and ends (dies, or closes the pool cleanly), then a next
    writer does the same: the snapshot reads the same all along."""
    from objstore.storages.pmem import PMemStorage
    path = str(tmp_path / 'data.pool')
    oids = [p64(i) for i in range(1, 6)]
    storage = PMemStorage(path, create=True)
    try:
        for oid in oids:
            commit(storage, {oid: (z64, node_record('first', 700))})
    finally:
        storage.close()
    reader = PMemStorage(path, read_only=True)
    try:
        instance = reader.new_instance()
        instance.poll_invalidations()
        held = read_state(instance, oids, fresh=False)
        writer(path, end)
        assert read_state(instance, oids, fresh=False) == held
        writer(path, end)
        assert read_state(instance, oids, fresh=False) == held
        instance.release()
    finally:
        reader.close()
