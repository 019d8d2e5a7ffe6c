"""PMemStorage: the conformance suite, and what is its own (MVCC window,
grow, PoolFullError, gc, reopen, the URI).

PMemStorage keeps no history: an old revision lives only while an open
instance's snapshot reads it. The conformance tests that read the past run
with the window held open (an instance pinned at the empty database, as a
long-running connection would), so each revision they commit stays
readable. Pack's mixins (history semantics: "keep what the root reached
at t") and the iteration mixin (every committed transaction) do not fit a
storage without history; this module tests pmem's own rules for both.
Bad files are in ``test_pmem_storage_files.py``, processes in
``test_pmem_storage_processes.py``, ZODB's mixins in
``test_pmem_storage_zodb.py``.
"""
import threading

import pytest
from zope.interface.verify import verifyObject

from objstore import errors, testing
from objstore.interfaces import (
    IExternalGC, IHistoryWindow, IMVCCStorage, IStorage, IStorageIteration,
    ReadVerifyingStorage)
from objstore.serialize import references
from objstore.storages import PMemStorage
from objstore.storages.base import maxtid, p64, u64, z64
from objstore.storages.pmem import format as fmt
from objstore.testing.helpers import (
    after, commit, current, make_txn, new_object, record, set_value, value_of)


class PinnedWindow:
    """make_storage: a new pool with an instance pinned at its empty state,
    so every revision committed during the test stays in the window."""

    def make_storage(self):
        path = str(self.tmp_path / ('%d.pool' % self.count()))
        return self.pinned(PMemStorage(path, pool_size=1 << 20))

    def pinned(self, storage):
        self.__dict__.setdefault('_pins', []).append(storage.new_instance())
        return storage


class TestPMemConformance(
        PinnedWindow,
        testing.BasicConformance,
        testing.ConflictConformance,
        testing.HistoryConformance,
        testing.ConcurrencyConformance,
        testing.IStorageRestoreableConformance,
        testing.IStorageCurrentRecordIterationConformance,
        testing.ReadVerifyingStorageConformance,
        testing.IExternalGCConformance):

    # Not IStorageIteration (no list of every committed transaction):
    # these two need one, so they are not collected here.
    test_iteration_shows_the_deletion_record = None
    test_copy_to_another_instance = None

    def test_pack_past_the_deletion_removes_the_object(self, storage):
        # pmem's version: a pack past the deletion removes the deletion
        # record, and the old revision goes once no snapshot reads it.
        oid, t1 = new_object(storage, 1)
        deleted = commit(storage, deletes={oid: t1})
        storage.pack(tid_seconds(deleted) - 1, references, gc=False)
        with pytest.raises(errors.POSKeyError):
            storage.loadBefore(oid, maxtid)
        assert storage.loadBefore(oid, deleted) == (record(1), t1, deleted)
        storage.pack(tid_seconds(deleted) + 1, references, gc=False)
        self._pins.pop().release()
        with pytest.raises(errors.POSKeyError):
            storage.loadBefore(oid, maxtid)
        with pytest.raises(errors.POSKeyError):
            storage.loadSerial(oid, t1)
        assert len(storage) == 0


def tid_seconds(tid):
    from objstore.storages.base import tid_time
    return tid_time(tid)


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / 'data.pool')


@pytest.fixture
def storage(path):
    storage = PMemStorage(path, pool_size=fmt.MIN_POOL_SIZE)
    yield storage
    storage.close()


def reopen(storage, **kw):
    storage.close()
    return PMemStorage(storage.getName(), **kw)


# -- declarations ---------------------------------------------------------

def test_storage_and_instances_provide_what_they_declare(storage):
    for iface in (IStorage, IMVCCStorage, IHistoryWindow, IExternalGC,
                  ReadVerifyingStorage):
        verifyObject(iface, storage)
    # Iteration would promise every committed transaction: pmem keeps
    # only current records (its iterator() groups those by tid).
    assert not IStorageIteration.providedBy(storage)
    instance = storage.new_instance()
    verifyObject(IMVCCStorage, instance)
    verifyObject(ReadVerifyingStorage, instance)
    verifyObject(IExternalGC, instance)
    instance.release()


def test_docstring_states_durability_and_the_window():
    doc = PMemStorage.__doc__
    assert 'Durability' in doc and 'Atomicity' in doc
    assert 'not history-preserving' in doc.lower().replace('\n    ', ' ')
    assert 'HistoryUnavailable' in doc and 'No undo' in doc


def test_the_entry_point_and_the_export():
    from objstore.uri import schemes
    import objstore.storages
    assert schemes()['pmem'].value == 'objstore.storages.pmem:open_uri'
    assert objstore.storages.PMemStorage is PMemStorage


# -- the MVCC window ------------------------------------------------------

def test_an_instance_reads_its_snapshot_until_it_polls(storage):
    oid, t1 = new_object(storage, 1)
    instance = storage.new_instance()
    other = storage.new_instance()
    t2 = set_value(storage, oid, 2)
    assert instance.load(oid) == (record(1), t1)
    assert instance.lastTransaction() == t1
    assert instance.poll_invalidations() == [oid]
    assert instance.load(oid) == (record(2), t2)
    assert instance.poll_invalidations() == []
    # An instance's own commits are not reported back to it.
    txn = make_txn()
    instance.tpc_begin(txn)
    instance.store(oid, t2, record(3), '', txn)
    instance.tpc_vote(txn)
    instance.tpc_finish(txn)
    assert instance.poll_invalidations() == []
    assert other.poll_invalidations() == [oid]
    instance.release()
    other.release()


def test_old_revisions_go_when_no_snapshot_reads_them(storage):
    oid, t1 = new_object(storage, 1)
    instance = storage.new_instance()
    t2 = set_value(storage, oid, 2)
    assert storage.history_start() == t1
    assert storage.loadBefore(oid, t2) == (record(1), t1, t2)
    assert storage.loadSerial(oid, t1) == record(1)
    assert [h['tid'] for h in storage.history(oid, 5)] == [t2, t1]
    instance.release()
    assert storage.history_start() == t2
    with pytest.raises(errors.HistoryUnavailable) as info:
        storage.loadBefore(oid, t2)
    assert info.value.oldest == t2
    with pytest.raises(errors.POSKeyError):
        storage.loadSerial(oid, t1)
    assert [h['tid'] for h in storage.history(oid, 5)] == [t2]


def test_space_is_reused_once_no_snapshot_reads_it(storage):
    oid, _ = new_object(storage, 'x' * 1000)
    for n in range(300):
        set_value(storage, oid, 'x' * 1000 + str(n))
    # 300 KB written into a 64 KiB pool, which never had to grow.
    assert storage.getSize() < fmt.MIN_POOL_SIZE
    assert storage._pool.size == fmt.MIN_POOL_SIZE
    instance = storage.new_instance()
    for n in range(100):
        set_value(storage, oid, 'y' * 1000 + str(n))
    # A pinned snapshot keeps the revisions after it (the pool grew).
    assert storage._pool.size > fmt.MIN_POOL_SIZE
    assert instance.load(oid)[0] == record('x' * 1000 + '299')
    assert len(storage.history(oid, 200)) == 101
    instance.release()
    assert len(storage.history(oid, 200)) == 1


def test_before_instance_pins_a_moment_inside_the_window(storage):
    oid, t1 = new_object(storage, 1)
    keeper = storage.new_instance()
    t2 = set_value(storage, oid, 2)
    t3 = set_value(storage, oid, 3)
    at_t2 = storage.before_instance(after(t2))
    keeper.release()
    assert storage.history_start() == t2
    set_value(storage, oid, 4)
    assert at_t2.load(oid) == (record(2), t2)
    assert at_t2.poll_invalidations() == []
    assert at_t2.isReadOnly()
    with pytest.raises(errors.ReadOnlyHistoryError):
        at_t2.tpc_begin(make_txn())
    with pytest.raises(errors.HistoryUnavailable):
        storage.before_instance(t2)
    at_t2.release()
    assert storage.history_start() == storage.lastTransaction()
    assert t3 < storage.lastTransaction()


def test_load_before_z64_and_maxtid(storage):
    oid, t1 = new_object(storage, 1)
    assert storage.loadBefore(oid, z64) is None
    assert storage.loadBefore(oid, maxtid) == (record(1), t1, None)
    with pytest.raises(errors.POSKeyError):
        storage.loadBefore(p64(99), z64)


def test_a_released_instance_refuses_loads(storage):
    oid, _ = new_object(storage, 1)
    instance = storage.new_instance()
    instance.release()
    instance.release()
    with pytest.raises(errors.StorageClosedError):
        instance.load(oid)
    with pytest.raises(errors.StorageClosedError):
        instance.poll_invalidations()


def test_loads_after_close_raise_storage_closed(storage):
    oid, _ = new_object(storage, 1)
    instance = storage.new_instance()
    storage.close()
    with pytest.raises(errors.StorageClosedError):
        instance.load(oid)


def test_conflicts_resolve_against_the_committers_snapshot(storage):
    from objstore.testing.helpers import Counter
    oid = storage.new_oid()
    t1 = commit(storage, {oid: (z64, record(10, cls=Counter))})
    instance = storage.new_instance()
    commit(storage, {oid: (t1, record(15, cls=Counter))})
    txn = make_txn()
    instance.tpc_begin(txn)
    instance.store(oid, t1, record(11, cls=Counter), '', txn)
    assert instance.tpc_vote(txn) == [oid]
    instance.tpc_finish(txn)
    assert value_of(storage.load(oid)[0]) == 16
    instance.release()


# -- deletion records, gc and pack ----------------------------------------

def put(storage, records):
    stores = {}
    for oid, data in records.items():
        try:
            serial = current(storage, oid)[1]
        except errors.POSKeyError:
            serial = z64
        stores[oid] = (serial, data)
    return commit(storage, stores)


A, B, C, D, E = (p64(n) for n in range(1, 6))


def test_gc_frees_what_the_root_does_not_reach(storage):
    put(storage, {z64: record('root', refs=[A]), A: record('a', refs=[B]),
                  B: record('b', weak=[C]), C: record('c'),
                  D: record('d', refs=[E]), E: record('e', refs=[D])})
    assert len(storage) == 6
    assert storage.collect_garbage() == {'reachable': 3, 'freed': 3}
    for oid in (C, D, E):
        with pytest.raises(errors.POSKeyError):
            storage.load(oid)
    assert [value_of(storage.load(oid)[0]) for oid in (z64, A, B)] == [
        'root', 'a', 'b']
    assert len(storage) == 3
    assert storage.collect_garbage() == {'reachable': 3, 'freed': 0}


def test_pack_keeps_what_was_written_at_or_after_t(storage):
    import time
    put(storage, {z64: record('root'), A: record('old garbage')})
    time.sleep(0.01)
    t = time.time()
    put(storage, {B: record('new, unreferenced', refs=[C]), C: record('c')})
    storage.pack(t, references)
    with pytest.raises(errors.POSKeyError):
        storage.load(A)
    assert value_of(storage.load(B)[0]) == 'new, unreferenced'
    assert value_of(storage.load(C)[0]) == 'c'


def test_gc_is_a_commit_that_instances_hear_of(storage):
    put(storage, {z64: record('root'), A: record('a')})
    instance = storage.new_instance()
    last = storage.lastTransaction()
    storage.pack(9e9, references)
    assert storage.lastTransaction() > last
    assert instance.poll_invalidations() == [A]
    with pytest.raises(errors.POSKeyError):
        instance.load(A)
    instance.release()


def test_deletion_records_count_nothing_and_gc_removes_them(storage):
    oid, t1 = new_object(storage, 1)
    assert len(storage) == 1
    deleted = commit(storage, deletes={oid: t1})
    assert len(storage) == 0
    assert storage.history(oid)[0]['tid'] == deleted
    with pytest.raises(errors.POSKeyError):
        commit(storage, deletes={oid: deleted})
    storage.pack(9e9, references, gc=False)
    with pytest.raises(errors.POSKeyError):
        storage.history(oid)
    # Without a deletion record, only a new object's z64 is current.
    with pytest.raises(errors.ConflictError):
        commit(storage, {oid: (deleted, record('back'))})
    t3 = commit(storage, {oid: (z64, record('new'))})
    assert storage.load(oid) == (record('new'), t3)


def test_record_iteration_and_current_iterator(storage):
    put(storage, {z64: record('root'), A: record('a')})
    t2 = put(storage, {B: record('b'), A: record('a2')})
    oid, tid = new_object(storage, 'gone')
    commit(storage, deletes={oid: tid})
    found = [(txn.tid, [(r.oid, r.data) for r in txn])
             for txn in storage.iterator()]
    assert found[-1] == (t2, [(A, record('a2')), (B, record('b'))])
    assert [oids for _, oids in found[:1]] == [[(z64, record('root'))]]
    assert storage.record_iternext(None)[:3] == (
        z64, found[0][0], record('root'))
    assert storage.record_iternext(B)[3] is None


# -- grow and PoolFullError -------------------------------------------------

def test_a_full_pool_grows_while_loads_go_on(path):
    storage = PMemStorage(path, pool_size=fmt.MIN_POOL_SIZE)
    oids = [new_object(storage, n)[0] for n in range(20)]
    errors_seen, stop = [], threading.Event()

    def reader():
        instance = storage.new_instance()
        try:
            while not stop.is_set():
                for n, oid in enumerate(oids):
                    assert instance.load(oid)[0] == record(n)
                instance.poll_invalidations()
        except BaseException as exc:
            errors_seen.append(exc)
        finally:
            instance.release()

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        sizes = []
        for n in range(30):
            new_object(storage, 'z' * 20000)
            sizes.append(storage._pool.size)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors_seen
    assert sizes[-1] >= 30 * 20000 > fmt.MIN_POOL_SIZE
    assert len(set(sizes)) > 2
    storage = reopen(storage)
    assert storage.clean_shutdown and not storage.recovered
    assert [storage.load(oid)[0] for oid in oids] == [
        record(n) for n in range(20)]
    storage.close()


def test_pool_full_without_grow_aborts_cleanly(path):
    storage = PMemStorage(path, pool_size=fmt.MIN_POOL_SIZE, grow=False)
    oid, t1 = new_object(storage, 'small')
    size = storage._pool.size
    big = storage.new_oid()
    txn = make_txn()
    storage.tpc_begin(txn)
    storage.store(oid, t1, record('changed'), '', txn)
    storage.store(big, z64, record('x' * fmt.MIN_POOL_SIZE), '', txn)
    with pytest.raises(errors.PoolFullError) as info:
        storage.tpc_vote(txn)
    assert isinstance(info.value, errors.StorageTransactionError)
    storage.tpc_abort(txn)
    assert storage._pool.size == size
    assert storage.load(oid) == (record('small'), t1)
    with pytest.raises(errors.POSKeyError):
        storage.load(big)
    assert storage.lastTransaction() == t1
    # The space the failed vote took is free again.
    for n in range(50):
        set_value(storage, oid, 'v' * 500 + str(n))
    storage = reopen(storage, grow=False)
    assert value_of(storage.load(oid)[0]) == 'v' * 500 + '49'
    storage.close()


def test_pool_full_through_the_db(path):
    import objstore
    import transaction
    storage = PMemStorage(path, pool_size=fmt.MIN_POOL_SIZE, grow=False)
    db = objstore.DB(storage)
    manager = transaction.TransactionManager()
    conn = db.open(manager)
    conn.root()['small'] = 1
    manager.commit()
    conn.root()['big'] = 'x' * fmt.MIN_POOL_SIZE
    with pytest.raises(errors.PoolFullError):
        manager.commit()
    manager.abort()
    assert 'big' not in conn.root()
    assert conn.root()['small'] == 1
    db.close()


# -- reopen -------------------------------------------------------------------

def test_reopen_after_a_clean_close_reads_no_table(storage, monkeypatch):
    from objstore.storages.pmem import recovery
    oids = [new_object(storage, n)[0] for n in range(50)]
    last = storage.lastTransaction()

    def walked(*args):
        raise AssertionError('a clean open walked the table')
    monkeypatch.setattr(recovery, 'rebuild', walked)
    storage = reopen(storage)
    assert storage.clean_shutdown is True and storage.recovered is False
    assert storage.lastTransaction() == last
    assert len(storage) == 50
    assert u64(storage.new_oid()) > u64(oids[-1])
    assert [value_of(storage.load(oid)[0]) for oid in oids] == list(range(50))
    new_object(storage, 'more')
    storage.close()


def test_a_damaged_free_list_is_rebuilt(storage):
    oid, _ = new_object(storage, 1)
    storage.close()
    offset = storage._root.free_offset
    assert offset
    with open(storage.getName(), 'r+b') as f:
        f.seek(offset + 8)
        f.write(b'\xff' * 8)
    storage = PMemStorage(storage.getName())
    assert storage.clean_shutdown is True and storage.recovered is True
    assert storage.load(oid)[0] == record(1)
    set_value(storage, oid, 2)
    storage.close()


def test_reopen_keeps_the_current_records_and_the_oid_counter(storage):
    oid, t1 = new_object(storage, 1, refs=[z64])
    t2 = set_value(storage, oid, 2)
    reserved = storage.new_oid()
    storage = reopen(storage)
    assert storage.lastTransaction() == t2
    assert storage.loadBefore(oid, maxtid) == (record(2), t2, None)
    assert storage.history_start() == t2
    assert u64(storage.new_oid()) > u64(reserved)
    storage.close()


def test_read_only_open_refuses_writes(storage):
    oid, tid = new_object(storage, 1)
    storage.close()
    read_only = PMemStorage(storage.getName(), read_only=True)
    assert read_only.isReadOnly()
    assert read_only.load(oid) == (record(1), tid)
    with pytest.raises(errors.ReadOnlyError):
        read_only.new_oid()
    with pytest.raises(errors.ReadOnlyError):
        read_only.tpc_begin(make_txn())
    with pytest.raises(errors.ReadOnlyError):
        read_only.pack(9e9, references)
    read_only.close()
    with pytest.raises(errors.ReadOnlyError):
        PMemStorage(storage.getName(), read_only=True, create=True)


def test_a_second_writer_is_refused(storage):
    with pytest.raises(errors.StorageLockedError):
        PMemStorage(storage.getName())


def test_pool_size_is_checked(path):
    with pytest.raises(errors.InvalidArgumentError):
        PMemStorage(path, pool_size=100)


# -- the URI and the DB -------------------------------------------------------

def test_uri_opens_a_pool(tmp_path):
    import objstore
    uri = 'pmem://%s/data.pool' % tmp_path
    db = objstore.open(uri)
    assert isinstance(db.storage, PMemStorage)
    with db.transaction() as conn:
        conn.root()['x'] = 1
    db.close()
    db = objstore.open(uri + '?read_only=true')
    with db.transaction() as conn:
        assert conn.root()['x'] == 1
    db.close()
    for bad in ('?fsync=false', '?keep_history=true'):
        with pytest.raises(errors.URIError):
            objstore.open(uri + bad)
    with pytest.raises(errors.URIError):
        objstore.open('pmem://%s/missing.pool?create=false' % tmp_path)


def test_db_connections_time_travel_within_the_window(path):
    import objstore
    import transaction
    db = objstore.DB(PMemStorage(path))
    first = transaction.TransactionManager()
    old = db.open(first)
    old.root()['n'] = 1
    first.commit()
    t1 = db.lastTransaction()
    with db.transaction() as conn:
        conn.root()['n'] = 2
    t2 = db.lastTransaction()
    # ``old`` has not begun a new transaction: it pins t1.
    assert old.root()['n'] == 1
    historical = db.open(at=t1)
    assert historical.root()['n'] == 1
    historical.close()
    first.abort()
    assert old.root()['n'] == 2
    with db.transaction() as conn:
        conn.root()['n'] = 3
    # Every connection has moved on (a connection in the DB's pool keeps
    # the snapshot of its last transaction): t1 is outside the window.
    old.close()
    with pytest.raises(errors.HistoryUnavailable):
        db.open(at=t1)
    assert db.open(at=db.lastTransaction()).root()['n'] == 3
    assert t1 < t2
    db.close()
