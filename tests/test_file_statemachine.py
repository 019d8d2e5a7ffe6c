"""FileStorage and MemoryStorage against the model of
:mod:`objstore.testing.statemachine`: random commits, conflicts, aborts,
packs and reads, and for FileStorage closing and reopening (also a
read-only instance beside the writer), agreeing with the model after
every step.

MemoryStorage runs the same machine (without reopening), which checks
the model itself against the reference storage.
``OBJSTORE_STATEMACHINE_EXAMPLES`` sets the number of examples (default
100; a long run: 2000).
"""
import os
import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis.stateful import rule

from objstore.storages import MemoryStorage
from objstore.storages.file import FileStorage
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

    @rule()
    def reopen(self):
        self.storage.close()
        self.storage = FileStorage(self.path)
        self.handed_out = set()

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
