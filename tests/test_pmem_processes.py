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
"""
import os
import random

from objstore.testing import pmem_crash

KILLS = int(os.environ.get('OBJSTORE_CRASH_KILLS', '15'))


def test_a_writer_killed_again_and_again_loses_nothing_acknowledged(
        tmp_path):
    seed = int(os.environ.get('OBJSTORE_CRASH_SEED',
                              random.randrange(1 << 30)))
    result = pmem_crash.run(str(tmp_path), KILLS, seed)
    assert not result.failures, '\n'.join(result.failures)
    assert result.kills == KILLS
    assert result.transactions > KILLS, result.summary()
