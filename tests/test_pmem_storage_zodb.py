"""ZODB's storage mixins for what PMemStorage claims, through
``objstore.zodb.adapt`` (as Zope applications see it), and ZODB.DB on it.

As in ``test_pmem_storage.py``, an instance pinned at the empty database
holds the history window open, so the mixins that read earlier revisions
(history, loadBefore/loadSerial, conflict resolution against the stored
old state) see each revision they commit. Left out, with the reason:
IteratorStorage and RecoveryStorage (every committed transaction; pmem
keeps current records only), PackableStorage (pack to a time keeps the
state the root reached then: history), TransactionalUndoStorage (no undo).
"""
import pytest

pytest.importorskip('ZODB')

import transaction  # noqa: E402
import ZODB  # noqa: E402
from ZODB.tests import (BasicStorage, ConflictResolution,  # noqa: E402
                        HistoryStorage, MTStorage, PersistentStorage,
                        ReadOnlyStorage, RevisionStorage, StorageTestBase,
                        Synchronization)
from ZODB.tests.testMVCCMappingStorage import MVCCTests  # noqa: E402

from objstore.storages import PMemStorage  # noqa: E402
from objstore.zodb import adapt  # noqa: E402


class PMemStorageZODBTests(
    StorageTestBase.StorageTestBase,
    BasicStorage.BasicStorage,
    HistoryStorage.HistoryStorage,
    MTStorage.MTStorage,
    RevisionStorage.RevisionStorage,
    Synchronization.SynchronizedStorage,
    ConflictResolution.ConflictResolvingStorage,
    PersistentStorage.PersistentStorage,
    ReadOnlyStorage.ReadOnlyStorage,
    MVCCTests,
):
    # ZODB's race tests about external invalidations need several clients
    # of one storage server (ZEO, NEO, RelStorage).
    test_race_load_vs_external_invalidate = None
    test_race_external_invalidate_vs_disconnect = None
    # RevisionStorage's check that loadBefore follows an undo: no undo.
    testLoadBeforeUndo = None
    use_extension_bytes = True

    def open(self, **kwargs):
        storage = PMemStorage('PMemStorageTests.pool', **kwargs)
        self._pin = storage.new_instance()
        self._storage = adapt(storage)

    def setUp(self):
        StorageTestBase.StorageTestBase.setUp(self)
        self.open(create=True)

    def tearDown(self):
        self._pin.release()
        StorageTestBase.StorageTestBase.tearDown(self)


def test_zodb_db_runs_on_a_pool(tmp_path):
    from persistent.mapping import PersistentMapping
    path = str(tmp_path / 'zodb.pool')
    db = ZODB.DB(adapt(PMemStorage(path)))
    conn = db.open()
    conn.root()['folder'] = PersistentMapping(a=1)
    transaction.commit()
    t1 = db.lastTransaction()
    other = db.open(transaction.TransactionManager())
    assert other.root()['folder']['a'] == 1
    conn.root()['folder']['a'] = 2
    transaction.commit()
    assert other.root()['folder']['a'] == 1
    other.transaction_manager.begin()
    assert other.root()['folder']['a'] == 2
    assert t1 < db.lastTransaction()
    conn.close()
    other.close()
    db.close()
    db = ZODB.DB(adapt(PMemStorage(path, read_only=True)))
    assert db.open().root()['folder']['a'] == 2
    db.close()
