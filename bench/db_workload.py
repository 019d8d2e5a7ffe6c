"""The database-level workload of ``python -m bench db``: objects, phases.

One *side* is a database class (objstore's ``DB`` or ZODB's ``DB``) on a
storage system of :mod:`bench.systems`. :func:`object_phases` runs the
object phases on one side, :func:`contention` the threaded one. Both sides
get the same objects (:class:`Item`, in an ``OOBTree`` under the root),
the same transactions, the same traversal and the same cache size; every
timed region goes through :func:`timed` (``os.sync()`` and
``gc.collect()`` before it, the collector enabled inside it).
"""
import cProfile
import gc
import os
import pstats
import random
import threading
import time

import persistent
import transaction
from BTrees.OOBTree import OOBTree

from bench import systems
from bench.workload import Failure

#: What a timed region's seconds are: elapsed time, or the CPU time of the
#: whole process (immune to other processes taking the CPUs, blind to
#: waiting for the disk).
CLOCKS = {'wall': time.perf_counter, 'cpu': time.process_time}

_WORDS = ('object storage revision commit history record transaction index '
          'checkpoint snapshot packing garbage collection durable atomic '
          'isolated consistent python persistent reference').split()


def _bodies(count):
    rnd = random.Random(0)
    return [' '.join(rnd.choice(_WORDS) for _ in range(30))[:140]
            for _ in range(count)]


#: Item texts, made once: building them in the add phase would time the
#: random module more than the databases.
_BODIES = _bodies(997)


class Item(persistent.Persistent):
    """The benchmark's object: a few attributes, a record of ~300 bytes."""

    def __init__(self, i):
        self.title = 'item %d' % i
        self.body = _BODIES[i % len(_BODIES)]
        self.count = i
        self.revision = 1
        self.tags = ('bench', 'item', 'n%d' % (i % 7))


def touch_all(tree):
    """Read one attribute of every item, in key order (loads ghosts);
    the sum of their ``count``."""
    total = 0
    for item in tree.values():
        total += item.count
    return total


#: Passes over the cached items in the hot phase (one pass is too short
#: to time steadily); the phase's time is the mean pass.
HOT_PASSES = 10


def touch_all_hot(tree):
    for _ in range(HOT_PASSES - 1):
        touch_all(tree)
    return touch_all(tree)


# -- sides ---------------------------------------------------------------------

class Side:
    """A database class on one storage system."""

    def __init__(self, family, storage_name):
        #: 'objstore' or 'ZODB': whose DB (and Connection) runs
        self.family = family
        self.system = systems.get(storage_name)
        self.kind = self.system.kind
        self.label = '%s DB on %s' % (family, self.system.label)

    def db_class(self):
        if self.family == 'ZODB':
            from ZODB import DB
            return DB
        from objstore.db import DB
        return DB

    def check(self):
        """None when this side can run, else a one-line reason."""
        try:
            self.db_class()
        except Exception as exc:
            return '%s: %s' % (type(exc).__name__, exc)
        return systems.check_available(
            [k for k, v in systems.SYSTEMS.items()
             if v is type(self.system)][0])

    def create(self, directory):
        return self.system.create(directory)

    def make_db(self, storage, cache_size):
        # Both caches hold every object, so no phase measures eviction.
        return self.db_class()(storage, cache_size=cache_size)

    def drop_db(self, db, storage, directory):
        """Close ``db``; a storage with the same data, opened anew (file
        storages) or the same instance (memory storages, which lose their
        data when closed: their DB is dropped, not closed)."""
        if self.kind == 'file':
            db.close()
            return self.system.open(directory)
        return storage


def cache_size_for(n):
    return 2 * n + 1000


# -- object phases -------------------------------------------------------------

OBJECT_PHASES = ('add', 'update', 'cold', 'warm', 'hot', 'travel')


def timed(func, profile=None, clock='wall'):
    """``(seconds, result)`` of ``func()`` on ``CLOCKS[clock]``, after
    ``os.sync()`` and a full collection, as :func:`bench.workload.timed`."""
    now = CLOCKS[clock]
    os.sync()
    gc.collect()
    profiler = None if profile is None else cProfile.Profile()
    start = now()
    result = func() if profiler is None else profiler.runcall(func)
    elapsed = now() - start
    if profiler is not None:
        _save_profiles(profile, [profiler])
    return elapsed, result


def object_phases(side, directory, n, profile=None, clock='wall'):
    """Time the object phases on one side; ``({phase: seconds}, info)``.

    ``profile(phase)``, when given, names the cProfile stats file of a
    phase. Results are checked after each phase (untimed).
    """
    def prof(phase):
        return None if profile is None else profile(phase)

    def timed_phase(func, phase):
        return timed(func, prof(phase), clock)

    cache_size = cache_size_for(n)
    results, info = {}, {}
    tm = transaction.TransactionManager()
    storage = side.create(directory)
    db = side.make_db(storage, cache_size)
    try:
        conn = db.open(transaction_manager=tm)
        root = conn.root()
        tm.commit()

        def add():
            tree = OOBTree()
            root['items'] = tree
            for i in range(n):
                tree[i] = Item(i)
            tm.commit()
            return tree
        results['add'], tree = timed_phase(add, 'add')
        add_tid = tree[0]._p_serial
        first = tree[n // 2]
        info['record_bytes'] = len(storage.load(first._p_oid, '')[0])

        def update():
            for item in tree.values():
                item.count += 1
                item.revision = 2
            tm.commit()
        results['update'], _ = timed_phase(update, 'update')
        if tree[n // 2]._p_serial == add_tid:
            raise Failure('the update commit left the items\' serial unchanged')
        updated_sum = n * (n - 1) // 2 + n

        tm.abort()
        conn.close()
        storage = side.drop_db(db, storage, directory)
        db = None

        def cold():
            new_db = side.make_db(storage, cache_size)
            conn = new_db.open(transaction_manager=tm)
            tree = conn.root()['items']
            return new_db, conn, tree, touch_all(tree)
        results['cold'], (db, conn, tree, total) = timed_phase(cold, 'cold')
        _check_sum('cold', total, updated_sum)

        conn.cacheMinimize()
        results['warm'], total = timed_phase(lambda: touch_all(tree), 'warm')
        _check_sum('warm', total, updated_sum)
        results['hot'], total = timed_phase(lambda: touch_all_hot(tree),
                                            'hot')
        results['hot'] /= HOT_PASSES
        _check_sum('hot', total, updated_sum)

        tm.abort()
        conn.close()
        storage = side.drop_db(db, storage, directory)
        db = None

        def travel():
            new_db = side.make_db(storage, cache_size)
            conn = new_db.open(transaction_manager=tm, at=add_tid)
            tree = conn.root()['items']
            return new_db, conn, touch_all(tree)
        results['travel'], (db, conn, total) = timed_phase(travel, 'travel')
        _check_sum('travel', total, n * (n - 1) // 2)
        tm.abort()
        conn.close()
    finally:
        if db is not None:
            db.close()
        elif side.kind == 'file':
            storage.close()
    return results, info


def _check_sum(phase, got, expected):
    if got != expected:
        raise Failure('%s: the items\' counts add up to %d, expected %d'
                      % (phase, got, expected))


# -- contention ----------------------------------------------------------------

SHARED = 10
START_BALANCE = 1000


def contention(side, directory, duration, threads=2, profile=None):
    """Threads, each with its own connection and transaction manager,
    moving one unit between two random objects of ``SHARED`` in each
    transaction, with retries, for ``duration`` seconds.

    Returns ``(seconds per committed transaction, info)``; checks afterwards
    that every object's balance is what the committed transfers made it.
    ``profile`` (a file name) profiles every thread into one stats file.
    """
    storage = side.create(directory)
    db = side.make_db(storage, cache_size_for(SHARED))
    try:
        tm = transaction.TransactionManager()
        conn = db.open(transaction_manager=tm)
        conn.root()['shared'] = [Item(i) for i in range(SHARED)]
        for item in conn.root()['shared']:
            item.count = START_BALANCE
        tm.commit()
        conn.close()

        barrier = threading.Barrier(threads + 1)
        stats = [None] * threads
        profiles = [None] * threads
        errors = []

        def work(k):
            try:
                stats[k] = _transfers(db, k, barrier, duration, profiles,
                                      profile is not None)
            except BaseException as exc:
                errors.append(exc)
                barrier.abort()

        workers = [threading.Thread(target=work, args=(k,), daemon=True)
                   for k in range(threads)]
        for worker in workers:
            worker.start()
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass    # a worker failed before the start: its error follows
        start = time.perf_counter()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - start
        if errors:
            raise errors[0]
        if profile is not None:
            _save_profiles(profile, [p for p in profiles if p is not None])

        expected = [START_BALANCE] * SHARED
        commits = retries = 0
        for moved, done, retried in stats:
            commits += done
            retries += retried
            for i, delta in enumerate(moved):
                expected[i] += delta
        tm = transaction.TransactionManager()
        conn = db.open(transaction_manager=tm)
        got = [item.count for item in conn.root()['shared']]
        tm.abort()
        conn.close()
        if got != expected:
            raise Failure('balances after contention %r, the committed '
                          'transfers make %r' % (got, expected))
        if not commits:
            raise Failure('no transaction committed in %.2f s' % elapsed)
    finally:
        db.close()
    return elapsed / commits, {'commits': commits, 'retries': retries,
                               'seconds': elapsed}


def _transfers(db, k, barrier, duration, profiles, profiling):
    rnd = random.Random(k)
    tm = transaction.TransactionManager()
    conn = db.open(transaction_manager=tm)
    moved = [0] * SHARED
    done = retries = 0
    profiler = cProfile.Profile() if profiling else None
    barrier.wait()
    deadline = time.perf_counter() + duration
    if profiler is not None:
        profiler.enable()
    try:
        while time.perf_counter() < deadline:
            a, b = rnd.sample(range(SHARED), 2)
            tries = 0
            for attempt in tm.attempts(1000):
                with attempt:
                    tries += 1
                    shared = conn.root()['shared']
                    shared[a].count -= 1
                    shared[b].count += 1
            retries += tries - 1
            moved[a] -= 1
            moved[b] += 1
            done += 1
    finally:
        if profiler is not None:
            profiler.disable()
            profiles[k] = profiler
        tm.abort()
        conn.close()
    return moved, done, retries


def _save_profiles(path, profilers):
    if not profilers:
        return
    if os.path.exists(path):
        stats = pstats.Stats(path)
        for p in profilers:
            stats.add(p)
    else:
        stats = pstats.Stats(profilers[0])
        for p in profilers[1:]:
            stats.add(p)
    stats.dump_stats(path)
