"""IExternalGC: deleteObject writes a deletion record; pack removes it."""
import time

import pytest

from objstore import errors
from objstore.interfaces import (
    IExternalGC, IStorageCurrentRecordIteration, IStorageIteration)
from objstore.serialize import references
from objstore.storages.base import maxtid, p64, z64
from objstore.testing.harness import ConformanceBase
from objstore.testing.helpers import (
    Clock, commit, current, make_txn, new_object, record, set_value)


class IExternalGCConformance(ConformanceBase):
    """deleteObject."""

    def test_declares_external_gc(self, storage):
        assert IExternalGC.providedBy(storage)

    def test_deleted_object_has_no_current_revision(self, storage):
        oid, t1 = new_object(storage, 1)
        t2 = set_value(storage, oid, 2)
        deleted = commit(storage, deletes={oid: t2})
        assert storage.lastTransaction() == deleted
        with pytest.raises(errors.POSKeyError):
            storage.loadBefore(oid, maxtid)
        if hasattr(storage, 'load'):
            with pytest.raises(errors.POSKeyError):
                storage.load(oid)
        with pytest.raises(errors.POSKeyError):
            storage.loadSerial(oid, deleted)
        assert storage.loadBefore(oid, deleted) == (record(2), t2, deleted)
        assert storage.loadSerial(oid, t1) == record(1)

    def test_stale_serial_raises_conflict_error(self, storage):
        oid, t1 = new_object(storage, 1)
        t2 = set_value(storage, oid, 2)
        with pytest.raises(errors.ConflictError) as info:
            commit(storage, deletes={oid: t1})
        assert info.value.oid == oid
        assert current(storage, oid) == (record(2), t2)

    def test_unknown_or_deleted_object_raises_pos_key_error(self, storage):
        oid, t1 = new_object(storage, 1)
        with pytest.raises(errors.POSKeyError):
            commit(storage, deletes={p64(999): t1})
        deleted = commit(storage, deletes={oid: t1})
        with pytest.raises(errors.POSKeyError):
            commit(storage, deletes={oid: deleted})

    def test_aborted_deletion_leaves_the_object(self, storage):
        oid, t1 = new_object(storage, 1)
        txn = make_txn()
        storage.tpc_begin(txn)
        storage.deleteObject(oid, t1, txn)
        storage.tpc_abort(txn)
        assert current(storage, oid) == (record(1), t1)

    def test_delete_outside_a_transaction_raises(self, storage):
        oid, t1 = new_object(storage, 1)
        with pytest.raises(errors.StorageTransactionError):
            storage.deleteObject(oid, t1, make_txn())

    def test_pack_past_the_deletion_removes_the_object(self, storage):
        clock = Clock(time.time() - 3600)
        commit(storage, {z64: (z64, record('root'))}, tid=clock.tid(0))
        oid = storage.new_oid()
        t1 = commit(storage, {oid: (z64, record(1))}, tid=clock.tid(1))
        deleted = commit(storage, deletes={oid: t1}, tid=clock.tid(2))
        storage.pack(clock.between(1), references, gc=False)
        assert storage.loadBefore(oid, deleted) == (record(1), t1, deleted)
        storage.pack(clock.between(2), references, gc=False)
        with pytest.raises(errors.POSKeyError):
            storage.loadBefore(oid, deleted)
        with pytest.raises(errors.POSKeyError):
            storage.loadSerial(oid, t1)
        assert len(storage) == 1

    def test_iteration_shows_the_deletion_record(self, storage):
        if not IStorageIteration.providedBy(storage):
            pytest.skip('the storage does not iterate')
        oid, t1 = new_object(storage, 1)
        deleted = commit(storage, deletes={oid: t1})
        txn, = list(storage.iterator(deleted))
        assert [(r.oid, r.tid, r.data) for r in txn] == [(oid, deleted, None)]

    def test_record_walk_skips_deleted_objects(self, storage):
        if not IStorageCurrentRecordIteration.providedBy(storage):
            pytest.skip('the storage does not walk current records')
        a, ta = new_object(storage, 'a')
        b, tb = new_object(storage, 'b')
        c, tc = new_object(storage, 'c')
        commit(storage, deletes={b: tb})
        found, next_oid = [], None
        while True:
            oid, tid, data, next_oid = storage.record_iternext(next_oid)
            found.append(oid)
            if next_oid is None:
                break
        assert found == [a, c]

    def test_store_with_the_deletions_tid_brings_the_object_back(
            self, storage):
        # As ZODB's FileStorage: a deletion record's tid is the serial a
        # store over it passes (what a loaded ghost of it would carry).
        oid, t1 = new_object(storage, 1)
        deleted = commit(storage, deletes={oid: t1})
        t3 = commit(storage, {oid: (deleted, record('back'))})
        assert current(storage, oid) == (record('back'), t3)
        with pytest.raises(errors.POSKeyError):
            storage.loadBefore(oid, t3)
        assert storage.loadSerial(oid, t1) == record(1)

    def test_store_over_a_deletion_with_another_serial_conflicts(
            self, storage):
        oid, t1 = new_object(storage, 1)
        deleted = commit(storage, deletes={oid: t1})
        for serial in (z64, t1):
            with pytest.raises(errors.ConflictError) as info:
                commit(storage, {oid: (serial, record('stale'))})
            assert info.value.oid == oid
        assert storage.lastTransaction() == deleted
        with pytest.raises(errors.POSKeyError):
            storage.loadBefore(oid, maxtid)
