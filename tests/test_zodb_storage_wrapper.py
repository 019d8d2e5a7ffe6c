"""objstore.zodb.from_zodb: objstore sees ZODB storages as its own."""
import pytest

ZODB = pytest.importorskip('ZODB')

import transaction  # noqa: E402
import ZODB.FileStorage  # noqa: E402
import ZODB.interfaces  # noqa: E402
import ZODB.POSException as POSException  # noqa: E402
from persistent.mapping import PersistentMapping  # noqa: E402
from ZODB.MappingStorage import MappingStorage  # noqa: E402
from ZODB.tests.MVCCMappingStorage import MVCCMappingStorage  # noqa: E402

from objstore import errors, interfaces  # noqa: E402
from objstore.serialize import dumps_record, loads_record  # noqa: E402
from objstore.storages import MemoryStorage  # noqa: E402
from objstore.storages.base import p64, z64  # noqa: E402
from objstore.zodb import (  # noqa: E402
    adapt, from_zodb, objstore_error, zodb_error)


def _store(storage, oid, serial, state, note=''):
    txn = transaction.Transaction()
    txn.description = note
    storage.tpc_begin(txn)
    try:
        storage.store(oid, serial, dumps_record(PersistentMapping, state), '', txn)
        storage.tpc_vote(txn)
    except BaseException:
        storage.tpc_abort(txn)
        raise
    return storage.tpc_finish(txn)


@pytest.fixture
def file_storage(tmp_path):
    storage = from_zodb(ZODB.FileStorage.FileStorage(str(tmp_path / 'Data.fs')))
    yield storage
    storage.close()


# -- exceptions -----------------------------------------------------------------

@pytest.mark.parametrize('theirs, ours', [
    (POSException.ConflictError(oid=p64(1), serials=(p64(3), p64(2))),
     errors.ConflictError),
    (POSException.ReadConflictError(oid=p64(1)), errors.ReadConflictError),
    (POSException.POSKeyError(p64(1)), errors.POSKeyError),
    (POSException.ReadOnlyError(), errors.ReadOnlyError),
    (POSException.StorageTransactionError('t'), errors.StorageTransactionError),
    (POSException.TransactionTooLargeError('big'),
     errors.TransactionTooLargeError),
    (POSException.UndoError('nope', p64(1)), errors.UndoError),
    (POSException.StorageSystemError('disk'), errors.StorageError),
    (POSException.Unsupported('blobs'), errors.Unsupported),
    (POSException.ReadOnlyHistoryError(), errors.ReadOnlyHistoryError),
    (POSException.ConnectionStateError('closed'), errors.ConnectionStateError),
    (POSException.BTreesConflictError(1, 2, 3, 4), errors.ConflictError),
    (POSException.ExportError('x'), errors.ObjstoreError),
])
def test_zodb_errors_become_both_zodbs_and_ours(theirs, ours):
    translated = objstore_error(theirs)
    assert isinstance(translated, ours)
    assert isinstance(translated, type(theirs))
    assert type(translated).__name__ == type(theirs).__name__
    assert translated.args == theirs.args
    # A second translation in either direction changes nothing.
    assert objstore_error(translated) is translated
    assert zodb_error(translated) is translated


def test_one_dual_class_per_pair_in_both_directions():
    from_ours = zodb_error(errors.ConflictError(oid=p64(1)))
    from_theirs = objstore_error(POSException.ConflictError(oid=p64(1)))
    assert type(from_ours) is type(from_theirs)


def test_translated_conflict_keeps_its_details():
    exc = objstore_error(POSException.ConflictError(
        oid=p64(7), serials=(p64(3), p64(2)), data=dumps_record(PersistentMapping, {})))
    assert exc.oid == p64(7) and exc.get_oid() == p64(7)
    assert exc.serials == (p64(3), p64(2))
    assert exc.class_name == 'persistent.mapping.PersistentMapping'
    assert '0x07' in str(exc) and 'PersistentMapping' in str(exc)
    assert isinstance(exc, transaction.interfaces.TransientError)


def test_translated_undo_errors_publish_reason_and_oid():
    exc = objstore_error(POSException.UndoError('changed since', p64(5)))
    assert exc.reason == 'changed since' and exc.oid == p64(5)
    assert 'changed since' in str(exc)
    many = objstore_error(POSException.MultipleUndoErrors(
        [('one', p64(1)), ('two', p64(2))]))
    assert [e.reason for e in many.errors] == ['one', 'two']
    assert [e.oid for e in many.errors] == [p64(1), p64(2)]
    assert 'one' in str(many) and 'two' in str(many)


def test_translated_poskeyerror_names_the_referencing_object():
    exc = objstore_error(POSException.POSKeyError(p64(9)))
    assert isinstance(exc, KeyError)
    exc.referenced_by = 'oid 0x01 (myapp.Folder)'
    assert str(exc) == '0x09 (referenced by oid 0x01 (myapp.Folder))'


def test_other_exceptions_pass_through():
    exc = ValueError('x')
    assert objstore_error(exc) is exc


# -- the wrapper --------------------------------------------------------------

def test_wrapper_declares_objstore_interfaces_of_a_file_storage(file_storage):
    for iface in (interfaces.IStorage, interfaces.IStorageIteration,
                  interfaces.IStorageUndoable, interfaces.IStorageRestoreable,
                  interfaces.IStorageCurrentRecordIteration,
                  interfaces.IExternalGC, interfaces.ReadVerifyingStorage):
        assert iface.providedBy(file_storage), iface
    assert not interfaces.IMVCCStorage.providedBy(file_storage)


def test_wrapper_of_an_mvcc_storage_wraps_its_instances():
    storage = from_zodb(MVCCMappingStorage())
    assert interfaces.IMVCCStorage.providedBy(storage)
    instance = storage.new_instance()
    assert interfaces.IMVCCStorage.providedBy(instance)
    assert isinstance(instance, type(storage))
    with pytest.raises(errors.POSKeyError):
        instance.load(p64(42))
    instance.release()
    storage.close()


def test_mapping_storage_declares_only_what_it_provides():
    storage = from_zodb(MappingStorage())
    assert interfaces.IStorage.providedBy(storage)
    assert interfaces.IStorageIteration.providedBy(storage)
    assert not interfaces.IStorageUndoable.providedBy(storage)
    storage.close()


def test_wrapping_is_idempotent_and_undoes_adapt():
    zodb_storage = MappingStorage()
    wrapped = from_zodb(zodb_storage)
    assert from_zodb(wrapped) is wrapped
    assert wrapped.zodb_storage is zodb_storage
    ours = MemoryStorage()
    assert from_zodb(adapt(ours)) is ours


def test_conflict_at_store_is_objstores_and_zodbs(file_storage):
    _store(file_storage, z64, z64, {'n': 0})
    first = _store(file_storage, z64, file_storage.load(z64)[1], {'n': 1})
    _store(file_storage, z64, first, {'n': 2})
    # A writer that started from ``first`` is now behind.
    with pytest.raises(errors.ConflictError) as info:
        _store(file_storage, z64, first, {'n': 3})
    assert isinstance(info.value, POSException.ConflictError)
    assert info.value.oid == z64
    with pytest.raises(POSException.ConflictError):
        _store(file_storage, z64, first, {'n': 3})
    assert loads_record(file_storage.load(z64)[0])[1] == {'n': 2}


def test_missing_oid_is_objstores_poskeyerror(file_storage):
    with pytest.raises(errors.POSKeyError) as info:
        file_storage.load(p64(99))
    assert isinstance(info.value, POSException.POSKeyError)
    assert info.value.args[0] == p64(99)


def test_read_only_errors_are_objstores(tmp_path):
    path = str(tmp_path / 'Data.fs')
    ZODB.FileStorage.FileStorage(path).close()
    storage = from_zodb(ZODB.FileStorage.FileStorage(path, read_only=True))
    try:
        assert storage.isReadOnly()
        with pytest.raises(errors.ReadOnlyError):
            storage.tpc_begin(transaction.Transaction())
    finally:
        storage.close()


def test_undo_errors_are_objstores(file_storage):
    _store(file_storage, z64, z64, {'n': 0})
    tid = _store(file_storage, z64, file_storage.load(z64)[1], {'n': 1}, 'one')
    _store(file_storage, z64, tid, {'n': 2}, 'two')
    undo_id = [entry['id'] for entry in file_storage.undoLog(0, 10)
               if entry['description'] == b'one'][0]
    txn = transaction.Transaction()
    file_storage.tpc_begin(txn)
    with pytest.raises(errors.UndoError) as info:
        file_storage.undo(undo_id, txn)
    file_storage.tpc_abort(txn)
    assert isinstance(info.value, POSException.UndoError)
    # ZODB's FileStorage reports a MultipleUndoErrors of one error.
    assert isinstance(info.value, errors.MultipleUndoErrors)
    assert [e.oid for e in info.value.errors] == [z64]
    assert 'modified by a later transaction' in str(info.value)


def test_history_and_iteration_pass_through(file_storage):
    first = _store(file_storage, z64, z64, {'n': 0}, 'first')
    second = _store(file_storage, z64, first, {'n': 1}, 'second')
    assert [h['tid'] for h in file_storage.history(z64, size=5)] == [second, first]
    assert [t.tid for t in file_storage.iterator()] == [first, second]
    assert file_storage.lastTransaction() == second
    assert len(file_storage) == 1


def test_registerdb_reaches_the_zodb_storage():
    seen = []

    class Recorder(MappingStorage):
        def registerDB(self, wrapper):
            seen.append(wrapper)

    storage = from_zodb(Recorder())
    wrapper = object()
    storage.registerDB(wrapper)
    assert seen == [wrapper]


def test_copy_transactions_from_another_wrapped_storage(tmp_path):
    source = from_zodb(ZODB.FileStorage.FileStorage(str(tmp_path / 'a.fs')))
    tid = _store(source, z64, z64, {'n': 0})
    target = from_zodb(ZODB.FileStorage.FileStorage(str(tmp_path / 'b.fs')))
    target.copyTransactionsFrom(source)
    assert target.lastTransaction() == tid
    source.close()
    target.close()


# -- objstore's DB on a wrapped ZODB storage -------------------------------------

def _two_connections(db):
    first = db.open(transaction_manager=transaction.TransactionManager())
    second = db.open(transaction_manager=transaction.TransactionManager())
    return first, second


def test_db_on_a_zodb_file_storage_raises_objstores_conflict_error(tmp_path):
    from objstore import DB
    db = DB(from_zodb(ZODB.FileStorage.FileStorage(str(tmp_path / 'Data.fs'))))
    try:
        with db.transaction() as conn:
            conn.root()['counter'] = PersistentMapping(n=0)
        first, second = _two_connections(db)
        first.root()['counter']['n'] = 1
        second.root()['counter']['n'] = 2
        first.transaction_manager.commit()
        with pytest.raises(errors.ConflictError) as info:
            second.transaction_manager.commit()
        assert isinstance(info.value, POSException.ConflictError)
        assert isinstance(info.value, transaction.interfaces.TransientError)
        assert 'PersistentMapping' in str(info.value)
        second.transaction_manager.abort()
        with db.transaction() as conn:
            assert conn.root()['counter']['n'] == 1
        first.close()
        second.close()
    finally:
        db.close()


def test_db_on_a_zodb_file_storage_retries_with_attempts(tmp_path):
    from objstore import DB
    db = DB(from_zodb(ZODB.FileStorage.FileStorage(str(tmp_path / 'Data.fs'))))
    try:
        with db.transaction() as conn:
            conn.root()['counter'] = PersistentMapping(n=0)
        first, second = _two_connections(db)
        tries = 0
        for attempt in second.transaction_manager.attempts():
            with attempt:
                tries += 1
                second.root()['counter']['n'] += 10
                if tries == 1:
                    first.root()['counter']['n'] += 1
                    first.transaction_manager.commit()
        assert tries == 2
        with db.transaction() as conn:
            assert conn.root()['counter']['n'] == 11
        first.close()
        second.close()
    finally:
        db.close()


def test_db_on_a_zodb_file_storage_reads_history_and_metadata(tmp_path):
    from objstore import DB
    path = str(tmp_path / 'Data.fs')
    zdb = ZODB.DB(path)
    with zdb.transaction('written by ZODB') as conn:
        conn.root()['x'] = 1
    zdb.close()
    db = DB(from_zodb(ZODB.FileStorage.FileStorage(path)))
    try:
        with db.transaction('written by objstore') as conn:
            conn.root()['x'] = 2
        descriptions = [t.description for t in db.storage.iterator()]
        assert descriptions[-2:] == [b'written by ZODB', b'written by objstore']
        assert len(db.history(z64, size=10)) == 3
    finally:
        db.close()


def test_db_on_a_zodb_file_storage_undo_pack_and_time_travel(tmp_path):
    import time
    from objstore import DB
    db = DB(from_zodb(ZODB.FileStorage.FileStorage(str(tmp_path / 'Data.fs'))))
    try:
        with db.transaction('one') as conn:
            conn.root()['m'] = PersistentMapping(n=1)
        one = db.lastTransaction()
        with db.transaction('two') as conn:
            conn.root()['m']['n'] = 2
        past = db.open(at=one)
        assert past.root()['m']['n'] == 1
        with pytest.raises(errors.ReadOnlyError):
            past.root()['m']['n'] = 3
            past.transaction_manager.commit()
        past.transaction_manager.abort()
        past.close()

        undo_id = [e['id'] for e in db.undoLog(0, 10)
                   if e['description'] in ('two', b'two')][0]
        manager = transaction.TransactionManager()
        db.undo(undo_id, manager.get())
        manager.commit()
        with db.transaction() as conn:
            assert conn.root()['m']['n'] == 1

        time.sleep(0.01)
        db.pack()
        with db.transaction() as conn:
            assert conn.root()['m']['n'] == 1
        assert len(db.history(z64, size=10)) == 1
    finally:
        db.close()


def test_wrapper_has_only_the_methods_the_zodb_storage_has():
    storage = from_zodb(MappingStorage())
    assert not hasattr(storage, 'restore')
    assert not hasattr(storage, 'undo')
    assert hasattr(storage, 'store') and hasattr(storage, 'tpc_vote')
    storage.close()


@pytest.mark.parametrize('make', [MappingStorage, MVCCMappingStorage])
def test_a_transaction_package_transaction_works_on_zodb_storages(make):
    storage = from_zodb(make())
    txn = transaction.Transaction()
    txn.user = 'alice'
    txn.description = 'with metadata'
    txn.extension['ip'] = '192.0.2.1'
    storage.tpc_begin(txn)
    storage.store(z64, z64, dumps_record(PersistentMapping, {}), '', txn)
    storage.tpc_vote(txn)
    tid = storage.tpc_finish(txn)
    assert storage._metadata == {}
    [record] = [t for t in storage.iterator() if t.tid == tid]
    assert (record.user, record.description) == (b'alice', b'with metadata')
    assert record.extension == {'ip': '192.0.2.1'}
    storage.close()


def test_tpc_abort_forgets_the_transaction(file_storage):
    txn = transaction.Transaction()
    file_storage.tpc_begin(txn)
    file_storage.store(z64, z64, dumps_record(PersistentMapping, {}), '', txn)
    file_storage.tpc_abort(txn)
    assert file_storage._metadata == {}
    assert file_storage.lastTransaction() == z64
