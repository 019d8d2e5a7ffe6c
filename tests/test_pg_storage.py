"""PostgreSQLStorage: the objstore conformance suite, in both history modes.

One database per module; every storage a test makes gets a schema of its
own in it (objstore.testing.pg.schema_dsn), so tests never see each other.
Skipped without a server, except under CI=true.
"""
import itertools

import pytest

pytest.importorskip('psycopg')

from objstore import errors, testing  # noqa: E402
from objstore.testing.pg import pg_module_database, schema_dsn  # noqa: E402,F401

_schemas = itertools.count(1)


def make_pg_storage(uri, **options):
    from objstore.storages.postgresql import PostgreSQLStorage
    return PostgreSQLStorage(schema_dsn(uri, 's%d' % next(_schemas)),
                             **options)


class _PG:

    keep_history = True

    @pytest.fixture(autouse=True)
    def _database(self, pg_module_database):
        self.uri = pg_module_database

    def make_storage(self):
        return make_pg_storage(self.uri, keep_history=self.keep_history)

    def reopen_storage(self, storage, read_only=False):
        from objstore.storages.postgresql import PostgreSQLStorage
        storage.close()
        return PostgreSQLStorage(storage._shared.dsn,
                                 keep_history=self.keep_history,
                                 read_only=read_only)


class TestHistoryPreserving(
        _PG,
        testing.IStorageConformance,
        testing.IStorageIterationConformance,
        testing.IStorageUndoableConformance,
        testing.IStorageRestoreableConformance,
        testing.IStorageCurrentRecordIterationConformance,
        testing.ReadVerifyingStorageConformance,
        testing.IExternalGCConformance,
        testing.IHistoryWindowConformance,
        testing.ReopenConformance):
    pass
