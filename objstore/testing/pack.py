"""IStorage.pack: old revisions go, the revision current at the pack time
stays, everything later stays; with gc, unreachable objects go."""
import time

import pytest

from objstore import errors
from objstore.interfaces import IStorageIteration, IStorageUndoable
from objstore.serialize import references
from objstore.storages.base import maxtid, p64, z64
from objstore.testing.harness import ConformanceBase
from objstore.testing.helpers import (
    Clock, after, commit, current, make_txn, record)

A, B, C, D, E = (p64(n) for n in range(1, 6))


class PackClock(ConformanceBase):
    """Helpers for tests that pack: transactions with forced tids at
    moments ten seconds apart, an hour ago, so that a pack time can fall
    between two of them."""

    @pytest.fixture(autouse=True)
    def _clock(self):
        self.clock = Clock(time.time() - 3600)

    def put(self, storage, k, records):
        """Commit ``{oid: data}`` at moment ``k`` over the current serials."""
        stores = {}
        for oid, data in records.items():
            try:
                serial = current(storage, oid)[1]
            except errors.POSKeyError:
                serial = z64
            stores[oid] = (serial, data)
        return commit(storage, stores, tid=self.clock.tid(k))

    def pack(self, storage, k, referencesf=references, **kw):
        storage.pack(self.clock.between(k), referencesf, **kw)

    def assert_gone(self, storage, *oids):
        for oid in oids:
            with pytest.raises(errors.POSKeyError):
                storage.loadBefore(oid, maxtid)


class PackConformance(PackClock):
    """IStorage.pack."""

    def test_pack_of_an_empty_storage(self, storage):
        storage.pack(time.time(), references)
        assert storage.lastTransaction() == z64

    def test_revision_current_at_t_and_later_ones_stay(self, storage):
        t0 = self.put(storage, 0, {z64: record('root', refs=[A])})
        t1, t2, t3 = (self.put(storage, k, {A: record(k)}) for k in (1, 2, 3))
        self.pack(storage, 2)
        with pytest.raises(errors.POSKeyError):
            storage.loadSerial(A, t1)
        assert storage.loadBefore(A, t2) is None
        assert storage.loadBefore(A, after(t2)) == (record(2), t2, t3)
        assert storage.loadBefore(A, maxtid) == (record(3), t3, None)
        assert [e['tid'] for e in storage.history(A, 10)] == [t3, t2]
        assert current(storage, z64) == (record('root', refs=[A]), t0)

    def test_pack_in_the_future_keeps_current_data(self, storage):
        self.put(storage, 0, {z64: record('root', refs=[A])})
        self.put(storage, 1, {A: record(1)})
        t2 = self.put(storage, 2, {A: record(2)})
        storage.pack(time.time() + 10000, references)
        assert current(storage, A) == (record(2), t2)
        assert len(storage.history(A, 10)) == 1

    def test_gc_removes_unreachable_objects_and_cycles(self, storage):
        t0 = self.put(storage, 0, {
            z64: record('root', refs=[A]), A: record('a', refs=[B]),
            B: record('b'), C: record('c'),
            D: record('d', refs=[E]), E: record('e', refs=[D])})
        self.pack(storage, 0)
        self.assert_gone(storage, C, D, E)
        with pytest.raises(errors.POSKeyError):
            storage.loadSerial(C, t0)
        assert [current(storage, oid)[0] for oid in (A, B)] == [
            record('a', refs=[B]), record('b')]
        assert len(storage) == 3

    def test_objects_unlinked_before_t_are_collected(self, storage):
        self.put(storage, 0, {z64: record('root', refs=[A]),
                              A: record('a', refs=[B]), B: record('b')})
        self.put(storage, 1, {z64: record('root')})
        self.pack(storage, 1)
        self.assert_gone(storage, A, B)

    def test_weak_references_do_not_keep_objects_alive(self, storage):
        self.put(storage, 0, {z64: record('root', refs=[A], weak=[B]),
                              A: record('a', weak=[C]), B: record('b'),
                              C: record('c')})
        self.pack(storage, 0)
        self.assert_gone(storage, B, C)
        assert current(storage, A)[0] == record('a', weak=[C])

    def test_references_into_other_databases_are_ignored(self, storage):
        # A has the oid the other database's object has; the reference
        # does not keep this database's A alive. D is a dangling oid.
        self.put(storage, 0, {z64: record('root', xrefs=[A], refs=[D]),
                              A: record('a')})
        self.pack(storage, 0)
        self.assert_gone(storage, A)
        assert current(storage, z64)[0] == record('root', xrefs=[A], refs=[D])

    def test_without_gc_unreachable_objects_stay(self, storage):
        self.put(storage, 0, {z64: record('root'), C: record(1)})
        t1 = self.put(storage, 1, {C: record(2)})
        self.pack(storage, 1, gc=False)
        assert current(storage, C) == (record(2), t1)
        assert len(storage.history(C, 10)) == 1

    def test_objects_written_or_linked_after_t_stay(self, storage):
        self.put(storage, 0, {z64: record('root'), A: record('a')})
        t1 = self.put(storage, 1, {C: record('new, unreferenced')})
        self.put(storage, 2, {z64: record('root', refs=[A])})
        self.pack(storage, 0)
        assert current(storage, C) == (record('new, unreferenced'), t1)
        assert current(storage, A)[0] == record('a')

    def test_objects_unlinked_after_t_stay(self, storage):
        t0 = self.put(storage, 0, {z64: record('root', refs=[A]),
                                   A: record('a')})
        self.put(storage, 1, {z64: record('root')})
        self.pack(storage, 0)
        assert current(storage, A) == (record('a'), t0)
        assert storage.loadBefore(z64, after(t0))[0] == record(
            'root', refs=[A])

    def test_pack_uses_only_the_given_referencesf(self, storage):
        root = record('root', refs=[A])
        self.put(storage, 0, {z64: root, A: record('a'), B: record('b')})

        def only_b(data, oids=None):
            oids = [] if oids is None else oids
            if data == root:
                oids.append(B)
            return oids
        self.pack(storage, 0, referencesf=only_b)
        self.assert_gone(storage, A)
        assert current(storage, B)[0] == record('b')

    def test_packing_to_an_earlier_time_loses_nothing(self, storage):
        self.put(storage, 0, {z64: record('root', refs=[A]), A: record(0)})
        self.put(storage, 1, {A: record(1, refs=[B]), B: record('b')})
        t2 = self.put(storage, 2, {A: record(2, refs=[B])})
        self.pack(storage, 2)
        try:
            self.pack(storage, 0)
        except errors.StorageError:
            pass
        assert current(storage, A) == (record(2, refs=[B]), t2)
        assert current(storage, B)[0] == record('b')

    def test_iteration_after_pack_shows_only_kept_records(self, storage):
        if not IStorageIteration.providedBy(storage):
            pytest.skip('the storage does not iterate')
        t0 = self.put(storage, 0, {z64: record('root', refs=[A]),
                                   A: record(0), C: record('c')})
        t1 = self.put(storage, 1, {A: record(1)})
        t2 = self.put(storage, 2, {A: record(2)})
        self.pack(storage, 1)
        seen = {(txn.tid, rec.oid) for txn in storage.iterator()
                for rec in txn}
        assert seen == {(t0, z64), (t1, A), (t2, A)}

    def _statuses(self, storage):
        return [(txn.tid, txn.status) for txn in storage.iterator()]

    def test_pack_marks_kept_transactions_and_drops_emptied_ones(
            self, storage):
        # As ZODB's FileStorage (fspack): every transaction before the pack
        # time that keeps a record gets status 'p', thinned or not; one
        # that keeps nothing (all its records dropped, or none to begin
        # with) leaves iteration and the undo log; later ones stay as
        # they were.
        if not IStorageIteration.providedBy(storage):
            pytest.skip('the storage does not iterate')
        t0 = self.put(storage, 0, {z64: record('root', refs=[A]),
                                   A: record(0), C: record('c')})
        t1 = self.put(storage, 1, {A: record(1)})
        self.put(storage, 2, {D: record('unreachable')})
        commit(storage, tid=self.clock.tid(3))
        t4 = self.put(storage, 4, {A: record(4)})
        self.pack(storage, 3)
        assert self._statuses(storage) == [(t0, 'p'), (t1, 'p'), (t4, ' ')]
        assert [r.oid for r in next(storage.iterator(t0, t0))] == [z64]
        if IStorageUndoable.providedBy(storage):
            assert [d['id'] for d in storage.undoLog(0, 20)] == [t4]
            txn = make_txn()
            storage.tpc_begin(txn)
            try:
                with pytest.raises(errors.UndoError):
                    storage.undo(t1, txn)
            finally:
                storage.tpc_abort(txn)

    def test_the_newest_transaction_stays_even_when_pack_empties_it(
            self, storage):
        # objstore keeps it (ZODB's FileStorage drops it) so that iteration
        # ends at lastTransaction(), also after a FileStorage reopens.
        if not IStorageIteration.providedBy(storage):
            pytest.skip('the storage does not iterate')
        t0 = self.put(storage, 0, {z64: record('root')})
        t1 = self.put(storage, 1, {C: record('unreachable')})
        storage.pack(time.time(), references)
        assert self._statuses(storage) == [(t0, 'p'), (t1, 'p')]
        assert list(next(storage.iterator(t1))) == []
        assert storage.lastTransaction() == t1
        if IStorageUndoable.providedBy(storage):
            assert storage.undoLog(0, 20) == []
