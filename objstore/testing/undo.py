"""IStorageUndoable: transactional undo, undoLog and undoInfo."""
import time

import pytest

from objstore import errors
from objstore.interfaces import (
    IStorageIteration, IStorageRestoreable, IStorageUndoable)
from objstore.serialize import references
from objstore.storages.base import maxtid, p64, z64
from objstore.testing.harness import ConformanceBase
from objstore.testing.helpers import (
    Clock, Counter, after, commit, current, make_txn, new_object, record,
    set_value, undo, value_of)


def value(storage, oid):
    return value_of(current(storage, oid)[0])


class IStorageUndoableConformance(ConformanceBase):
    """Undo writes a new transaction; it never rewrites history."""

    def _revisions(self, storage, *values):
        oid, tid = new_object(storage, values[0])
        tids = [tid] + [set_value(storage, oid, v) for v in values[1:]]
        return oid, tids

    def test_declares_undo(self, storage):
        assert IStorageUndoable.providedBy(storage)
        assert storage.supportsUndo()

    # -- undoLog and undoInfo ---------------------------------------------

    def test_undo_log_is_newest_first_with_metadata(self, storage):
        tids = [commit(storage, {p64(n + 1): (z64, record(n))}, user='u%d' % n,
                       description='d%d' % n, extension={'n': n})
                for n in range(3)]
        log = storage.undoLog(0, 20)
        assert [d['id'] for d in log] == tids[::-1]
        for n, desc in zip((2, 1, 0), log):
            assert desc['user_name'] == b'u%d' % n
            assert desc['description'] == b'd%d' % n
            assert desc['n'] == n
            assert isinstance(desc['time'], float)

    def test_undo_log_slices(self, storage):
        tids = [new_object(storage, n)[1] for n in range(6)][::-1]

        def ids(*args):
            return [d['id'] for d in storage.undoLog(*args)]
        assert ids() == tids
        assert ids(0, 2) == tids[:2]
        assert ids(1, 3) == tids[1:3]
        assert ids(2, -3) == tids[2:5]
        assert ids(5, 20) == tids[5:]
        assert ids(6, 20) == []

    def test_undo_log_filter_and_undo_info_specification(self, storage):
        for n in range(6):
            commit(storage, {p64(n + 1): (z64, record(n))},
                   description='even' if n % 2 == 0 else 'odd',
                   extension={'n': n})
        evens = storage.undoLog(0, 20, lambda d: d['description'] == b'even')
        assert [d['n'] for d in evens] == [4, 2, 0]
        assert [d['n'] for d in storage.undoLog(
            1, 2, lambda d: d['description'] == b'odd')] == [3]
        assert [d['n'] for d in storage.undoInfo(
            specification={'description': b'odd'})] == [5, 3, 1]
        assert [d['n'] for d in storage.undoInfo(
            0, 20, {'description': b'even', 'n': 2})] == [2]
        assert len(storage.undoInfo(0, 2)) == 2

    # -- undo -------------------------------------------------------------

    def test_undo_the_last_transaction(self, storage):
        oid, (t1, t2, t3) = self._revisions(storage, 1, 2, 3)
        tid, oids = undo(storage, t3, description='undo it')
        assert oids == {oid}
        assert tid > t3 == storage.loadBefore(oid, tid)[1]
        assert current(storage, oid) == (record(2), tid)
        assert storage.history(oid)[0]['description'] == b'undo it'
        assert storage.loadSerial(oid, t3) == record(3)
        assert [d['id'] for d in storage.undoLog(0, 2)] == [tid, t3]

    def test_undo_of_an_undo_redoes(self, storage):
        oid, (t1, t2) = self._revisions(storage, 1, 2)
        undone = undo(storage, t2)[0]
        assert value(storage, oid) == 1
        undo(storage, undone)
        assert value(storage, oid) == 2

    def test_undo_of_an_older_transaction_whose_state_came_back(
            self, storage):
        oid, (t1, t2, t3) = self._revisions(storage, 'a', 'b', 'c')
        undo(storage, t3)
        assert value(storage, oid) == 'b'
        undo(storage, t2)
        assert value(storage, oid) == 'a'

    def test_undo_of_a_creation_deletes_the_object(self, storage):
        oid, created = new_object(storage, 1)
        tid = undo(storage, created)[0]
        with pytest.raises(errors.POSKeyError):
            storage.loadBefore(oid, maxtid)
        if hasattr(storage, 'load'):
            with pytest.raises(errors.POSKeyError):
                storage.load(oid)
        assert storage.loadBefore(oid, tid) == (record(1), created, tid)
        assert storage.loadSerial(oid, created) == record(1)
        if IStorageIteration.providedBy(storage):
            last = list(storage.iterator(tid))[0]
            assert [(r.oid, r.data) for r in last] == [(oid, None)]

    def test_undo_of_an_undone_creation_brings_the_object_back(
            self, storage):
        oid, created = new_object(storage, 1)
        uncreated = undo(storage, created)[0]
        tid = undo(storage, uncreated)[0]
        assert current(storage, oid) == (record(1), tid)

    def test_store_over_an_undone_creation_with_the_undos_tid(
            self, storage):
        # ZODB's FileStorage takes the undo's tid as the serial of the
        # deletion record it wrote.
        oid, created = new_object(storage, 1)
        uncreated = undo(storage, created)[0]
        tid = commit(storage, {oid: (uncreated, record('again'))})
        assert current(storage, oid) == (record('again'), tid)
        with pytest.raises(errors.ConflictError):
            commit(storage, {oid: (uncreated, record('stale'))})

    def test_a_deletion_is_undone_only_while_current_or_copied(
            self, storage):
        # As ZODB's FileStorage: a transaction that deleted an object (here
        # by undoing its creation) can be undone while its deletion record
        # is current, or the current record copies it (data_txn: an undo
        # wrote it back); another deletion since is not enough.
        oid, created = new_object(storage, 1)
        uncreated = undo(storage, created)[0]
        recreated = undo(storage, uncreated)[0]
        copied_back = undo(storage, recreated)[0]
        last = list(storage.iterator(copied_back))[0]
        assert [(r.oid, r.data, r.data_txn) for r in last] == [
            (oid, None, uncreated)]
        undo(storage, copied_back)
        deleted_again = undo(storage, storage.lastTransaction())[0]
        with pytest.raises(errors.UndoError) as info:
            undo(storage, uncreated)
        assert info.value.oid == oid
        assert storage.lastTransaction() == deleted_again
        oid, created = new_object(storage, 1)
        uncreated = undo(storage, created)[0]
        undo(storage, undo(storage, uncreated)[0])
        tid = undo(storage, uncreated)[0]
        assert current(storage, oid) == (record(1), tid)
        if IStorageRestoreable.providedBy(storage):
            # A copy keeps what the copies of deletions name.
            copy = self.new_storage()
            copy.copyTransactionsFrom(storage)
            assert [[(r.oid, r.data, r.data_txn) for r in t]
                    for t in copy.iterator()] == [
                [(r.oid, r.data, r.data_txn) for r in t]
                for t in storage.iterator()]

    def test_changed_object_raises_undo_error_and_writes_nothing(
            self, storage):
        oid, (t1, t2, t3) = self._revisions(storage, 1, 2, 3)
        with pytest.raises(errors.UndoError) as info:
            undo(storage, t2)
        assert info.value.oid == oid
        assert current(storage, oid) == (record(3), t3)
        assert storage.lastTransaction() == t3

    def test_creation_followed_by_changes_cannot_be_undone(self, storage):
        oid, (t1, t2) = self._revisions(storage, 1, 2)
        with pytest.raises(errors.UndoError):
            undo(storage, t1)
        assert value(storage, oid) == 2

    def test_changed_object_is_merged_through_conflict_resolution(
            self, storage):
        oid, t0 = new_object(storage, 0, cls=Counter)
        t1 = set_value(storage, oid, 5, cls=Counter)
        set_value(storage, oid, 7, cls=Counter)
        tid, oids = undo(storage, t1)
        assert oids == {oid}
        assert current(storage, oid)[1] == tid
        assert value(storage, oid) == 2

    def test_several_objects_in_one_undo(self, storage):
        a, b = storage.new_oid(), storage.new_oid()
        t1 = commit(storage, {a: (z64, record('a1')), b: (z64, record('b1'))})
        t2 = commit(storage, {a: (t1, record('a2')), b: (t1, record('b2'))})
        assert undo(storage, t2)[1] == {a, b}
        assert (value(storage, a), value(storage, b)) == ('a1', 'b1')

    def test_several_transactions_in_one_undo(self, storage):
        oid, (t1, t2, t3) = self._revisions(storage, 1, 2, 3)
        other, created = new_object(storage, 'other')
        tid, oids = undo(storage, t3, t2, created)
        assert oids == {oid, other}
        assert current(storage, oid) == (record(1), tid)
        with pytest.raises(errors.POSKeyError):
            storage.loadBefore(other, maxtid)

    def test_every_failing_object_is_reported(self, storage):
        a, b = storage.new_oid(), storage.new_oid()
        t1 = commit(storage, {a: (z64, record(1)), b: (z64, record(1))})
        t2 = commit(storage, {a: (t1, record(2)), b: (t1, record(2))})
        commit(storage, {a: (t2, record(3)), b: (t2, record(3))})
        with pytest.raises(errors.UndoError) as info:
            undo(storage, t2)
        failed = getattr(info.value, 'errors', [info.value])
        assert {exc.oid for exc in failed} == {a, b}

    def test_unknown_transaction_id_raises_undo_error(self, storage):
        new_object(storage, 1)
        with pytest.raises(errors.UndoError):
            undo(storage, p64(12345))

    def test_undo_outside_a_transaction_raises(self, storage):
        tid = new_object(storage, 1)[1]
        with pytest.raises(errors.StorageTransactionError):
            storage.undo(tid, make_txn())

    def test_undone_data_stays_in_history(self, storage):
        oid, (t1, t2) = self._revisions(storage, 1, 2)
        tid = undo(storage, t2)[0]
        assert [e['tid'] for e in storage.history(oid, 5)] == [tid, t2, t1]
        assert storage.loadBefore(oid, tid) == (record(2), t2, tid)
        assert storage.loadBefore(oid, after(tid))[0] == record(1)

    def test_transactions_before_a_pack_are_not_undoable(self, storage):
        clock = Clock(time.time() - 3600)
        commit(storage, {z64: (z64, record('root', refs=[p64(1)]))},
               tid=clock.tid(0))
        t1 = commit(storage, {p64(1): (z64, record(1))}, tid=clock.tid(1))
        t2 = commit(storage, {p64(1): (t1, record(2))}, tid=clock.tid(2))
        storage.pack(clock.between(1), references)
        assert [d['id'] for d in storage.undoLog(0, 20)] == [t2]
        with pytest.raises(errors.UndoError):
            undo(storage, t1)
        undo(storage, t2)
        assert value(storage, p64(1)) == 1
