"""copyTransactionsFrom: one implementation (``objstore.storages.base``)
for both storages, copying ZODB's own files faithfully and refusing blobs
before anything is written."""
import pytest
import transaction
import ZODB
import ZODB.blob
import ZODB.FileStorage
from persistent.mapping import PersistentMapping

from objstore import errors
from objstore.storages import FileStorage, MemoryStorage
from objstore.storages.base import copy_transactions, is_blob_record, z64
from objstore.testing.helpers import commit, record, undo
from db_fixtures import commit_change


@pytest.fixture(params=['memory', 'file'])
def destination(request, tmp_path):
    if request.param == 'memory':
        storage = MemoryStorage()
    else:
        storage = FileStorage(str(tmp_path / 'copy.fs'))
    yield storage
    storage.close()


def _blob_free_datafs(path):
    """A ZODB Data.fs with metadata, changes, an undo and a pack."""
    db = ZODB.DB(ZODB.FileStorage.FileStorage(path))
    try:
        commit_change(db, lambda root: root.__setitem__('a', PersistentMapping()),
                user='alice', description='create a',
                extension={'ticket': 42, 'why': 'tests'})

        def change(root):
            root['a']['n'] = 1
            root['b'] = PersistentMapping(x='y')
        commit_change(db, change, user='bob', description='change\u00e9')
        commit_change(db, lambda root: root['a'].__setitem__('n', 2))
        undo_id = db.undoLog(0, 1)[0]['id']
        tm = transaction.TransactionManager()
        tm.begin()
        db.undo(undo_id, tm.get())
        tm.get().note('undo the last change')
        tm.commit()
    finally:
        db.close()


def _transactions(storage):
    """Every transaction as comparable values (records with their data)."""
    it = storage.iterator()
    try:
        return [(txn.tid, txn.status, bytes(txn.user),
                 bytes(txn.description), txn.extension,
                 [(r.oid, r.tid, r.data, r.data_txn) for r in txn])
                for txn in it]
    finally:
        getattr(it, 'close', lambda: None)()


def test_copy_of_a_zodb_datafs_keeps_every_transaction(tmp_path, destination):
    path = str(tmp_path / 'Data.fs')
    _blob_free_datafs(path)
    source = ZODB.FileStorage.FileStorage(path, read_only=True)
    try:
        expected = _transactions(source)
        destination.copyTransactionsFrom(source)
        assert _transactions(destination) == expected
        assert destination.lastTransaction() == source.lastTransaction()
        users = [t[2] for t in expected]
        assert b'alice' in users and expected[1][4]['ticket'] == 42
        assert len(expected) == 5
        assert any(r[3] for t in expected for r in t[5])   # the undo
        for tid, _s, _u, _d, _e, records in expected:
            for oid, rtid, data, _data_txn in records:
                assert destination.loadSerial(oid, rtid) == data
    finally:
        source.close()


def test_copy_between_objstore_storages_keeps_data_txn(tmp_path,
                                                       destination):
    source = MemoryStorage()
    oid = source.new_oid()
    t1 = commit(source, {oid: (z64, record(1))}, user='u', description='d',
                extension={'k': 'v'})
    commit(source, {oid: (t1, record(2))})
    undo(source, source.lastTransaction())
    destination.copyTransactionsFrom(source)
    assert _transactions(destination) == _transactions(source)
    last = list(destination.iterator())[-1]
    assert [r.data_txn for r in last] == [t1]


def _blob_datafs(path, blob_dir):
    """A ZODB FileStorage with two plain transactions, then a blob."""
    storage = ZODB.FileStorage.FileStorage(path, blob_dir=blob_dir)
    db = ZODB.DB(storage)
    try:
        commit_change(db, lambda root: root.__setitem__('plain', 1))
        commit_change(db, lambda root: root.__setitem__('more', 2))
        holder = {}

        def add_blob(root):
            blob = ZODB.blob.Blob()
            with blob.open('w') as f:
                f.write(b'blob bytes')
            root['blob'] = holder['blob'] = blob
        commit_change(db, add_blob)
        conn = db.open()
        blob_oid = conn.root()['blob']._p_oid
        conn.close()
    finally:
        db.close()
    return blob_oid


def test_a_source_with_blob_records_is_refused_before_anything_is_copied(
        tmp_path, destination):
    path = str(tmp_path / 'Data.fs')
    blob_oid = _blob_datafs(path, str(tmp_path / 'blobs'))
    source = ZODB.FileStorage.FileStorage(
        path, blob_dir=str(tmp_path / 'blobs'), read_only=True)
    try:
        blob_tid = source.getTid(blob_oid)
        with pytest.raises(errors.Unsupported) as info:
            destination.copyTransactionsFrom(source)
        message = str(info.value)
        assert errors.oid_repr(blob_oid) in message
        assert errors.oid_repr(blob_tid) in message
        assert 'blob' in message
        # Not even the two plain transactions before it were copied.
        assert destination.lastTransaction() == z64
        assert len(destination) == 0
        assert list(destination.iterator()) == []
    finally:
        source.close()


def test_blob_records_are_recognized_as_zodb_does(tmp_path):
    path = str(tmp_path / 'Data.fs')
    blob_oid = _blob_datafs(path, str(tmp_path / 'blobs'))
    source = ZODB.FileStorage.FileStorage(path, read_only=True)
    try:
        records = [r for txn in source.iterator() for r in txn]
    finally:
        source.close()
    assert records
    for r in records:
        assert is_blob_record(r.data) == ZODB.blob.is_blob_record(r.data)
        assert is_blob_record(r.data) == (r.oid == blob_oid)
    assert not is_blob_record(None) and not is_blob_record(b'')
    assert not is_blob_record(record('mentions ZODB.blob.Blob'))


def test_both_storages_use_the_one_implementation():
    from objstore.storages import base
    assert (MemoryStorage.copyTransactionsFrom
            is FileStorage.copyTransactionsFrom
            is base.BaseStorage.copyTransactionsFrom)
    assert copy_transactions is base.copy_transactions
