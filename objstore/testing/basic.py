"""IStorage: two-phase commit, oids and tids, reading revisions, close,
read-only, atomicity, and ``verifyObject`` for every declared interface."""
import time

import pytest
from zope.interface import providedBy
from zope.interface.verify import verifyObject

from objstore import errors
from objstore.interfaces import IStorage
from objstore.serialize import references
from objstore.storages.base import maxtid, p64, tid_time, time_tid, u64, z64
from objstore.testing.harness import ConformanceBase
from objstore.testing.helpers import (
    after, commit, current, make_txn, new_object, record, set_value, value_of)


class BasicConformance(ConformanceBase):
    """The core of IStorage (history and pack have their own mixins)."""

    # -- declarations -----------------------------------------------------

    def test_every_declared_interface_is_implemented(self, storage):
        provided = list(providedBy(storage))
        assert IStorage in provided
        for iface in provided:
            verifyObject(iface, storage)

    def test_new_storage_is_empty(self, storage):
        assert storage.lastTransaction() == z64
        assert len(storage) == 0
        assert isinstance(storage.getName(), str)
        assert isinstance(storage.sortKey(), str)
        assert storage.isReadOnly() is False
        oid = p64(1)
        with pytest.raises(errors.POSKeyError):
            storage.loadBefore(oid, maxtid)
        with pytest.raises(errors.POSKeyError):
            storage.loadSerial(oid, p64(1))
        with pytest.raises(errors.POSKeyError):
            storage.history(oid)

    # -- two-phase commit call order --------------------------------------

    def test_store_without_tpc_begin_raises(self, storage):
        with pytest.raises(errors.StorageTransactionError):
            storage.store(storage.new_oid(), z64, record(1), '', make_txn())

    def test_calls_with_another_transaction_raise(self, storage):
        txn, other = make_txn(), make_txn()
        storage.tpc_begin(txn)
        oid = storage.new_oid()
        with pytest.raises(errors.StorageTransactionError):
            storage.store(oid, z64, record(1), '', other)
        with pytest.raises(errors.StorageTransactionError):
            storage.tpc_vote(other)
        storage.tpc_vote(txn)
        with pytest.raises(errors.StorageTransactionError):
            storage.tpc_finish(other)
        storage.tpc_abort(txn)

    def test_vote_and_finish_without_begin_raise(self, storage):
        txn = make_txn()
        with pytest.raises(errors.StorageTransactionError):
            storage.tpc_vote(txn)
        with pytest.raises(errors.StorageTransactionError):
            storage.tpc_finish(txn)

    def test_abort_of_a_foreign_transaction_is_ignored(self, storage):
        storage.tpc_abort(make_txn())
        txn = make_txn()
        storage.tpc_begin(txn)
        oid = storage.new_oid()
        storage.store(oid, z64, record('kept'), '', txn)
        storage.tpc_abort(make_txn())
        storage.tpc_vote(txn)
        tid = storage.tpc_finish(txn)
        assert current(storage, oid) == (record('kept'), tid)

    def test_duplicate_tpc_begin_raises(self, storage):
        txn = make_txn()
        storage.tpc_begin(txn)
        with pytest.raises(errors.StorageTransactionError):
            storage.tpc_begin(txn)
        storage.tpc_abort(txn)
        commit(storage)

    def test_empty_transactions_commit_one_after_another(self, storage):
        first = commit(storage)
        second = commit(storage)
        assert z64 < first < second == storage.lastTransaction()

    def test_finish_calls_func_once_before_last_transaction_moves(
            self, storage):
        calls = []
        txn = make_txn()
        storage.tpc_begin(txn)
        storage.store(storage.new_oid(), z64, record(1), '', txn)
        storage.tpc_vote(txn)
        tid = storage.tpc_finish(
            txn, lambda tid: calls.append((tid, storage.lastTransaction())))
        assert calls == [(tid, z64)]
        assert storage.lastTransaction() == tid

    # -- tids and oids ----------------------------------------------------

    def test_tids_increase_and_stand_for_the_commit_time(self, storage):
        tids = []
        for n in range(5):
            before = time.time()
            tids.append(new_object(storage, n)[1])
            assert before - 2 <= tid_time(tids[-1]) <= time.time() + 2
        assert tids == sorted(set(tids))
        assert storage.lastTransaction() == tids[-1]

    def test_forced_tid_is_used_and_later_tids_follow_it(self, storage):
        new_object(storage, 'now')
        future = time_tid(time.time() + 3600)
        assert new_object(storage, 'forced', tid=future)[1] == future
        assert storage.lastTransaction() == future
        assert new_object(storage, 'next')[1] > future

    def test_forced_tid_not_after_the_last_raises(self, storage):
        last = new_object(storage, 1)[1]
        for tid in (last, p64(u64(last) - 1)):
            with pytest.raises(errors.StorageTransactionError):
                storage.tpc_begin(make_txn(), tid)
        # The refused tpc_begin left no commit lock behind.
        assert new_object(storage, 2)[1] > last

    def test_new_oids_are_unique_and_never_the_root(self, storage):
        oids = [storage.new_oid() for _ in range(200)]
        assert len(set(oids)) == 200
        assert all(len(oid) == 8 and oid != z64 for oid in oids)

    def test_new_oid_moves_past_explicitly_stored_oids(self, storage):
        commit(storage, {p64(1000): (z64, record('explicit'))})
        assert u64(storage.new_oid()) > 1000

    # -- reading revisions ------------------------------------------------

    def test_store_and_load_round_trip(self, storage):
        data = record('hello', refs=[p64(7)])
        oid = storage.new_oid()
        tid = commit(storage, {oid: (z64, data)})
        assert storage.loadBefore(oid, maxtid) == (data, tid, None)
        assert storage.loadSerial(oid, tid) == data
        assert references(storage.loadSerial(oid, tid)) == [p64(7)]
        if hasattr(storage, 'load'):
            assert storage.load(oid) == (data, tid)

    def test_load_before_finds_each_revision_and_its_end(self, storage):
        oid, t1 = new_object(storage, 1)
        unrelated = new_object(storage, 'other')[1]
        t2 = set_value(storage, oid, 2)
        t3 = set_value(storage, oid, 3)
        assert storage.loadBefore(oid, t1) is None
        assert storage.loadBefore(oid, z64) is None
        assert storage.loadBefore(oid, after(t1)) == (record(1), t1, t2)
        assert storage.loadBefore(oid, unrelated) == (record(1), t1, t2)
        assert storage.loadBefore(oid, t2) == (record(1), t1, t2)
        assert storage.loadBefore(oid, t3) == (record(2), t2, t3)
        assert storage.loadBefore(oid, maxtid) == (record(3), t3, None)
        assert [value_of(storage.loadSerial(oid, t)) for t in (t1, t2, t3)] \
            == [1, 2, 3]

    def test_load_serial_of_a_transaction_that_missed_the_object(
            self, storage):
        oid = new_object(storage, 1)[0]
        other = new_object(storage, 2)[1]
        with pytest.raises(errors.POSKeyError):
            storage.loadSerial(oid, other)

    def test_last_store_of_an_oid_in_a_transaction_wins(self, storage):
        oid = storage.new_oid()
        txn = make_txn()
        storage.tpc_begin(txn)
        storage.store(oid, z64, record('first'), '', txn)
        storage.store(oid, z64, record('second'), '', txn)
        storage.tpc_vote(txn)
        tid = storage.tpc_finish(txn)
        assert current(storage, oid) == (record('second'), tid)

    def test_len_and_size_grow_with_objects(self, storage):
        size = storage.getSize()
        new_object(storage, 'x' * 5000)
        new_object(storage, 'y')
        assert len(storage) == 2
        assert storage.getSize() > size + 5000

    # -- atomicity --------------------------------------------------------

    def test_abort_after_vote_leaves_nothing(self, storage):
        oid, tid = new_object(storage, 'old')
        fresh = storage.new_oid()
        txn = make_txn()
        storage.tpc_begin(txn)
        storage.store(oid, tid, record('new'), '', txn)
        storage.store(fresh, z64, record('fresh'), '', txn)
        storage.tpc_vote(txn)
        storage.tpc_abort(txn)
        assert current(storage, oid) == (record('old'), tid)
        with pytest.raises(errors.POSKeyError):
            storage.loadBefore(fresh, maxtid)
        assert storage.lastTransaction() == tid
        assert set_value(storage, oid, 'newer') > tid

    def test_failed_transaction_leaves_nothing(self, storage):
        oid, t1 = new_object(storage, 1)
        t2 = set_value(storage, oid, 2)
        fresh = storage.new_oid()
        # The stale store fails at store or at vote, as the storage likes.
        with pytest.raises(errors.ConflictError):
            commit(storage, {fresh: (z64, record('fresh')),
                             oid: (t1, record('stale'))})
        with pytest.raises(errors.POSKeyError):
            storage.loadBefore(fresh, maxtid)
        assert current(storage, oid) == (record(2), t2)
        assert storage.lastTransaction() == t2

    # -- close and read-only ----------------------------------------------

    def test_use_after_close_raises(self, storage):
        oid, tid = new_object(storage, 1)
        storage.close()
        calls = {
            'loadBefore': lambda: storage.loadBefore(oid, maxtid),
            'loadSerial': lambda: storage.loadSerial(oid, tid),
            'history': lambda: storage.history(oid),
            'new_oid': lambda: storage.new_oid(),
            'tpc_begin': lambda: storage.tpc_begin(make_txn()),
            'store': lambda: storage.store(oid, tid, record(2), '',
                                           make_txn()),
            'tpc_vote': lambda: storage.tpc_vote(make_txn()),
            'tpc_finish': lambda: storage.tpc_finish(make_txn()),
            'pack': lambda: storage.pack(time.time(), references),
            'lastTransaction': lambda: storage.lastTransaction(),
            'sortKey': lambda: storage.sortKey(),
            'getSize': lambda: storage.getSize(),
            '__len__': lambda: len(storage),
            'getTid': lambda: storage.getTid(oid),
            'sync': lambda: storage.sync(),
        }
        # The optional methods of the interfaces the storage declares.
        optional = {
            'load': lambda: storage.load(oid),
            'iterator': lambda: storage.iterator(),
            'record_iternext': lambda: storage.record_iternext(),
            'undoLog': lambda: storage.undoLog(),
            'undoInfo': lambda: storage.undoInfo(),
            'undo': lambda: storage.undo(tid, make_txn()),
            'restore': lambda: storage.restore(oid, tid, record(2), '',
                                               None, make_txn()),
            'deleteObject': lambda: storage.deleteObject(oid, tid,
                                                         make_txn()),
            'checkCurrentSerialInTransaction':
                lambda: storage.checkCurrentSerialInTransaction(
                    oid, tid, make_txn()),
            'history_start': lambda: storage.history_start(),
        }
        calls.update((name, call) for name, call in optional.items()
                     if hasattr(storage, name))
        for name, call in calls.items():
            with pytest.raises(errors.StorageClosedError):
                call()
                pytest.fail('%s did not raise after close' % name)
        storage.close()
        storage.tpc_abort(make_txn())
        # Descriptions of the storage, for people and error messages, stay.
        assert isinstance(storage.getName(), str)
        assert storage.isReadOnly() in (True, False)

    def test_close_discards_the_transaction_in_progress(self, storage):
        txn = make_txn()
        storage.tpc_begin(txn)
        storage.store(storage.new_oid(), z64, record(1), '', txn)
        storage.close()
        # The committer's next calls say why they fail.
        with pytest.raises(errors.StorageClosedError):
            storage.tpc_vote(txn)
        with pytest.raises(errors.StorageClosedError):
            storage.tpc_finish(txn)
        storage.tpc_abort(txn)
        with pytest.raises(errors.StorageClosedError):
            storage.tpc_begin(make_txn())
