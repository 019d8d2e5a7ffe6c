"""Write conflicts (IStorage.store) and read verification
(ReadVerifyingStorage.checkCurrentSerialInTransaction)."""
import threading

import pytest
from transaction.interfaces import TransientError

from objstore import errors
from objstore.interfaces import ReadVerifyingStorage
from objstore.storages.base import maxtid, z64
from objstore.testing.harness import ConformanceBase
from objstore.testing.helpers import (
    Counter, commit, current, make_txn, new_object, record, set_value,
    value_of)

ITEM = 'objstore.testing.helpers.Item'


class ConflictConformance(ConformanceBase):
    """A stale serial is resolved through _p_resolveConflict or refused."""

    def test_stale_serial_raises_conflict_error_naming_oid_and_class(
            self, storage):
        oid, t1 = new_object(storage, 1)
        t2 = set_value(storage, oid, 2)
        with pytest.raises(errors.ConflictError) as info:
            commit(storage, {oid: (t1, record('stale'))})
        exc = info.value
        assert isinstance(exc, TransientError)
        assert exc.oid == oid
        assert exc.class_name == ITEM
        assert exc.serials == (t2, t1)
        assert current(storage, oid) == (record(2), t2)

    def test_storing_an_existing_oid_as_new_conflicts(self, storage):
        oid, tid = new_object(storage, 1)
        for serial in (z64, None):
            with pytest.raises(errors.ConflictError):
                commit(storage, {oid: (serial, record('again'))})
        assert current(storage, oid) == (record(1), tid)

    def test_resolvable_conflict_is_merged_and_reported_by_vote(
            self, storage):
        oid, t0 = new_object(storage, 10, cls=Counter)
        t1 = set_value(storage, oid, 15, cls=Counter)
        txn = make_txn()
        storage.tpc_begin(txn)
        storage.store(oid, t0, record(12, cls=Counter), '', txn)
        resolved = storage.tpc_vote(txn)
        tid = storage.tpc_finish(txn)
        assert list(resolved) == [oid]
        data, serial = current(storage, oid)
        assert (value_of(data), serial) == (17, tid)
        assert value_of(storage.loadSerial(oid, t1)) == 15

    def test_resolution_spans_several_later_commits(self, storage):
        oid, t0 = new_object(storage, 0, cls=Counter)
        set_value(storage, oid, 1, cls=Counter)
        set_value(storage, oid, 3, cls=Counter)
        commit(storage, {oid: (t0, record(5, cls=Counter))})
        assert value_of(current(storage, oid)[0]) == 8

    def test_vote_reports_nothing_without_conflicts(self, storage):
        txn = make_txn()
        storage.tpc_begin(txn)
        storage.store(storage.new_oid(), z64, record(1), '', txn)
        assert not storage.tpc_vote(txn)
        storage.tpc_finish(txn)

    def test_unresolvable_object_among_resolvable_fails_the_transaction(
            self, storage):
        counter, c0 = new_object(storage, 0, cls=Counter)
        item, i0 = new_object(storage, 'a')
        set_value(storage, counter, 1, cls=Counter)
        last = set_value(storage, item, 'b')
        with pytest.raises(errors.ConflictError) as info:
            commit(storage, {counter: (c0, record(2, cls=Counter)),
                             item: (i0, record('c'))})
        assert info.value.oid == item
        assert value_of(current(storage, counter)[0]) == 1
        assert storage.lastTransaction() == last


class ReadVerifyingStorageConformance(ConformanceBase):
    """checkCurrentSerialInTransaction."""

    def test_declares_read_verification(self, storage):
        assert ReadVerifyingStorage.providedBy(storage)

    def test_current_serial_passes(self, storage):
        oid, tid = new_object(storage, 1)
        other = storage.new_oid()
        commit(storage, {other: (z64, record(2))}, checks={oid: tid})

    def test_stale_serial_raises_read_conflict(self, storage):
        oid, t1 = new_object(storage, 1)
        t2 = set_value(storage, oid, 2)
        before = storage.lastTransaction()
        # Raised by the check, by store or by tpc_vote: all are allowed.
        with pytest.raises(errors.ReadConflictError) as info:
            commit(storage, {storage.new_oid(): (z64, record(3))},
                   checks={oid: t1})
        assert isinstance(info.value, errors.ConflictError)
        assert info.value.oid == oid
        assert info.value.serials == (t2, t1)
        assert storage.lastTransaction() == before

    def test_check_with_another_transaction_raises(self, storage):
        oid, tid = new_object(storage, 1)
        txn = make_txn()
        storage.tpc_begin(txn)
        with pytest.raises(errors.StorageTransactionError):
            storage.checkCurrentSerialInTransaction(oid, tid, make_txn())
        storage.tpc_abort(txn)

    def test_checked_serial_stays_current_until_finish(self, storage):
        oid, tid = new_object(storage, 1)
        mine = storage.new_oid()
        txn = make_txn()
        storage.tpc_begin(txn)
        storage.checkCurrentSerialInTransaction(oid, tid, txn)
        storage.store(mine, z64, record('mine'), '', txn)
        storage.tpc_vote(txn)
        done = []
        writer = threading.Thread(
            target=lambda: done.append(set_value(storage, oid, 2)))
        writer.start()
        writer.join(0.2)
        # The competing commit waits for ours to end.
        assert done == []
        finished = storage.tpc_finish(txn)
        writer.join(10)
        assert done and done[0] > finished
        assert storage.loadBefore(oid, finished)[0] == record(1)
        assert current(storage, oid)[1] == done[0]
        assert storage.loadBefore(mine, maxtid)[1] == finished
