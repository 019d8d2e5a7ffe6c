"""objstore's DB on a natively MVCC storage: ZODB's MVCCMappingStorage.

Such a storage is not wrapped: every connection gets one of its instances
(``new_instance``), polls it at each transaction start and releases it
when the connection goes. The PostgreSQL and pmem storages work this way.
"""
import pytest
from transaction.interfaces import TransientError
from ZODB.tests.MVCCMappingStorage import MVCCMappingStorage

from objstore import errors
from objstore.db import DB

from db_fixtures import Item, close_connection, open_connection


@pytest.fixture
def db():
    database = DB(MVCCMappingStorage())
    yield database
    database.close()


def test_the_storage_is_used_directly_one_instance_per_connection(db):
    assert db._mvcc._storage is db.storage   # only its errors are translated
    first, second = open_connection(db), open_connection(db)
    try:
        assert first._storage is not db.storage
        assert first._storage is not second._storage
    finally:
        close_connection(first)
        close_connection(second)


def test_commits_are_seen_at_the_next_transaction(db):
    first, second = open_connection(db), open_connection(db)
    try:
        first.root.item = Item(a=1)
        first.transaction_manager.commit()
        second.transaction_manager.begin()
        item = second.root.item
        assert item.a == 1
        first.root.item.a = 2
        first.transaction_manager.commit()
        assert item.a == 1
        second.transaction_manager.begin()
        assert item._p_changed is None
        assert item.a == 2
    finally:
        close_connection(first)
        close_connection(second)


def test_conflicts_are_transient_and_retried(db):
    first, second = open_connection(db), open_connection(db)
    try:
        first.root.item = Item(a=1)
        first.transaction_manager.commit()
        second.transaction_manager.begin()
        tries = 0
        for attempt in second.transaction_manager.attempts(3):
            with attempt:
                tries += 1
                second.root.item.a += 10
                if tries == 1:
                    first.root.item.a += 1
                    first.transaction_manager.commit()
        assert tries == 2
        first.transaction_manager.begin()
        assert first.root.item.a == 12
        first.root.item.a = 0
        second.root.item.a = 5
        first.transaction_manager.commit()
        with pytest.raises(errors.ConflictError) as info:
            second.transaction_manager.commit()
        assert isinstance(info.value, TransientError)
        assert info.value.oid == first.root.item._p_oid
        second.transaction_manager.abort()
    finally:
        close_connection(first)
        close_connection(second)


def test_time_travel_on_an_mvcc_storage(db):
    connection = open_connection(db)
    try:
        connection.root.item = item = Item(a=1)
        connection.transaction_manager.commit()
        # Not db.lastTransaction(): this storage's main instance never
        # commits, so only its instances know the last tid.
        old = item._p_serial
        item.a = 2
        connection.transaction_manager.commit()
        past = db.open(at=old)
        assert past.root.item.a == 1
        assert past.isReadOnly()
        with pytest.raises(errors.ReadOnlyHistoryError):
            past.root.item.a = 3
        past.close()
    finally:
        close_connection(connection)


def test_missing_oid_is_objstores_poskeyerror(db):
    connection = open_connection(db)
    try:
        with pytest.raises(errors.POSKeyError):
            connection.get(b'\0' * 7 + b'\x42')
    finally:
        close_connection(connection)


def test_pack_and_history(db):
    connection = open_connection(db)
    try:
        connection.root.item = item = Item(a=1)
        connection.root.garbage = Item()
        connection.transaction_manager.get().note('two items')
        connection.transaction_manager.commit()
        assert db.history(item)[0]['description'] == 'two items'
        del connection.root.garbage
        connection.transaction_manager.commit()
        db.pack()
        connection.transaction_manager.begin()
        assert connection.root.item.a == 1
    finally:
        close_connection(connection)


def test_closing_the_db_releases_the_instances(db):
    released = []
    connection = open_connection(db)
    instance = connection._storage
    instance.release = lambda: released.append(instance)
    close_connection(connection)
    db.close()
    assert released == [instance]


def test_undo_on_a_storage_without_undo_is_unsupported(db):
    assert not db.supportsUndo()
    assert db.undoLog() == []
    with pytest.raises(errors.Unsupported, match='cannot undo'):
        db.undo(b'\0' * 8)


def test_db_of_none_is_a_new_in_memory_database():
    from objstore.storages import MemoryStorage
    first, second = DB(None), DB(None)
    try:
        assert isinstance(first.storage, MemoryStorage)
        assert first.storage is not second.storage
    finally:
        first.close()
        second.close()
