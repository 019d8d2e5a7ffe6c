"""ZODB's own storage conformance mixins, run against objstore's storages.

Each storage is handed to the mixins through ``objstore.zodb.adapt``, the way
Zope applications see it. A mixin is left out only when the storage does not
claim the capability it tests; the reason stands next to it.
"""
import os

import pytest

pytest.importorskip('ZODB')

from ZODB.tests import (BasicStorage, ConflictResolution, HistoryStorage,  # noqa: E402
                        IteratorStorage, MTStorage, PackableStorage,
                        PersistentStorage, ReadOnlyStorage, RecoveryStorage,
                        RevisionStorage, StorageTestBase, Synchronization,
                        TransactionalUndoStorage)

from objstore.storages import FileStorage, MemoryStorage  # noqa: E402
from objstore.zodb import adapt  # noqa: E402


class _ObjstoreStorageTests(
    StorageTestBase.StorageTestBase,
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
):
    """The mixins every objstore storage passes (all claim undo and pack).

    BasicStorage brings ZODB's race tests; the two about external
    invalidations need several clients of one storage server (ZEO, NEO,
    RelStorage), which an in-process storage is not, so they are left out
    here instead of skipping themselves.
    """

    __test__ = False  # a base to compose, not a test case itself

    test_race_load_vs_external_invalidate = None
    test_race_external_invalidate_vs_disconnect = None

    # Our storages keep a transaction's extension as the bytes they were
    # given (as ZODB's FileStorage does), memory storage included.
    use_extension_bytes = True


class MemoryStorageZODBTests(_ObjstoreStorageTests):
    __test__ = True

    # Not included: PersistentStorage and ReadOnlyStorage (reopening the same
    # data is meaningless for an in-process storage), RecoveryStorage is
    # covered by MemoryStorageRecoveryTests below.

    def setUp(self):
        StorageTestBase.StorageTestBase.setUp(self)
        self._storage = adapt(MemoryStorage())


class MemoryStorageRecoveryTests(
    StorageTestBase.StorageTestBase,
    RecoveryStorage.RecoveryStorage,
):

    def setUp(self):
        StorageTestBase.StorageTestBase.setUp(self)
        self._storage = adapt(MemoryStorage('source'))
        self._dst = adapt(MemoryStorage('destination'))

    def tearDown(self):
        self._dst.close()
        StorageTestBase.StorageTestBase.tearDown(self)

    def new_dest(self):
        return adapt(MemoryStorage('destination'))


class FileStorageZODBTests(
    _ObjstoreStorageTests,
    PersistentStorage.PersistentStorage,
    ReadOnlyStorage.ReadOnlyStorage,
):
    __test__ = True


    def open(self, **kwargs):
        self._storage = adapt(FileStorage('FileStorageTests.fs', **kwargs))

    def setUp(self):
        StorageTestBase.StorageTestBase.setUp(self)
        self.open(create=True)


class FileStorageRecoveryTests(
    StorageTestBase.StorageTestBase,
    RecoveryStorage.RecoveryStorage,
):

    def setUp(self):
        StorageTestBase.StorageTestBase.setUp(self)
        self._storage = adapt(FileStorage('Source.fs', create=True))
        self._dst = adapt(FileStorage('Dest.fs', create=True))

    def tearDown(self):
        self._dst.close()
        StorageTestBase.StorageTestBase.tearDown(self)

    def new_dest(self):
        return adapt(FileStorage('Dest.fs'))


class FileStorageToMemoryRecoveryTests(FileStorageRecoveryTests):
    """Copying between different objstore storages keeps everything."""

    def setUp(self):
        StorageTestBase.StorageTestBase.setUp(self)
        self._storage = adapt(FileStorage('Source.fs', create=True))
        self._dst = adapt(MemoryStorage('destination'))

    def new_dest(self):
        return adapt(MemoryStorage('destination'))


def test_mixins_run_in_a_fresh_directory():
    # ZODB's TestCase moves each test into its own temporary directory, so
    # the relative file names above never collide or leak.
    assert not os.path.exists('FileStorageTests.fs')
