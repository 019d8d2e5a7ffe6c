"""IStorageRestoreable: restore and copyTransactionsFrom keep tids,
metadata and records."""
import pytest

from objstore import errors
from objstore.interfaces import (
    IStorageIteration, IStorageRestoreable, IStorageUndoable)
from objstore.storages.base import maxtid, p64, u64, z64
from objstore.testing.harness import ConformanceBase
from objstore.testing.helpers import (
    commit, current, make_txn, new_object, record, set_value, undo)


def restore_one(storage, tid, records, prev_txn=None, **meta):
    """Commit ``{oid: data}`` with ``restore`` under the forced ``tid``."""
    txn = make_txn(**meta)
    storage.tpc_begin(txn, tid)
    try:
        for oid, data in records.items():
            storage.restore(oid, tid, data, '', prev_txn, txn)
        storage.tpc_vote(txn)
        return storage.tpc_finish(txn)
    except BaseException:
        storage.tpc_abort(txn)
        raise


def load_before(storage, oid, tid):
    """``loadBefore``'s result, or ``'POSKeyError'``."""
    try:
        return storage.loadBefore(oid, tid)
    except errors.POSKeyError:
        return 'POSKeyError'


def dump(storage):
    """Everything iteration shows, for comparing two storages."""
    return [((txn.tid, txn.user, txn.description, txn.extension_bytes),
             [(r.oid, r.tid, r.data) for r in txn])
            for txn in storage.iterator()]


class IStorageRestoreableConformance(ConformanceBase):
    """Copies of committed transactions."""

    def populate(self, source):
        """A history with updates, metadata, an undo and an undone creation."""
        a, b, c = source.new_oid(), source.new_oid(), source.new_oid()
        t1 = commit(source, {z64: (z64, record('root', refs=[a, b])),
                             a: (z64, record('a1')), b: (z64, record('b1'))},
                    user='ann', description='first', extension={'k': 1})
        set_value(source, a, 'a2')
        set_value(source, b, 'b2', refs=[a])
        commit(source, {c: (z64, record('c'))}, description='create c')
        if IStorageUndoable.providedBy(source):
            undo(source, source.undoLog(0, 1)[0]['id'])
            undo(source, source.undoLog(2, 3)[0]['id'])
        return (a, b, c), t1

    def assert_same(self, source, copy, oids):
        assert copy.lastTransaction() == source.lastTransaction()
        for oid in oids:
            assert copy.history(oid, 100) == source.history(oid, 100)
            tids = [e['tid'] for e in source.history(oid, 100)] + [maxtid]
            for tid in tids:
                assert load_before(copy, oid, tid) == \
                    load_before(source, oid, tid)
        if IStorageIteration.providedBy(copy):
            assert dump(copy) == dump(source)

    def test_declares_restore(self, storage):
        assert IStorageRestoreable.providedBy(storage)

    def test_copy_from_the_reference_storage(self, storage):
        from objstore.storages.memory import MemoryStorage
        source = MemoryStorage('source')
        oids, first = self.populate(source)
        storage.copyTransactionsFrom(source)
        self.assert_same(source, storage, (z64,) + oids)
        assert storage.history(z64)[0]['k'] == 1
        assert u64(storage.new_oid()) > max(u64(oid) for oid in oids)
        source.close()

    def test_copy_to_another_instance(self, storage):
        if not IStorageIteration.providedBy(storage):
            pytest.skip('the storage does not iterate, so it cannot be a source')
        oids, first = self.populate(storage)
        copy = self.new_storage()
        copy.copyTransactionsFrom(storage)
        self.assert_same(storage, copy, (z64,) + oids)

    def test_copy_after_the_destination_moved_on_fails(self, storage):
        from objstore.storages.memory import MemoryStorage
        source = MemoryStorage('source')
        self.populate(source)
        new_object(storage, 'later')
        last = storage.lastTransaction()
        with pytest.raises(errors.StorageTransactionError):
            storage.copyTransactionsFrom(source)
        assert storage.lastTransaction() == last
        source.close()

    def test_restore_keeps_the_forced_tid_and_skips_conflict_checks(
            self, storage):
        oid, t1 = new_object(storage, 1)
        set_value(storage, oid, 2)
        forced = p64(u64(storage.lastTransaction()) + 1000)
        # Serial and current state disagree: restore does not care.
        assert restore_one(storage, forced, {oid: record('restored')},
                           description='copied') == forced
        assert current(storage, oid) == (record('restored'), forced)
        assert storage.history(oid)[0]['description'] == b'copied'

    def test_restored_none_is_an_undone_creation(self, storage):
        oid, t1 = new_object(storage, 1)
        forced = p64(u64(t1) + 1)
        restore_one(storage, forced, {oid: None})
        with pytest.raises(errors.POSKeyError):
            storage.loadBefore(oid, maxtid)
        assert storage.loadBefore(oid, forced) == (record(1), t1, forced)

    def test_prev_txn_is_only_a_hint(self, storage):
        oid, t1 = new_object(storage, 1)
        t2 = set_value(storage, oid, 2)
        forced = p64(u64(t2) + 1)
        restore_one(storage, forced, {oid: record(1)}, prev_txn=t1)
        assert storage.loadSerial(oid, forced) == record(1)
        other = p64(u64(forced) + 1)
        restore_one(storage, other, {oid: record(3)}, prev_txn=t1)
        assert storage.loadSerial(oid, other) == record(3)

    def test_restored_oids_are_never_handed_out(self, storage):
        restore_one(storage, p64(10 ** 15), {p64(5000): record(1)})
        assert u64(storage.new_oid()) > 5000

    def test_restore_outside_a_transaction_raises(self, storage):
        with pytest.raises(errors.StorageTransactionError):
            storage.restore(p64(1), p64(1), record(1), '', None, make_txn())
