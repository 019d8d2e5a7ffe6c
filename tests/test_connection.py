"""Connection: root, objects, commit and abort, cache, errors, interfaces."""
import sys
import types

import pytest
import transaction
from persistent.interfaces import IPersistentDataManager
from persistent.mapping import PersistentMapping
from transaction.interfaces import ISavepointDataManager, ISynchronizer
from zope.interface.verify import verifyObject

from objstore import errors
from objstore.broken import Broken
from objstore.commit import TransactionMeta
from objstore.db import DB
from objstore.interfaces import IConnection
from objstore.storages.base import z64
from objstore.storages.file import FileStorage

from db_fixtures import (  # noqa: F401 (fixtures)
    Item, close_connection, conn, db, open_connection, storage_factory)


def test_connection_provides_its_interfaces(conn):
    for iface in (IConnection, IPersistentDataManager, ISavepointDataManager,
                  ISynchronizer):
        assert verifyObject(iface, conn)


def test_root_is_an_empty_persistent_mapping_at_oid_zero(conn):
    root = conn.root()
    assert isinstance(root, PersistentMapping)
    assert root._p_oid == z64
    assert dict(root) == {}
    assert conn.get(z64) is root


def test_root_attributes_are_its_items(conn):
    conn.root.users = PersistentMapping()
    assert conn.root()['users'] is conn.root.users
    conn.root()['n'] = 3
    assert conn.root.n == 3
    del conn.root.n
    assert 'n' not in conn.root()
    assert 'users' in repr(conn.root)
    assert dir(conn.root) == ['users']


def test_missing_root_attribute_raises_attribute_error(conn):
    with pytest.raises(AttributeError, match='nope'):
        conn.root.nope
    with pytest.raises(AttributeError):
        del conn.root.nope


def test_add_gives_an_oid_and_this_jar_at_once(conn):
    item = Item(a=1)
    conn.add(item)
    assert item._p_oid is not None and item._p_jar is conn
    assert conn.get(item._p_oid) is item
    conn.add(item)      # adding again does nothing
    conn.root.item = item
    conn.transaction_manager.commit()
    assert conn.get(item._p_oid) is item
    assert item._p_changed is False


def test_committed_objects_are_seen_by_a_new_connection(db, conn):
    conn.root.item = Item(a=1, tags=['x'])
    conn.transaction_manager.commit()
    other = open_connection(db)
    try:
        item = other.root.item
        assert item is not conn.root.item
        assert (item.a, item.tags) == (1, ['x'])
    finally:
        close_connection(other)


def test_new_objects_reachable_from_a_changed_one_get_oids_at_commit(db, conn):
    parent = Item(child=Item(grandchild=Item(n=1)))
    conn.root.parent = parent
    conn.transaction_manager.commit()
    child = parent.child
    assert child._p_oid is not None and child._p_jar is conn
    assert child.grandchild._p_oid not in (None, child._p_oid)
    other = open_connection(db)
    try:
        assert other.root.parent.child.grandchild.n == 1
    finally:
        close_connection(other)


def test_abort_undoes_changes_to_loaded_objects(conn):
    conn.root.item = Item(a=1)
    conn.transaction_manager.commit()
    conn.root.item.a = 2
    conn.root.other = 1
    conn.transaction_manager.abort()
    assert conn.root.item.a == 1
    assert 'other' not in conn.root()


def test_abort_disowns_added_and_new_objects(conn):
    item = Item()
    conn.add(item)
    conn.root.item = item
    conn.transaction_manager.abort()
    assert item._p_oid is None and item._p_jar is None
    assert 'item' not in conn.root()


def test_volatile_attributes_are_not_stored_and_go_with_the_ghost(db, conn):
    conn.root.item = item = Item(a=1)
    conn.transaction_manager.commit()
    item._v_cache = 'scratch'
    assert item._p_changed is False     # _v_ does not register a change
    conn.transaction_manager.commit()
    item._p_deactivate()
    assert not hasattr(item, '_v_cache')
    assert item.a == 1
    other = open_connection(db)
    try:
        assert not hasattr(other.root.item, '_v_cache')
    finally:
        close_connection(other)


def test_p_serial_is_the_committing_tid(db, conn):
    conn.root.item = item = Item()
    conn.transaction_manager.commit()
    assert item._p_serial == db.lastTransaction()
    first = item._p_serial
    item.a = 1
    conn.transaction_manager.commit()
    assert item._p_serial == db.lastTransaction() > first


def test_get_of_a_missing_oid_raises_poskeyerror_naming_it(conn):
    oid = b'\0' * 7 + b'\x63'
    with pytest.raises(errors.POSKeyError) as info:
        conn.get(oid)
    assert isinstance(info.value, KeyError)
    assert info.value.args[0] == oid
    assert '0x63' in str(info.value)


def _delete(storage, oid):
    """Write a deletion record for ``oid`` straight into the storage."""
    meta = TransactionMeta(description='delete behind the app')
    serial = storage.loadBefore(oid, b'\x7f' + b'\xff' * 7)[1]
    storage.tpc_begin(meta)
    storage.deleteObject(oid, serial, meta)
    storage.tpc_vote(meta)
    storage.tpc_finish(meta)


def test_dangling_reference_names_the_object_holding_it(db, conn):
    conn.root.holder = holder = Item(child=Item(a=1))
    conn.transaction_manager.commit()
    child_oid = holder.child._p_oid
    _delete(db.storage, child_oid)
    other = open_connection(db)
    try:
        child = other.root.holder.child
        with pytest.raises(errors.POSKeyError) as info:
            child.a
        assert info.value.args[0] == child_oid
        expected = 'oid %s (db_fixtures.Item)' % errors.oid_repr(
            holder._p_oid)
        assert info.value.referenced_by == expected
        assert 'referenced by ' + expected in str(info.value)
    finally:
        close_connection(other)


class WithNewArgs(Item):
    """Referenced by bare oid (its class needs __getnewargs__)."""

    def __getnewargs__(self):
        return ()


def test_dangling_bare_oid_reference_names_the_holder_too(db, conn):
    conn.root.holder = holder = Item(child=WithNewArgs(a=1))
    conn.transaction_manager.commit()
    child_oid = holder.child._p_oid
    _delete(db.storage, child_oid)
    other = open_connection(db)
    try:
        ghost = other.root.holder
        with pytest.raises(errors.POSKeyError) as info:
            ghost.child
        assert info.value.args[0] == child_oid
        assert info.value.referenced_by == 'oid %s (db_fixtures.Item)' % (
            errors.oid_repr(holder._p_oid))
    finally:
        close_connection(other)


def test_unpicklable_value_names_class_and_path_and_writes_nothing(db, conn):
    conn.root.item = Item(a=1)
    conn.transaction_manager.commit()
    last = db.lastTransaction()
    conn.root.item.callback = lambda: None
    conn.root.fresh = fresh = Item()
    with pytest.raises(errors.SerializationError) as info:
        conn.transaction_manager.commit()
    assert 'db_fixtures.Item' in str(info.value)
    assert 'callback' in str(info.value)
    conn.transaction_manager.abort()
    assert db.lastTransaction() == last
    assert fresh._p_jar is None and fresh._p_oid is None
    assert not hasattr(conn.root.item, 'callback')
    conn.root.item.a = 2        # the connection keeps working
    conn.transaction_manager.commit()
    assert db.lastTransaction() > last


def test_object_of_another_connection_cannot_be_stored(db, conn):
    conn.root.item = Item()
    conn.transaction_manager.commit()
    other = open_connection(db)
    try:
        other.root.foreign = conn.root.item
        with pytest.raises(errors.InvalidObjectReference):
            other.transaction_manager.commit()
        with pytest.raises(errors.InvalidObjectReference):
            other.add(conn.root.item)
    finally:
        close_connection(other)


def test_add_refuses_non_persistent_objects(conn):
    with pytest.raises(TypeError, match='persistent'):
        conn.add(object())


def test_closed_connection_refuses_use(db):
    connection = open_connection(db)
    connection.root.item = Item(a=1)
    connection.transaction_manager.commit()
    item = connection.root.item
    item._p_deactivate()
    connection.close()
    with pytest.raises(errors.ConnectionStateError, match='closed'):
        connection.get(z64)
    with pytest.raises(errors.ConnectionStateError, match='closed'):
        item.a
    with pytest.raises(errors.ConnectionStateError, match='closed'):
        connection.add(Item())
    connection.close()      # closing again does nothing


def test_close_with_uncommitted_changes_raises(db):
    connection = open_connection(db)
    connection.root.x = 1
    with pytest.raises(errors.ConnectionStateError, match='uncommitted'):
        connection.close()
    connection.transaction_manager.abort()
    connection.close()


def test_cache_minimize_ghosts_unchanged_objects(conn):
    conn.root.items = [Item(n=i) for i in range(5)]
    conn.transaction_manager.commit()
    items = conn.root.items
    items[0].n = 'changed'
    conn.cacheMinimize()
    assert items[0]._p_changed is True
    assert all(item._p_changed is None for item in items[1:])
    assert [item.n for item in items[1:]] == [1, 2, 3, 4]


def test_cache_keeps_about_cache_size_objects(storage_factory):
    database = DB(storage_factory(), cache_size=10)
    try:
        connection = open_connection(database)
        connection.root.items = items = [Item(n=i) for i in range(100)]
        connection.transaction_manager.commit()
        connection.cacheMinimize()
        assert sum(item.n for item in items) == sum(range(100))
        connection.cacheGC()
        assert connection.cacheSize() <= 10
        assert sum(item.n for item in items) == sum(range(100))
        close_connection(connection)
    finally:
        database.close()


@pytest.mark.history
def test_oldstate_returns_an_earlier_state(conn):
    conn.root.item = item = Item(a=1)
    conn.transaction_manager.commit()
    first = item._p_serial
    item.a = 2
    conn.transaction_manager.commit()
    assert conn.oldstate(item, first) == {'a': 1}


def test_sync_shows_other_connections_commits(db, conn):
    conn.root.item = Item(a=1)
    conn.transaction_manager.commit()
    other = open_connection(db)
    try:
        item = other.root.item
        assert item.a == 1
        conn.root.item.a = 2
        conn.transaction_manager.commit()
        assert item.a == 1
        other.sync()
        assert item._p_changed is None      # ghosted, not reloaded
        assert item.a == 2
    finally:
        close_connection(other)


def test_default_transaction_manager_is_the_threads(db):
    connection = db.open()
    try:
        connection.root.x = 1
        transaction.commit()
        assert connection.root.x == 1
        assert not connection.isReadOnly()
    finally:
        transaction.abort()
        connection.close()


def test_explicit_transaction_manager(db):
    manager = transaction.TransactionManager(explicit=True)
    connection = db.open(manager)
    try:
        with manager:
            connection.root.x = 1
        with manager:
            assert connection.root.x == 1
    finally:
        connection.close()


def test_read_only_storage_refuses_commit(tmp_path):
    path = tmp_path / 'Data.fs'
    DB(FileStorage(path)).close()
    database = DB(FileStorage(path, read_only=True))
    try:
        connection = open_connection(database)
        assert connection.isReadOnly()
        connection.root.x = 1
        with pytest.raises(errors.ReadOnlyError):
            connection.transaction_manager.commit()
        close_connection(connection)
    finally:
        database.close()


def test_cache_size_bytes_bounds_the_cache_by_size(storage_factory):
    database = DB(storage_factory(), cache_size=10000, cache_size_bytes=4000)
    try:
        connection = open_connection(database)
        connection.root.items = items = [Item(pad='x' * 300)
                                         for _ in range(100)]
        connection.transaction_manager.commit()
        connection.cacheMinimize()
        assert sum(len(item.pad) for item in items) == 30000
        connection.cacheGC()
        assert connection.cacheSize() < 30
        close_connection(connection)
    finally:
        database.close()


def test_an_object_whose_class_is_gone_loads_broken(db, conn):
    module = types.ModuleType('objstore_vanishing_module')
    exec('from persistent import Persistent\n'
         'class Gone(Persistent):\n'
         '    pass\n', module.__dict__)
    sys.modules[module.__name__] = module
    try:
        gone = module.Gone()
        gone.size = 3
        conn.root.gone = gone
        conn.root.kept = Item(a=1)
        conn.transaction_manager.commit()
    finally:
        del sys.modules[module.__name__]
    other = open_connection(db)
    try:
        loaded = other.root.gone
        assert isinstance(loaded, Broken)
        assert type(loaded).__name__ == 'Gone'
        assert other.root.kept.a == 1
    finally:
        close_connection(other)


def test_get_then_first_use_reads_the_record_once(db):
    with db.transaction() as connection:
        connection.root()['item'] = stored = Item(a=1)
    oid = stored._p_oid
    # The pooled connection has the item cached: hold it, take a new one.
    busy = db.open(transaction.TransactionManager())
    connection = db.open(transaction.TransactionManager())
    try:
        assert connection._cache.get(oid) is None
        loads = []
        load = connection._storage.load

        def counting_load(oid):
            loads.append(oid)
            return load(oid)
        connection._storage.load = counting_load
        item = connection.get(oid)
        assert item._p_changed is None          # a ghost
        assert item.a == 1 and loads == [oid]   # the record get() read
        connection.cacheMinimize()
        assert item.a == 1 and loads == [oid, oid]
    finally:
        connection.close()
        busy.close()
