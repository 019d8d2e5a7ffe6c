"""copyTransactionsFrom between FileStorage and PostgreSQLStorage, both
ways, with the history kept: the same tids, metadata and records, and
``history()`` and ``loadBefore`` answering alike on both sides."""
import urllib.parse

import pytest
import transaction
from BTrees.OOBTree import OOBTree
from persistent.mapping import PersistentMapping

import objstore
from objstore import errors
from objstore.db import DB
from objstore.storages.base import maxtid, z64
from objstore.storages.file import FileStorage
from objstore.testing.pg import pg_database  # noqa: F401 -- a fixture
from objstore.uri import open_storage
from db_fixtures import commit_change


def _storage(dsn, **options):
    from objstore.storages import PostgreSQLStorage
    return PostgreSQLStorage(dsn, **options)


def _populate(db):
    """A history worth copying: metadata, updates, a tree, an undo, a
    deletion from the root; returns the undone transaction's id."""
    def create(root):
        root['a'] = PersistentMapping(n=0)
        root['tree'] = OOBTree()
    commit_change(db, create, user='alice', description='create',
            extension={'ticket': 42})

    def fill(root):
        for i in range(300):        # enough to split the tree's buckets
            root['tree'][i] = 'v%d' % i
        root['a']['n'] = 1
    commit_change(db, fill, user='bob', description='fill \u00e9')
    commit_change(db, lambda root: root['a'].__setitem__('n', 2),
            description='to be undone')
    undone = db.undoLog(0, 1)[0]['id']
    manager = transaction.TransactionManager()
    manager.begin()
    db.undo(undone, manager.get())
    manager.get().note('undo n=2')
    manager.commit()
    commit_change(db, lambda root: root.__setitem__('b', PersistentMapping()))
    commit_change(db, lambda root: root.pop('b'), description='drop b')
    return undone


def _transactions(storage):
    """Every transaction as comparable values."""
    iterator = storage.iterator()
    try:
        return [(txn.tid, txn.status, bytes(txn.user), bytes(txn.description),
                 txn.extension,
                 [(r.oid, r.tid, r.data, r.data_txn) for r in txn])
                for txn in iterator]
    finally:
        getattr(iterator, 'close', lambda: None)()


def _load_before(storage, oid, tid):
    try:
        return storage.loadBefore(oid, tid)
    except errors.POSKeyError:
        return 'POSKeyError'


def _assert_same(source, copy):
    expected = _transactions(source)
    assert _transactions(copy) == expected
    assert copy.lastTransaction() == source.lastTransaction()
    oids = sorted({r[0] for txn in expected for r in txn[5]})
    assert len(oids) > 5
    for oid in oids:
        assert copy.history(oid, 100) == source.history(oid, 100)
        tids = [entry['tid'] for entry in source.history(oid, 100)]
        for tid in tids + [maxtid]:
            assert _load_before(copy, oid, tid) == \
                _load_before(source, oid, tid)
        for tid in tids:
            assert copy.loadSerial(oid, tid) == source.loadSerial(oid, tid)
    return expected


def _root_values(db):
    manager = transaction.TransactionManager()
    conn = db.open(manager)
    try:
        root = conn.root()
        return (sorted(root), root['a']['n'], len(root['tree']),
                root['tree'][299])
    finally:
        manager.abort()
        conn.close()


def test_file_to_postgresql_keeps_the_history(tmp_path, pg_database):
    source_db = DB(FileStorage(str(tmp_path / 'source.fs'), fsync=False))
    _populate(source_db)
    source = source_db.storage
    copy = _storage(pg_database)
    try:
        copy.copyTransactionsFrom(source)
        expected = _assert_same(source, copy)
        assert len(expected) == 7       # the root's creation and six more
        assert any(r[3] for txn in expected for r in txn[5])   # the undo
        assert copy.history(z64)[0]['description'] == b'drop b'
        assert [t[2] for t in expected[:2]] == [b'', b'alice']
        assert expected[1][4] == {'ticket': 42}
    finally:
        copy.close()
    # A DB on the copy reads the same objects and commits after the
    # copied transactions, with new oids past the copied ones.
    db = DB(_storage(pg_database))
    try:
        assert _root_values(db) == _root_values(source_db) == (
            ['a', 'tree'], 1, 300, 'v299')
        before = db.lastTransaction()
        commit_change(db, lambda root: root.__setitem__('c', PersistentMapping()))
        assert db.lastTransaction() > before
        manager = transaction.TransactionManager()
        conn = db.open(manager)
        new_oid = conn.root()['c']._p_oid
        conn.close()
        copied = {r[0] for txn in _transactions(db.storage) for r in txn[5]}
        assert new_oid > max(copied - {new_oid})
    finally:
        db.close()
        source_db.close()


def test_postgresql_to_file_keeps_the_history(tmp_path, pg_database):
    source_db = DB(_storage(pg_database))
    copy = FileStorage(str(tmp_path / 'copy.fs'), fsync=False)
    try:
        _populate(source_db)
        copy.copyTransactionsFrom(source_db.storage)
        _assert_same(source_db.storage, copy)
    finally:
        copy.close()
    db = DB(FileStorage(str(tmp_path / 'copy.fs'), fsync=False))
    try:
        assert _root_values(db) == _root_values(source_db)
    finally:
        db.close()
        source_db.close()


def test_file_to_postgresql_and_back_gives_the_same_transactions(
        tmp_path, pg_database):
    """file -> PostgreSQL -> file gives back the same transactions."""
    first = FileStorage(str(tmp_path / 'first.fs'), fsync=False)
    db = DB(first)
    _populate(db)
    middle = _storage(pg_database)
    last = FileStorage(str(tmp_path / 'last.fs'), fsync=False)
    try:
        middle.copyTransactionsFrom(first)
        last.copyTransactionsFrom(middle)
        assert _transactions(last) == _transactions(first)
    finally:
        last.close()
        middle.close()
        db.close()


def test_a_destination_that_moved_on_is_refused(tmp_path, pg_database):
    source_db = DB(FileStorage(str(tmp_path / 'source.fs'), fsync=False))
    _populate(source_db)
    # DB() writes the root in a transaction of its own, newer than every
    # transaction of the source.
    destination_db = DB(_storage(pg_database))
    try:
        last = destination_db.lastTransaction()
        with pytest.raises(errors.StorageTransactionError):
            destination_db.storage.copyTransactionsFrom(source_db.storage)
        assert destination_db.lastTransaction() == last
    finally:
        destination_db.close()
        source_db.close()


def _postgresql_uri(dsn):
    """``dsn`` as a postgresql:// URI for objstore.open."""
    if dsn.startswith(('postgresql://', 'postgres://')):
        return dsn
    from psycopg.conninfo import conninfo_to_dict
    parts = conninfo_to_dict(dsn)
    netloc = urllib.parse.quote(parts.get('user', ''), safe='')
    if netloc:
        netloc += '@'
    netloc += parts.get('host', '')
    if parts.get('port'):
        netloc += ':%s' % parts['port']
    return 'postgresql://%s/%s' % (netloc,
                                   urllib.parse.quote(parts['dbname']))


def test_copy_through_uris(tmp_path, pg_database):
    """Storages opened by URI copy both ways, and objstore.open reads the
    copies."""
    file_uri = 'file://' + str(tmp_path / 'source.fs')
    pg_uri = _postgresql_uri(pg_database)
    with objstore.open(file_uri, fsync=False) as source_db:
        _populate(source_db)
        expected = _root_values(source_db)
    source = open_storage(file_uri, read_only=True)
    destination = open_storage(pg_uri)
    try:
        destination.copyTransactionsFrom(source)
        copied = _assert_same(source, destination)
    finally:
        destination.close()
        source.close()
    with objstore.open(pg_uri) as db:
        assert _root_values(db) == expected
    back = open_storage('file://' + str(tmp_path / 'back.fs'), fsync=False)
    source = open_storage(pg_uri, read_only=True)
    try:
        back.copyTransactionsFrom(source)
        assert _transactions(back) == copied
    finally:
        source.close()
        back.close()
