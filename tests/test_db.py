"""DB: opening, the pool, metadata and history, undo, pack, close."""
import logging
import pathlib

import pytest
import transaction
from zope.interface.verify import verifyObject

from objstore import errors
from objstore.db import DB
from objstore.interfaces import IDatabase
from objstore.storages.base import z64
from objstore.storages.file import FileStorage

from db_fixtures import (  # noqa: F401 (fixtures)
    Item, close_connection, conn, db, open_connection, storage_factory)


def test_db_provides_idatabase(db):
    assert verifyObject(IDatabase, db)


@pytest.mark.parametrize('as_path', [str, pathlib.Path])
def test_a_path_opens_a_file_storage_created_when_missing(tmp_path, as_path):
    path = tmp_path / 'new.fs'
    database = DB(as_path(path))
    try:
        assert isinstance(database.storage, FileStorage)
        assert path.exists()
        connection = open_connection(database)
        connection.root.greeting = 'hello'
        connection.transaction_manager.commit()
        close_connection(connection)
    finally:
        database.close()
    database = DB(as_path(path))    # reopened, not truncated
    try:
        connection = open_connection(database)
        assert connection.root.greeting == 'hello'
        close_connection(connection)
    finally:
        database.close()


def test_data_survives_closing_and_reopening(tmp_path):
    path = tmp_path / 'Data.fs'
    database = DB(FileStorage(path))
    connection = open_connection(database)
    connection.root.item = Item(a=1, child=Item(b=[1, 2]))
    connection.transaction_manager.commit()
    close_connection(connection)
    database.close()
    database = DB(FileStorage(path))
    try:
        connection = open_connection(database)
        item = connection.root.item
        assert (item.a, item.child.b) == (1, [1, 2])
        close_connection(connection)
    finally:
        database.close()


def test_the_root_is_written_once(storage_factory):
    database = DB(storage_factory())
    try:
        first = database.lastTransaction()
        assert first != z64
        assert database.history(z64)[0]['description'] == (
            'initial database creation')
        if storage_factory.keeps_data:
            database.close()
            database = DB(storage_factory())
            assert database.lastTransaction() == first
    finally:
        database.close()


def test_closed_connections_are_reused(db):
    first = open_connection(db)
    close_connection(first)
    second = open_connection(db)
    assert second is first
    close_connection(second)


def test_reused_connection_sees_commits_made_while_it_was_closed(db):
    first = open_connection(db)
    other = open_connection(db)
    first.root.item = Item(a=1)
    first.transaction_manager.commit()
    item = first.root.item
    close_connection(first)
    other.transaction_manager.begin()
    other.root.item.a = 2
    other.transaction_manager.commit()
    again = open_connection(db)
    assert again is first
    assert item._p_changed is None and item.a == 2
    close_connection(again)
    close_connection(other)


def test_opening_more_than_pool_size_warns(storage_factory, caplog):
    database = DB(storage_factory(), pool_size=2)
    try:
        with caplog.at_level(logging.WARNING, logger='objstore.db'):
            connections = [open_connection(database) for _ in range(3)]
        assert 'DB.open() has 3 open connections with a pool_size of 2' in (
            caplog.text)
        for connection in connections:
            close_connection(connection)
        # At most pool_size closed connections are kept.
        assert len(database._available) == 2
    finally:
        database.close()


def test_cache_minimize_reaches_every_connection(db):
    connections = [open_connection(db) for _ in range(2)]
    connections[0].root.item = Item(a=1)
    connections[0].transaction_manager.commit()
    items = [c.root.item for c in connections[:1]]
    connections[1].transaction_manager.begin()
    items.append(connections[1].root.item)
    assert [item.a for item in items] == [1, 1]
    db.cacheMinimize()
    assert [item._p_changed for item in items] == [None, None]
    for connection in connections:
        close_connection(connection)


@pytest.mark.history
def test_transaction_metadata_is_stored_and_shown_by_history(db, conn):
    conn.root.item = item = Item(a=1)
    txn = conn.transaction_manager.get()
    txn.note('Create the item')
    txn.user = 'alice'
    txn.extension['ip'] = '192.0.2.1'
    conn.transaction_manager.commit()
    item.a = 2
    conn.transaction_manager.get().note('Change it')
    conn.transaction_manager.commit()
    entries = db.history(item, size=5)
    assert [e['description'] for e in entries] == ['Change it',
                                                   'Create the item']
    assert entries[1]['user_name'] == 'alice'
    assert entries[1]['ip'] == '192.0.2.1'
    assert entries[0]['tid'] == item._p_serial == db.lastTransaction()
    assert db.history(item._p_oid) == entries[:1]


@pytest.mark.history
def test_undo_reverts_a_transaction_when_the_next_one_commits(db, conn):
    conn.root.item = item = Item(a=1)
    conn.transaction_manager.commit()
    item.a = 2
    conn.transaction_manager.get().note('set a to 2')
    conn.transaction_manager.commit()
    log = db.undoLog(0, 5)
    assert log[0]['description'] == 'set a to 2'
    assert db.undoInfo(0, 5, {'description': 'set a to 2'}) == log[:1]
    db.undo(log[0]['id'], conn.transaction_manager.get())
    conn.transaction_manager.commit()
    assert item.a == 1
    other = open_connection(db)
    assert other.root.item.a == 1
    close_connection(other)


@pytest.mark.history
def test_undo_of_a_conflicting_change_fails_at_commit(db, conn):
    conn.root.item = item = Item(a=1)
    conn.transaction_manager.commit()
    item.a = 2
    conn.transaction_manager.commit()
    undo_id = db.undoLog(0, 1)[0]['id']
    item.a = 3
    conn.transaction_manager.commit()
    db.undo(undo_id, conn.transaction_manager.get())
    with pytest.raises(errors.UndoError):
        conn.transaction_manager.commit()
    conn.transaction_manager.abort()
    assert item.a == 3


def test_pack_removes_objects_no_longer_reachable(db, conn):
    conn.root.kept = Item(a=1)
    conn.root.garbage = garbage = Item(b=2)
    conn.transaction_manager.commit()
    garbage_oid = garbage._p_oid
    del conn.root.garbage
    conn.transaction_manager.commit()
    db.pack()
    with pytest.raises(errors.POSKeyError):
        db.storage.loadBefore(garbage_oid, b'\x7f' + b'\xff' * 7)
    other = open_connection(db)
    assert other.root.kept.a == 1
    with pytest.raises(errors.POSKeyError):
        other.get(garbage_oid)
    close_connection(other)


@pytest.mark.history
def test_pack_keeps_recent_history_with_days(db, conn):
    conn.root.item = item = Item(a=1)
    conn.transaction_manager.commit()
    item.a = 2
    conn.transaction_manager.commit()
    db.pack(days=1)
    assert len(db.history(item, size=10)) == 2


def test_transaction_context_manager_commits(db):
    with db.transaction('Add an item') as connection:
        connection.root.item = Item(a=1)
    assert not connection.opened
    assert db.history(z64)[0]['description'] == 'Add an item'
    with db.transaction() as connection:
        assert connection.root.item.a == 1


def test_transaction_context_manager_aborts_on_error(db):
    last = db.lastTransaction()
    with pytest.raises(ZeroDivisionError):
        with db.transaction() as connection:
            connection.root.item = Item(a=1)
            1 / 0
    assert db.lastTransaction() == last
    assert not connection.opened


def test_close_is_idempotent_and_closes_the_storage(storage_factory):
    storage = storage_factory()
    database = DB(storage)
    connection = open_connection(database)
    database.close()
    database.close()
    with pytest.raises(errors.ConnectionStateError, match='closed'):
        database.open()
    with pytest.raises(errors.StorageClosedError):
        storage.loadBefore(z64, b'\x7f' + b'\xff' * 7)
    with pytest.raises(errors.ConnectionStateError):
        connection.get(z64)


def test_db_as_context_manager_closes(storage_factory):
    with DB(storage_factory()) as database:
        with database.transaction() as connection:
            connection.root.x = 1
    with pytest.raises(errors.ConnectionStateError):
        database.open()


def test_at_and_before_together_are_refused(db):
    with pytest.raises(ValueError):
        db.open(at=db.lastTransaction(), before=db.lastTransaction())


def test_default_manager_connections_commit_with_transaction_commit(db):
    connection = db.open()
    try:
        connection.root.x = 1
        transaction.commit()
        assert db.history(z64)[0]['tid'] == db.lastTransaction()
    finally:
        transaction.abort()
        connection.close()


@pytest.mark.history
def test_undo_next_to_changes_of_the_same_db_is_refused_not_deadlocked(
        db, conn):
    conn.root.item = item = Item(a=1)
    conn.transaction_manager.commit()
    item.a = 2
    conn.transaction_manager.commit()
    db.undo(db.undoLog(0, 1)[0]['id'], conn.transaction_manager.get())
    conn.root.other = 1
    with pytest.raises(errors.StorageTransactionError, match='undo'):
        conn.transaction_manager.commit()
    conn.transaction_manager.abort()
    assert item.a == 2 and 'other' not in conn.root()


def test_two_connections_in_one_transaction_are_refused(db):
    manager = transaction.TransactionManager()
    first, second = db.open(manager), db.open(manager)
    first.root.a = 1
    second.root.b = 2
    with pytest.raises(errors.StorageTransactionError,
                       match='one connection per transaction manager'):
        manager.commit()
    manager.abort()
    first.close()
    second.close()
