"""FileStorage and MemoryStorage against the model of
:mod:`objstore.testing.statemachine`: random commits, conflicts, aborts,
undos, packs with and without GC, and reads, and for FileStorage
closing and reopening (with or without the index checkpoint), opening what
a killed writer left, checkpoints, and a read-only instance beside the
writer, agreeing with the model after every step.

MemoryStorage runs the same machine (without reopening), which checks
the model itself against the reference storage.
``OBJSTORE_STATEMACHINE_EXAMPLES`` sets the number of examples (default
100; a long run: 2000).
"""
import os
import shutil
import tempfile

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import rule

from objstore.storages import MemoryStorage
from objstore.storages.file import FileStorage
from objstore.storages.file import log as file_log
from objstore.testing.recovered import snapshot
from objstore.testing.statemachine import StorageMachine

SETTINGS = settings(
    max_examples=int(os.environ.get('OBJSTORE_STATEMACHINE_EXAMPLES', '100')),
    stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow,
                           HealthCheck.filter_too_much])


class FileStorageMachine(StorageMachine):

    def make_storage(self):
        self.directory = tempfile.mkdtemp(prefix='objstore-statemachine-')
        self.path = os.path.join(self.directory, 'data.fs')
        return FileStorage(self.path)

    def teardown(self):
        try:
            super().teardown()
        finally:
            shutil.rmtree(self.directory)

    @rule(drop_checkpoint=st.booleans())
    def reopen(self, drop_checkpoint):
        """Close and open again, from the checkpoint or (without it) from
        a scan of the whole log."""
        self.storage.close()
        if drop_checkpoint and os.path.exists(self.path + '.index'):
            os.remove(self.path + '.index')
            # Only the checkpoint remembered the oids of the objects pack
            # collected (the log has no trace of them left).
            self.reusable = set(self.model.collected) - set(
                self.model.revisions)
        self.storage = FileStorage(self.path)
        self.handed_out = set()

    @rule()
    def crash(self):
        """Open what a killed writer leaves: the files as they are (the
        page cache survives a process), no closing checkpoint."""
        self.crashes = getattr(self, 'crashes', 0) + 1
        path = os.path.join(self.directory, 'crash%d.fs' % self.crashes)
        shutil.copyfile(self.path, path)
        if os.path.exists(self.path + '.index'):
            shutil.copyfile(self.path + '.index', path + '.index')
        self.storage.close()
        self.path = path
        self.storage = FileStorage(path)
        # Oids handed out since the last checkpoint may come again.
        self.handed_out = set()

    @rule()
    def checkpoint(self):
        file_log.try_checkpoint(self.storage)

    @rule()
    def reader_sees_the_same(self):
        """A read-only instance beside the writer reads what it reads."""
        reader = FileStorage(self.path, read_only=True)
        try:
            assert snapshot(reader) == snapshot(self.storage)
            assert reader.lastTransaction() == self.storage.lastTransaction()
        finally:
            reader.close()


class MemoryStorageMachine(StorageMachine):

    def make_storage(self):
        return MemoryStorage()


def test_an_oid_new_oid_returned_stays_reserved_after_a_reopen(tmp_path):
    """``IStorage.new_oid``: "never returned before by this storage ...
    also after a reopen ... The oid stays reserved even if nothing is
    stored under it" (what ZODB's FileStorage keeps in its index file)."""
    path = str(tmp_path / 'data.fs')
    storage = FileStorage(path)
    first = storage.new_oid()
    storage.close()
    storage = FileStorage(path)
    try:
        assert storage.new_oid() > first
    finally:
        storage.close()


TestFileStorageAgreesWithTheModel = FileStorageMachine.TestCase
TestFileStorageAgreesWithTheModel.settings = SETTINGS
TestMemoryStorageAgreesWithTheModel = MemoryStorageMachine.TestCase
TestMemoryStorageAgreesWithTheModel.settings = SETTINGS
