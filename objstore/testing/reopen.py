"""Storages that keep their data: what a reopened instance must show.

Composed only by storages whose data outlives ``close()`` (FileStorage and
the storages that come later); an in-process storage has nothing to reopen,
so it leaves this mixin out rather than skipping its tests.
"""
import time

import pytest

from objstore import errors
from objstore.interfaces import IHistoryWindow
from objstore.serialize import references
from objstore.storages.base import maxtid, u64, z64
from objstore.testing.helpers import (
    current, make_txn, new_object, record, set_value)
from objstore.testing.pack import A, C, PackConformance


class ReopenConformance(PackConformance):
    """Needs ``reopen_storage`` (see :mod:`objstore.testing.harness`)."""

    def test_reopen_keeps_every_revision(self, storage):
        oid, t1 = new_object(storage, 1, refs=[z64])
        t2 = set_value(storage, oid, 2)
        reopened = self.reopen(storage)
        assert reopened.lastTransaction() == t2
        assert reopened.loadBefore(oid, maxtid) == (record(2), t2, None)
        assert reopened.loadSerial(oid, t1) == record(1, refs=[z64])
        assert u64(reopened.new_oid()) > u64(oid)
        assert new_object(reopened, 3)[1] > t2

    def test_read_only_storage_refuses_writes(self, storage):
        oid, tid = new_object(storage, 1)
        read_only = self.reopen(storage, read_only=True)
        assert read_only.isReadOnly() is True
        assert read_only.loadBefore(oid, maxtid) == (record(1), tid, None)
        with pytest.raises(errors.ReadOnlyError):
            read_only.new_oid()
        with pytest.raises(errors.ReadOnlyError):
            read_only.tpc_begin(make_txn())
        with pytest.raises(errors.ReadOnlyError):
            read_only.pack(time.time(), references)
        with pytest.raises((errors.ReadOnlyError,
                            errors.StorageTransactionError)):
            read_only.store(oid, tid, record(2), '', make_txn())

    def test_packed_state_survives_reopen(self, storage):
        self.put(storage, 0, {z64: record('root', refs=[A]), A: record(0),
                              C: record('c')})
        t1 = self.put(storage, 1, {A: record(1)})
        self.pack(storage, 1)
        reopened = self.reopen(storage)
        assert current(reopened, A) == (record(1), t1)
        assert len(reopened.history(A, 10)) == 1
        self.assert_gone(reopened, C)

    def test_history_window_survives_reopen(self, storage):
        if not IHistoryWindow.providedBy(storage):
            pytest.skip('the storage has no history window')
        self.put(storage, 0, {z64: record('root', refs=[A]), A: record(0)})
        t1 = self.put(storage, 1, {A: record(1)})
        self.put(storage, 2, {A: record(2)})
        storage = self.reopen(storage)
        assert storage.history_start() == z64
        self.pack(storage, 1)
        self.put(storage, 3, {A: record(3)})
        reopened = self.reopen(storage)
        assert reopened.history_start() == t1
        self.put(reopened, 4, {A: record(4)})
        assert reopened.history_start() == t1
        assert self.reopen(reopened, read_only=True).history_start() == t1
