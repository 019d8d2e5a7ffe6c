"""ZODB's own storage conformance mixins, run against PostgreSQLStorage.

As in test_zodb_conformance.py, each storage is handed to the mixins
through ``objstore.zodb.adapt``. Every test gets a schema of its own in one
database per module (objstore.testing.pg). A mixin is left out only when
the storage does not claim what it tests; the reason stands next to it.
"""
import itertools

import pytest

pytest.importorskip('ZODB')
pytest.importorskip('psycopg')

from ZODB.tests import (BasicStorage, ConflictResolution, HistoryStorage,  # noqa: E402
                        IteratorStorage, MTStorage, PackableStorage,
                        PersistentStorage, ReadOnlyStorage, RecoveryStorage,
                        RevisionStorage, StorageTestBase, Synchronization,
                        TransactionalUndoStorage)

from objstore.testing.pg import pg_module_database, schema_dsn  # noqa: E402,F401
from objstore.zodb import adapt  # noqa: E402

_schemas = itertools.count(1)


class _PGBase(StorageTestBase.StorageTestBase):
    """A fresh schema per test; ``open`` (re)opens the storage on it."""

    __test__ = False
    keep_history = True
    use_extension_bytes = True

    @pytest.fixture(autouse=True)
    def _pg(self, pg_module_database):
        self._pg_uri = pg_module_database

    def _storage_on(self, dsn, **kwargs):
        from objstore.storages.postgresql import PostgreSQLStorage
        return adapt(PostgreSQLStorage(dsn, keep_history=self.keep_history,
                                       **kwargs))

    def open(self, **kwargs):
        self._storage = self._storage_on(self._dsn, **kwargs)

    def setUp(self):
        StorageTestBase.StorageTestBase.setUp(self)
        self._dsn = schema_dsn(self._pg_uri, 'z%d' % next(_schemas))
        self.open()

    def _new_storage_client(self):
        # ZODB's race tests between clients of one storage server: another
        # process's storage on the same tables.
        return self._storage_on(self._dsn)


class _PGZODBTests(_PGBase):
    """What both modes leave out."""

    __test__ = False

    # 64 storage clients at once, each with its connections' sessions:
    # more than the test server's 100 connections (RelStorage, the other
    # multi-client storage, needs the same). The 8-client race test
    # (test_race_load_vs_external_invalidate) runs.
    test_race_external_invalidate_vs_disconnect = None


class HistoryPreservingZODBTests(
    _PGZODBTests,
    BasicStorage.BasicStorage,
    HistoryStorage.HistoryStorage,
    IteratorStorage.IteratorStorage,
    IteratorStorage.ExtendedIteratorStorage,
    MTStorage.MTStorage,
    PackableStorage.PackableStorageWithOptionalGC,
    PackableStorage.PackableUndoStorage,
    RevisionStorage.RevisionStorage,
    Synchronization.SynchronizedStorage,
    TransactionalUndoStorage.TransactionalUndoStorage,
    ConflictResolution.ConflictResolvingStorage,
    ConflictResolution.ConflictResolvingTransUndoStorage,
    PersistentStorage.PersistentStorage,
    ReadOnlyStorage.ReadOnlyStorage,
):
    __test__ = True


class HistoryFreeZODBTests(
    _PGZODBTests,
    BasicStorage.BasicStorage,
    MTStorage.MTStorage,
    Synchronization.SynchronizedStorage,
    PersistentStorage.PersistentStorage,
    ReadOnlyStorage.ReadOnlyStorage,
):
    """History-free: no history, iteration, undo or revisions to test, and
    no conflict resolution through the storage object (the revision a
    transaction started from is gone; connections resolve through their
    instance's snapshot, see test_pg_storage_db.py)."""

    __test__ = True
    keep_history = False


class RecoveryZODBTests(_PGBase, RecoveryStorage.RecoveryStorage):
    """copyTransactionsFrom between two PostgreSQL storages."""

    __test__ = True

    def setUp(self):
        _PGBase.setUp(self)
        self._dst_dsn = schema_dsn(self._pg_uri, 'z%d' % next(_schemas))
        self._dst = self._storage_on(self._dst_dsn)

    def tearDown(self):
        self._dst.close()
        _PGBase.tearDown(self)

    def new_dest(self):
        return self._storage_on(self._dst_dsn)
