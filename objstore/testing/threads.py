"""IStorage under threads: unique oids, serialized commits, readers that
never see part of a transaction, tpc_begin that waits its turn."""
import threading
import time

from objstore.serialize import references
from objstore.storages.base import maxtid, z64
from objstore.testing.harness import ConformanceBase
from objstore.testing.helpers import (
    after, commit, current, make_txn, new_object, record, set_value,
    value_of)


def run_threads(target, count, *args):
    """Run ``target(n, *args)`` in ``count`` threads; re-raise a failure."""
    failures = []

    def wrapper(n):
        try:
            target(n, *args)
        except BaseException as exc:
            failures.append(exc)
    threads = [threading.Thread(target=wrapper, args=(n,))
               for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if failures:
        raise failures[0]


class ConcurrencyConformance(ConformanceBase):
    """Thread safety of one storage instance."""

    def test_new_oid_is_unique_across_threads(self, storage):
        results = [[] for _ in range(8)]

        def allocate(n):
            for _ in range(250):
                results[n].append(storage.new_oid())
        run_threads(allocate, 8)
        oids = [oid for result in results for oid in result]
        assert len(set(oids)) == len(oids) == 2000

    def test_commits_from_threads_are_serialized(self, storage):
        tids = []

        def writer(n):
            oid, tid = new_object(storage, (n, 0))
            tids.append(tid)
            for i in range(1, 15):
                tid = set_value(storage, oid, (n, i))
                tids.append(tid)
        run_threads(writer, 4)
        assert len(set(tids)) == 60
        assert storage.lastTransaction() == max(tids)
        assert len(storage) == 4

    def test_readers_see_whole_transactions_only(self, storage):
        # Each transaction writes the same value to two objects; a reader
        # reading both as of one lastTransaction() must see equal values.
        x, y = storage.new_oid(), storage.new_oid()
        commit(storage, {x: (z64, record(0)), y: (z64, record(0))})
        stop = threading.Event()

        def writer():
            try:
                for n in range(1, 100):
                    sx, sy = current(storage, x)[1], current(storage, y)[1]
                    commit(storage, {x: (sx, record(n)), y: (sy, record(n))})
            finally:
                stop.set()

        def reader(n):
            while not stop.is_set():
                before = after(storage.lastTransaction())
                values = [value_of(storage.loadBefore(oid, before)[0])
                          for oid in (x, y)]
                assert values[0] == values[1], values
        thread = threading.Thread(target=writer)
        thread.start()
        run_threads(reader, 3)
        thread.join(60)
        assert value_of(current(storage, x)[0]) == 99

    def test_tpc_begin_waits_for_the_transaction_in_progress(self, storage):
        oid, tid = new_object(storage, 'old')
        txn = make_txn()
        storage.tpc_begin(txn)
        storage.store(oid, tid, record('first'), '', txn)
        storage.tpc_vote(txn)
        done = []
        other = threading.Thread(
            target=lambda: done.append(new_object(storage, 'second')[1]))
        other.start()
        other.join(0.2)
        assert done == []
        # Uncommitted data is invisible meanwhile.
        assert current(storage, oid) == (record('old'), tid)
        first = storage.tpc_finish(txn)
        other.join(10)
        assert done and done[0] > first

    def test_pack_while_others_commit(self, storage):
        child = storage.new_oid()
        root = record('root', refs=[child])
        commit(storage, {z64: (z64, root), child: (z64, record(0))})

        def writer(n):
            for i in range(1, 40):
                set_value(storage, child, i)
                new_object(storage, 'garbage')

        def packer(n):
            for _ in range(10):
                storage.pack(time.time(), references)
                time.sleep(0.001)
        run_threads(lambda n: (writer if n == 0 else packer)(n), 2)
        storage.pack(time.time(), references)
        assert value_of(current(storage, child)[0]) == 39
        assert storage.loadBefore(z64, maxtid)[0] == root
        assert len(storage) == 2
