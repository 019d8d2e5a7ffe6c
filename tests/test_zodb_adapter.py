"""objstore.zodb.adapt: ZODB sees objstore storages as its own."""
import pytest

ZODB = pytest.importorskip('ZODB')

import transaction  # noqa: E402
import ZODB.interfaces  # noqa: E402
import ZODB.POSException as POSException  # noqa: E402
from persistent.mapping import PersistentMapping  # noqa: E402

from objstore import errors  # noqa: E402
from objstore.storages import MemoryStorage  # noqa: E402
from objstore.zodb import adapt, zodb_error  # noqa: E402


@pytest.mark.parametrize('ours, theirs', [
    (errors.ConflictError('x', oid=b'\0' * 8), POSException.ConflictError),
    (errors.ReadConflictError(oid=b'\0' * 8), POSException.ReadConflictError),
    (errors.POSKeyError(b'\0' * 8), POSException.POSKeyError),
    (errors.ReadOnlyError('ro'), POSException.ReadOnlyError),
    (errors.StorageTransactionError('t'), POSException.StorageTransactionError),
    (errors.UndoError('no', b'\0' * 8), POSException.UndoError),
    (errors.StorageClosedError('closed'), POSException.StorageError),
])
def test_errors_become_both_ours_and_zodbs(ours, theirs):
    translated = zodb_error(ours)
    assert isinstance(translated, theirs)
    assert isinstance(translated, type(ours))
    assert str(translated) == str(ours)


def test_conflict_error_keeps_its_details_for_zope():
    exc = zodb_error(errors.ConflictError(oid=b'\0' * 7 + b'\1',
                                          serials=(b'\0' * 7 + b'\2', b'\0' * 8),
                                          class_name='a.B'))
    assert exc.get_oid() == b'\0' * 7 + b'\1'
    assert exc.get_class_name() == 'a.B'
    assert isinstance(exc, transaction.interfaces.TransientError)


def test_non_objstore_errors_pass_through():
    exc = ValueError('x')
    assert zodb_error(exc) is exc


def test_adapter_declares_zodb_interfaces_of_what_the_storage_provides():
    storage = adapt(MemoryStorage())
    for iface in (ZODB.interfaces.IStorage, ZODB.interfaces.IStorageIteration,
                  ZODB.interfaces.IStorageUndoable,
                  ZODB.interfaces.IStorageRestoreable,
                  ZODB.interfaces.IStorageCurrentRecordIteration,
                  ZODB.interfaces.ReadVerifyingStorage,
                  ZODB.interfaces.IExternalGC,
                  ZODB.interfaces.IMultiCommitStorage):
        assert iface.providedBy(storage), iface
    # A non-MVCC storage must not claim MVCC: ZODB.DB would skip its adapter.
    assert not ZODB.interfaces.IMVCCStorage.providedBy(storage)
    assert adapt(storage) is storage


def test_adapted_storage_raises_zodb_exceptions():
    storage = adapt(MemoryStorage())
    with pytest.raises(POSException.POSKeyError):
        storage.loadBefore(b'\0' * 7 + b'\x09', b'\xff' * 8)
    storage.close()


def test_zodb_db_runs_on_an_objstore_storage():
    db = ZODB.DB(adapt(MemoryStorage()))
    tm1, tm2 = transaction.TransactionManager(), transaction.TransactionManager()
    conn1, conn2 = db.open(tm1), db.open(tm2)
    conn1.root()['folder'] = PersistentMapping(title='one')
    tm1.commit()
    tm2.begin()
    assert conn2.root()['folder']['title'] == 'one'
    # A write conflict between the two connections is ZODB's ConflictError.
    conn1.root()['folder']['title'] = 'a'
    conn2.root()['folder']['title'] = 'b'
    tm1.commit()
    with pytest.raises(POSException.ConflictError):
        tm2.commit()
    tm2.abort()
    assert conn2.root()['folder']['title'] == 'a'
    # Undo through ZODB's DB.
    db.undo(db.undoLog(0, 1)[0]['id'], tm1.get())
    tm1.commit()
    tm2.begin()
    assert conn2.root()['folder']['title'] == 'one'
    db.close()
