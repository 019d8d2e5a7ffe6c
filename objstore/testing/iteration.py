"""IStorageIteration (transactions in commit order) and
IStorageCurrentRecordIteration (current records in oid order)."""
from objstore.interfaces import (
    IStorageCurrentRecordIteration, IStorageIteration)
from objstore.storages.base import maxtid, p64, z64
from objstore.testing.harness import ConformanceBase
from objstore.testing.helpers import (
    after, commit, make_txn, new_object, record, set_value)


class IStorageIterationConformance(ConformanceBase):
    """iterator(start, stop)."""

    def _three(self, storage):
        oid = storage.new_oid()
        tids, serial = [], z64
        for n in range(3):
            serial = commit(storage, {oid: (serial, record(n))},
                            user='user%d' % n, description='txn %d' % n,
                            extension={'n': n})
            tids.append(serial)
        return oid, tids

    def test_declares_iteration(self, storage):
        assert IStorageIteration.providedBy(storage)

    def test_transactions_in_commit_order_with_metadata(self, storage):
        oid, tids = self._three(storage)
        txns = list(storage.iterator())
        assert [txn.tid for txn in txns] == tids
        for n, txn in enumerate(txns):
            assert txn.user == b'user%d' % n
            assert txn.description == b'txn %d' % n
            assert txn.extension == {'n': n}
            assert isinstance(txn.extension_bytes, bytes)
            assert txn.status == ' '
            rec, = list(txn)
            assert (rec.oid, rec.tid, rec.data) == (oid, tids[n], record(n))
            assert hasattr(rec, 'data_txn')

    def test_start_and_stop_are_inclusive(self, storage):
        oid, (t1, t2, t3) = self._three(storage)

        def tids(*args):
            return [txn.tid for txn in storage.iterator(*args)]
        assert tids(t2) == [t2, t3]
        assert tids(None, t2) == [t1, t2]
        assert tids(t2, t2) == [t2]
        assert tids(after(t1), t3) == [t2, t3]
        assert tids(after(t3)) == []
        assert tids(z64, maxtid) == [t1, t2, t3]

    def test_records_come_in_store_order(self, storage):
        oids = [p64(n) for n in (30, 10, 20)]
        txn = make_txn()
        storage.tpc_begin(txn)
        for oid in oids:
            storage.store(oid, z64, record(oid), '', txn)
        storage.tpc_vote(txn)
        storage.tpc_finish(txn)
        last, = list(storage.iterator())
        assert [rec.oid for rec in last] == oids

    def test_records_can_be_iterated_twice(self, storage):
        new_object(storage, 1)
        txn, = list(storage.iterator())
        assert len(list(txn)) == len(list(txn)) == 1

    def test_iterator_sees_the_storage_as_it_was_when_created(self, storage):
        oid, first = new_object(storage, 1)
        iterator = storage.iterator()
        set_value(storage, oid, 2)
        assert [txn.tid for txn in iterator] == [first]

    def test_uncommitted_transaction_is_not_iterated(self, storage):
        first = new_object(storage, 1)[1]
        txn = make_txn()
        storage.tpc_begin(txn)
        storage.store(storage.new_oid(), z64, record(2), '', txn)
        storage.tpc_vote(txn)
        try:
            assert [t.tid for t in storage.iterator()] == [first]
        finally:
            storage.tpc_finish(txn)

    def test_closing_an_iterator_early(self, storage):
        for n in range(3):
            new_object(storage, n)
        iterator = storage.iterator()
        next(iterator)
        if hasattr(iterator, 'close'):
            iterator.close()
        assert len(list(storage.iterator())) == 3


class IStorageCurrentRecordIterationConformance(ConformanceBase):
    """record_iternext."""

    def walk(self, storage, start=None):
        found, next_oid = [], start
        while True:
            oid, tid, data, next_oid = storage.record_iternext(next_oid)
            found.append((oid, tid, data))
            if next_oid is None:
                return found

    def test_declares_record_iteration(self, storage):
        assert IStorageCurrentRecordIteration.providedBy(storage)

    def test_every_current_record_once_in_oid_order(self, storage):
        expected = {}
        for n in range(5):
            oid, tid = new_object(storage, n)
            if n % 2:
                tid = set_value(storage, oid, n * 10)
                expected[oid] = (tid, record(n * 10))
            else:
                expected[oid] = (tid, record(n))
        found = self.walk(storage)
        assert [oid for oid, _, _ in found] == sorted(expected)
        assert {oid: (tid, data) for oid, tid, data in found} == expected

    def test_single_object(self, storage):
        oid, tid = new_object(storage, 1)
        assert storage.record_iternext() == (oid, tid, record(1), None)

    def test_walk_can_start_at_an_oid(self, storage):
        oids = [new_object(storage, n)[0] for n in range(4)]
        assert [oid for oid, _, _ in self.walk(storage, oids[2])] == oids[2:]

    def test_uncommitted_objects_are_not_walked(self, storage):
        oid = new_object(storage, 1)[0]
        txn = make_txn()
        storage.tpc_begin(txn)
        storage.store(storage.new_oid(), z64, record(2), '', txn)
        try:
            assert [o for o, _, _ in self.walk(storage)] == [oid]
        finally:
            storage.tpc_abort(txn)
