"""IHistoryWindow: how far back the storage can show the whole database."""
import time

import pytest

from objstore import errors
from objstore.interfaces import IHistoryWindow, IStorageRestoreable
from objstore.serialize import references
from objstore.storages.base import maxtid, z64
from objstore.testing.helpers import after
from objstore.testing.helpers import record
from objstore.testing.pack import A, B, PackClock


def reads(storage, oids, befores):
    """``{(oid, before): loadBefore result or 'POSKeyError'}``."""
    found = {}
    for oid in oids:
        for before in befores:
            try:
                found[oid, before] = storage.loadBefore(oid, before)
            except errors.POSKeyError:
                found[oid, before] = 'POSKeyError'
    return found


class IHistoryWindowConformance(PackClock):
    """history_start()."""

    def test_declares_the_history_window(self, storage):
        assert IHistoryWindow.providedBy(storage)

    def test_z64_until_a_pack_forgets_something(self, storage):
        assert storage.history_start() == z64
        t0 = self.put(storage, 0, {z64: record('root', refs=[A]),
                                   A: record(0)})
        self.put(storage, 1, {A: record(1)})
        assert storage.history_start() == z64
        # A pack before the first transaction keeps everything.
        storage.pack(self.clock.time(0) - 5, references)
        assert storage.history_start() == z64
        assert storage.loadSerial(A, t0) == record(0)

    def test_after_a_pack_every_later_moment_reads_as_before(self, storage):
        t0 = self.put(storage, 0, {z64: record('root', refs=[A]),
                                   A: record(0)})
        t1 = self.put(storage, 1, {A: record(1)})
        t2 = self.put(storage, 2, {B: record('garbage')})
        t3 = self.put(storage, 3, {A: record(3)})
        t4 = self.put(storage, 4, {z64: record('new root', refs=[A])})
        befores = [after(t1), t2, after(t2), t3, after(t3), t4, maxtid]
        was = reads(storage, [z64, A], befores)
        self.pack(storage, 2)
        # t2 kept nothing (B was garbage then) and went; t1 is the newest
        # transaction the pack kept the state of.
        assert storage.history_start() == t1
        assert reads(storage, [z64, A], befores) == was
        assert storage.loadBefore(A, t1) is None
        assert t0 < t1

    def test_a_pack_past_the_last_transaction_starts_there(self, storage):
        self.put(storage, 0, {z64: record('root', refs=[A]), A: record(0)})
        t1 = self.put(storage, 1, {A: record(1)})
        storage.pack(time.time(), references)
        assert storage.history_start() == t1 == storage.lastTransaction()
        t2 = self.put(storage, 2, {A: record(2)})
        assert storage.history_start() == t1 < t2

    def test_never_decreases(self, storage):
        self.put(storage, 0, {z64: record('root', refs=[A]), A: record(0)})
        self.put(storage, 1, {A: record(1)})
        t2 = self.put(storage, 2, {A: record(2)})
        self.put(storage, 3, {A: record(3)})
        self.pack(storage, 2)
        assert storage.history_start() == t2
        try:
            self.pack(storage, 0)
        except errors.StorageError:
            pass
        assert storage.history_start() == t2

    def test_a_copy_has_the_same_window(self, storage):
        if not IStorageRestoreable.providedBy(storage):
            pytest.skip('the storage does not restore')
        self.put(storage, 0, {z64: record('root', refs=[A]), A: record(0)})
        t1 = self.put(storage, 1, {A: record(1)})
        self.put(storage, 2, {A: record(2)})
        self.pack(storage, 1)
        copy = self.new_storage()
        copy.copyTransactionsFrom(storage)
        assert copy.history_start() == storage.history_start() == t1
