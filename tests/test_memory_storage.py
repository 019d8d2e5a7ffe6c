"""MemoryStorage: the whole conformance suite, plus what is its own."""
import time

import pytest

from objstore import errors, testing
from objstore.serialize import references
from objstore.storages import MemoryStorage
from objstore.storages.base import maxtid, p64, z64
from objstore.testing.helpers import (
    commit, current, make_txn, new_object, record, set_value, undo)


class TestMemoryStorage(testing.IStorageConformance,
                        testing.IStorageIterationConformance,
                        testing.IStorageUndoableConformance,
                        testing.IStorageRestoreableConformance,
                        testing.IStorageCurrentRecordIterationConformance,
                        testing.ReadVerifyingStorageConformance,
                        testing.IExternalGCConformance,
                        testing.IHistoryWindowConformance):

    def make_storage(self):
        return MemoryStorage('test%d' % self.count())


# -- what only MemoryStorage promises -------------------------------------

def test_name_defaults_to_the_class_name():
    assert MemoryStorage().getName() == 'MemoryStorage'
    storage = MemoryStorage('cache')
    assert storage.getName() == storage.sortKey() == 'cache'


def test_docstring_states_the_durability_guarantee():
    doc = MemoryStorage.__doc__
    assert 'Durability: none' in doc and 'atomic' in doc


def test_an_empty_storage_is_still_true():
    storage = MemoryStorage()
    assert len(storage) == 0
    assert storage


def test_load_accepts_zodbs_version_argument():
    storage = MemoryStorage()
    oid, tid = new_object(storage, 1)
    assert storage.load(oid, '') == storage.load(oid) == (record(1), tid)


def test_a_version_is_refused():
    storage = MemoryStorage()
    txn = make_txn()
    storage.tpc_begin(txn)
    with pytest.raises(errors.StorageError, match='versions'):
        storage.store(storage.new_oid(), z64, record(1), 'v1', txn)
    storage.tpc_abort(txn)


def test_history_with_size_none_lists_every_revision():
    storage = MemoryStorage()
    oid, t1 = new_object(storage, 1)
    t2 = set_value(storage, oid, 2)
    assert [e['tid'] for e in storage.history(oid, None)] == [t2, t1]


def test_record_iternext_on_an_empty_storage_raises_pos_key_error():
    with pytest.raises(errors.POSKeyError):
        MemoryStorage().record_iternext()


def test_undo_with_a_malformed_id_raises_undo_error():
    storage = MemoryStorage()
    new_object(storage, 1)
    with pytest.raises(errors.UndoError, match='invalid transaction id'):
        undo(storage, 'not a tid')


def test_deleted_objects_count_until_a_pack_removes_them():
    storage = MemoryStorage()
    oid, tid = new_object(storage, 1)
    commit(storage, deletes={oid: tid})
    assert len(storage) == 1
    storage.pack(time.time() + 1, references)
    assert len(storage) == 0


def test_pack_gc_false_makes_pack_keep_unreachable_objects():
    storage = MemoryStorage(pack_gc=False)
    oid, tid = new_object(storage, 'unreachable')
    storage.pack(time.time() + 1, references)
    assert current(storage, oid) == (record('unreachable'), tid)
    storage.pack(time.time() + 2, references, gc=True)
    with pytest.raises(errors.POSKeyError):
        storage.loadBefore(oid, maxtid)


def test_undo_records_name_the_transaction_whose_data_they_copy():
    storage = MemoryStorage()
    oid, t1 = new_object(storage, 1)
    t2 = set_value(storage, oid, 2)
    undone = undo(storage, t2)[0]
    created = undo(storage, t1)[0]
    records = {t.tid: list(t)[0] for t in storage.iterator()}
    assert records[undone].data_txn == t1
    assert records[created].data_txn is None
    assert records[t2].data_txn is None


def test_restore_keeps_prev_txn_only_when_it_holds_the_same_data():
    storage = MemoryStorage()
    oid, t1 = new_object(storage, 1)
    t2 = set_value(storage, oid, 2)
    txn = make_txn()
    storage.tpc_begin(txn)
    storage.restore(oid, None, record(1), '', t1, txn)
    storage.restore(p64(99), None, record(1), '', t1, txn)
    storage.tpc_vote(txn)
    tid = storage.tpc_finish(txn)
    last, = storage.iterator(tid)
    assert [r.data_txn for r in last] == [t1, None]
    assert t2 < tid
