"""Fixtures for tests that run on every storage kind through a ``DB``.

Import them into a test module (``from db_fixtures import db,
storage_factory``); pytest then parametrizes each test over the storages in
:data:`STORAGES`. Later storages add themselves here.
"""
import pytest
import transaction
from persistent import Persistent

from objstore.db import DB
from objstore.storages.file import FileStorage
from objstore.storages.memory import MemoryStorage
from objstore.storages.pmem import PMemStorage

STORAGES = ['memory', 'file', 'pmem', 'postgresql', 'postgresql-hf']
#: Kinds that keep no history: tests marked ``history`` do not run on them.
NO_HISTORY = frozenset({'pmem', 'postgresql-hf'})


class StorageFactory:
    """Makes storages of one kind; every storage made is closed at teardown.

    ``factory()`` opens a storage on the same data each time for kinds that
    keep data (``keeps_data``: the file storage reopens its file); a memory
    storage starts empty every time. ``factory(read_only=True)`` opens the
    same data read-only where the kind supports it.
    """

    def __init__(self, kind, tmp_path):
        self.kind = kind
        self.path = tmp_path / 'Data.fs'
        self.keeps_data = kind != 'memory'
        self.dsn = None
        self.made = []

    def __call__(self, read_only=False):
        if self.kind == 'memory':
            storage = MemoryStorage()
        elif self.kind.startswith('postgresql'):
            from objstore.storages import PostgreSQLStorage
            from objstore.testing.pg import new_schema_dsn
            if self.dsn is None:
                # A schema of its own, in one database for the process.
                self.dsn = new_schema_dsn()
            storage = PostgreSQLStorage(
                self.dsn, keep_history=self.kind == 'postgresql',
                read_only=read_only)
        elif self.kind == 'pmem':
            path = self.path.with_suffix('.pool')
            storage = PMemStorage(path, create=not path.exists(),
                                  read_only=read_only)
        else:
            storage = FileStorage(self.path, read_only=read_only,
                                  fsync=False)
        self.made.append(storage)
        return storage

    def __repr__(self):
        return '<StorageFactory %s>' % self.kind

    def close_all(self):
        for storage in self.made:
            storage.close()


@pytest.fixture(params=STORAGES)
def storage_factory(request, tmp_path):
    """A :class:`StorageFactory` for each storage kind."""
    factory = StorageFactory(request.param, tmp_path)
    yield factory
    factory.close_all()


@pytest.fixture
def db(storage_factory):
    """A DB on a fresh storage of each kind, closed after the test."""
    database = DB(storage_factory())
    yield database
    database.close()


@pytest.fixture
def conn(db):
    """An open connection of ``db`` with its own transaction manager;
    aborted and closed after the test."""
    connection = open_connection(db)
    yield connection
    close_connection(connection)


def open_connection(database, **kw):
    """``database.open`` with a new transaction manager of its own."""
    return database.open(transaction.TransactionManager(), **kw)


def close_connection(connection):
    """Abort what the connection's transaction holds, then close it."""
    if connection.transaction_manager is not None:
        connection.transaction_manager.abort()
    connection.close()


def commit_change(database, change, user='', description='', extension=None):
    """Call ``change(root)`` in one transaction of ``database`` (its own
    manager and connection) with the given metadata, and commit it."""
    manager = transaction.TransactionManager()
    conn = database.open(manager)
    try:
        txn = manager.begin()
        txn.user = user
        txn.description = description
        for key, value in (extension or {}).items():
            txn.setExtendedInfo(key, value)
        change(conn.root())
        manager.commit()
    finally:
        conn.close()


class Item(Persistent):
    """A persistent object with whatever attributes a test gives it."""

    def __init__(self, **attrs):
        self.__dict__.update(attrs)

    def __repr__(self):
        return '<Item %r>' % {k: v for k, v in self.__dict__.items()}


class Counter(Persistent):
    """Resolves concurrent increments as ``BTrees.Length`` does."""

    def __init__(self, value=0):
        self.value = value

    def add(self, n):
        self.value += n

    def _p_resolveConflict(self, old, committed, new):
        return {'value': committed['value'] + new['value'] - old['value']}
