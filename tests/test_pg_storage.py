"""PostgreSQLStorage: the objstore conformance suite, in both history modes.

One database per module; every storage a test makes gets a schema of its
own in it (objstore.testing.pg.schema_dsn), so tests never see each other.
Skipped without a server, except under CI=true.
"""
import itertools

import pytest

pytest.importorskip('psycopg')

from objstore import errors, testing  # noqa: E402
from objstore.testing.pg import (  # noqa: E402,F401
    pg_database, pg_module_database, schema_dsn)

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



class TestHistoryFree(
        _PG,
        testing.BasicConformance,
        testing.IStorageIterationConformance,
        testing.ConflictConformance,
        testing.ConcurrencyConformance,
        testing.IStorageCurrentRecordIterationConformance,
        testing.ReadVerifyingStorageConformance,
        testing.IExternalGCConformance,
        testing.PackConformance):
    """The mixins' tests that need no earlier revision.

    Left out, because they read revisions a history-free storage no longer
    has (its loadBefore of an earlier moment raises HistoryUnavailable,
    loadSerial knows the current revision only): reading older revisions,
    readers pinned to a past tid while writers go on, conflict resolution
    through the storage object (it needs the revision the transaction
    started from; instances resolve from their snapshot, tested in
    test_pg_storage_db.py), iteration of earlier revisions (it shows
    current records, in the transactions that wrote them), and pack's rules
    about revisions before the pack time (history-free pack is garbage
    collection, tested below).
    """

    keep_history = False

    test_load_before_finds_each_revision_and_its_end = None
    test_readers_see_whole_transactions_only = None
    test_checked_serial_stays_current_until_finish = None
    test_resolvable_conflict_is_merged_and_reported_by_vote = None
    test_resolution_spans_several_later_commits = None
    test_unresolvable_object_among_resolvable_fails_the_transaction = None
    test_deleted_object_has_no_current_revision = None
    test_store_with_the_deletions_tid_brings_the_object_back = None
    test_pack_past_the_deletion_removes_the_object = None
    test_revision_current_at_t_and_later_ones_stay = None
    test_objects_unlinked_after_t_stay = None
    # Iteration shows the records still current, so earlier transactions
    # of a changed object come without it; pack marks nothing packed.
    test_transactions_in_commit_order_with_metadata = None
    test_iteration_after_pack_shows_only_kept_records = None
    test_pack_marks_kept_transactions_and_drops_emptied_ones = None
    test_the_newest_transaction_stays_even_when_pack_empties_it = None


# -- what only PostgreSQLStorage promises -----------------------------------

import threading  # noqa: E402
import time  # noqa: E402

import psycopg  # noqa: E402
from zope.interface import providedBy  # noqa: E402
from zope.interface.verify import verifyObject  # noqa: E402

from objstore.interfaces import (  # noqa: E402
    IMVCCStorage, IStorageIteration, IStorageUndoable)
from objstore.serialize import references  # noqa: E402
from objstore.storages.base import maxtid, p64, time_tid, u64, z64  # noqa: E402
import transaction.interfaces as transaction_interfaces  # noqa: E402
from objstore.testing.helpers import (  # noqa: E402
    commit, current, make_txn, new_object, record, set_value, value_of)


@pytest.fixture
def dsn(pg_module_database):
    """A schema of its own in the module's database."""
    return schema_dsn(pg_module_database, 'x%d' % next(_schemas))


@pytest.fixture
def opened():
    """Opens storages (``opened(dsn, **options)``); closes them after."""
    made = []

    def open_storage(dsn, **options):
        from objstore.storages.postgresql import PostgreSQLStorage
        storage = PostgreSQLStorage(dsn, **options)
        made.append(storage)
        return storage
    yield open_storage
    for storage in reversed(made):
        storage.close()


def backend_pid(link):
    return link.connect().info.backend_pid


def terminate(dsn, pid):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute('SELECT pg_terminate_backend(%s)', (pid,))
    time.sleep(0.05)


def test_docstring_states_the_durability_guarantee():
    from objstore.storages.postgresql import PostgreSQLStorage
    doc = PostgreSQLStorage.__doc__
    assert 'Durability' in doc and 'COMMIT' in doc and 'Atomic' in doc


def test_instances_provide_what_the_storage_provides(dsn, opened):
    storage = opened(dsn)
    instance = storage.new_instance()
    try:
        assert IMVCCStorage.providedBy(instance)
        for iface in providedBy(instance):
            verifyObject(iface, instance)
        assert set(providedBy(instance)) == set(providedBy(storage))
    finally:
        instance.release()


def test_name_hides_the_password(pg_module_database, opened):
    from objstore.storages.postgresql.connections import describe_dsn
    assert describe_dsn('postgresql://ann:secret@db.example:5433/app') == \
        'postgresql://ann@db.example:5433/app'
    assert describe_dsn('host=h user=u password=p dbname=d') == \
        'postgresql://u@h/d'
    storage = opened(pg_module_database)
    assert storage.getName().startswith('postgresql://')
    assert storage.sortKey() == storage.getName()


# -- schema -----------------------------------------------------------------

def test_a_newer_schema_is_refused_with_a_clear_error(dsn, opened):
    from objstore.storages.postgresql import PostgreSQLStorage, schema
    opened(dsn).close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        schema.set_version(conn, schema.SCHEMA_VERSION + 1)
    with pytest.raises(errors.UnsupportedVersionError,
                       match='schema version %d is newer'
                       % (schema.SCHEMA_VERSION + 1)):
        PostgreSQLStorage(dsn)


def test_the_history_mode_must_match_the_tables(dsn, opened):
    from objstore.storages.postgresql import PostgreSQLStorage
    opened(dsn, keep_history=False).close()
    with pytest.raises(errors.StorageError,
                       match='history-free.*keep_history=False'):
        PostgreSQLStorage(dsn)


def test_missing_tables_without_create_schema(dsn):
    from objstore.storages.postgresql import PostgreSQLStorage
    for options in ({'create_schema': False}, {'read_only': True}):
        with pytest.raises(errors.StorageError, match='no objstore tables'):
            PostgreSQLStorage(dsn, **options)


def test_two_processes_creating_the_schema_at_once(dsn, opened):
    made, failures = [], []

    def open_one():
        try:
            made.append(opened(dsn))
        except Exception as exc:    # reported below
            failures.append(exc)
    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not failures and len(made) == 4


# -- oids and tids ----------------------------------------------------------

def test_oids_are_unique_across_storages_on_one_database(dsn, opened):
    first, second = opened(dsn), opened(dsn)
    oids = set()
    for _ in range(100):
        oids.add(first.new_oid())
        oids.add(second.new_oid())
    assert len(oids) == 200


def test_a_forced_tid_is_checked_against_the_server(dsn, opened):
    mine, other = opened(dsn), opened(dsn)
    last = new_object(other, 'elsewhere')[1]
    forced = p64(u64(last) - 1)
    txn = make_txn()
    mine.tpc_begin(txn, forced)
    try:
        with pytest.raises(errors.StorageTransactionError, match='forced tid'):
            mine.tpc_vote(txn)
    finally:
        mine.tpc_abort(txn)
    assert new_object(mine, 'after')[1] > last


# -- the commit lock ----------------------------------------------------------

def test_the_commit_lock_is_taken_at_vote_and_freed_by_finish(dsn, opened):
    first, second = opened(dsn), opened(dsn)
    oid, tid = new_object(first, 'old')
    txn = make_txn()
    first.tpc_begin(txn)
    first.store(oid, tid, record('first'), '', txn)
    # Begun, not voted: another storage commits freely.
    other = new_object(second, 'meanwhile')[1]
    first.tpc_vote(txn)
    done = []
    thread = threading.Thread(
        target=lambda: done.append(new_object(second, 'waits')[1]))
    thread.start()
    thread.join(0.3)
    assert done == []       # voted: the other vote waits for the lock
    finished = first.tpc_finish(txn)
    thread.join(10)
    assert other < finished < done[0]


def test_a_stale_store_on_another_storage_conflicts(dsn, opened):
    first, second = opened(dsn), opened(dsn)
    oid, t1 = new_object(first, 1)
    set_value(second, oid, 2)
    with pytest.raises(errors.ConflictError) as info:
        commit(first, {oid: (t1, record(3))})
    assert info.value.oid == oid


# -- history-free ---------------------------------------------------------------

def test_history_free_reads_the_current_revision_only(dsn, opened):
    storage = opened(dsn, keep_history=False)
    assert not IStorageUndoable.providedBy(storage)
    assert storage.supportsUndo() is False and storage.undoLog() == []
    oid, t1 = new_object(storage, 1)
    t2 = set_value(storage, oid, 2)
    assert storage.loadBefore(oid, maxtid) == (record(2), t2, None)
    with pytest.raises(errors.HistoryUnavailable) as info:
        storage.loadBefore(oid, t2)
    assert info.value.oldest == t2
    with pytest.raises(errors.POSKeyError):
        storage.loadSerial(oid, t1)
    assert [e['tid'] for e in storage.history(oid, 10)] == [t2]
    assert storage.history_start() == storage.lastTransaction() == t2
    txn = make_txn()
    storage.tpc_begin(txn)
    with pytest.raises(errors.UndoError, match='keeps no history'):
        storage.undo(t1, txn)
    storage.tpc_abort(txn)


def test_history_free_pack_collects_garbage_and_deletions(dsn, opened):
    storage = opened(dsn, keep_history=False)
    a, b, c = (storage.new_oid() for _ in range(3))
    commit(storage, {z64: (z64, record('root', refs=[a])),
                     a: (z64, record('a', refs=[b])), b: (z64, record('b')),
                     c: (z64, record('garbage'))})
    d, td = new_object(storage, 'deleted')
    commit(storage, deletes={d: td})
    assert len(storage) == 5
    storage.pack(time.time() + 1, references)
    assert len(storage) == 3
    for oid in (c, d):
        with pytest.raises(errors.POSKeyError):
            storage.load(oid)
    assert value_of(current(storage, b)[0]) == 'b'


def test_history_free_iteration_shows_current_records(dsn, opened):
    from objstore.storages.memory import MemoryStorage
    storage = opened(dsn, keep_history=False)
    a, ta = new_object(storage, 'a1')
    b, tb = new_object(storage, 'b')
    ta2 = commit(storage, {a: (ta, record('a2'))}, description='second')
    txns = list(storage.iterator())
    assert [t.tid for t in txns] == [ta, tb, ta2]
    assert [[r.oid for r in t] for t in txns] == [[], [b], [a]]
    assert txns[2].description == b'second'
    storage.pack(time.time() + 1, references, gc=False)
    assert [t.tid for t in storage.iterator()] == [tb, ta2]
    copy = MemoryStorage()
    copy.copyTransactionsFrom(storage)
    assert current(copy, a) == (record('a2'), ta2)
    assert current(copy, b) == (record('b'), tb)


def test_history_free_instances_resolve_conflicts_from_their_snapshot(
        dsn, opened):
    from objstore.testing.helpers import Counter
    storage = opened(dsn, keep_history=False)
    oid, t0 = new_object(storage, 10, cls=Counter)
    instance = storage.new_instance()
    try:
        data, serial = instance.load(oid)
        assert serial == t0
        set_value(storage, oid, 15, cls=Counter)
        txn = make_txn()
        instance.tpc_begin(txn)
        instance.store(oid, serial, record(12, cls=Counter), '', txn)
        assert instance.tpc_vote(txn) == [oid]
        instance.tpc_finish(txn)
    finally:
        instance.release()
    assert value_of(current(storage, oid)[0]) == 17


# -- lost connections -----------------------------------------------------------

def test_a_killed_load_connection_raises_then_reconnects(dsn, opened):
    storage = opened(dsn)
    oid, tid = new_object(storage, 1)
    terminate(dsn, backend_pid(storage._load))
    with pytest.raises(errors.DisconnectedError) as info:
        storage.load(oid)
    assert isinstance(info.value, transaction_interfaces.TransientError)
    assert storage.load(oid) == (record(1), tid)


def test_an_instance_without_its_snapshot_waits_for_the_next_poll(
        dsn, opened):
    storage = opened(dsn)
    oid, tid = new_object(storage, 1)
    instance = storage.new_instance()
    try:
        terminate(dsn, backend_pid(instance._load))
        with pytest.raises(errors.DisconnectedError):
            instance.load(oid)
        # Not silently a new snapshot in the middle of a transaction.
        with pytest.raises(errors.DisconnectedError, match='snapshot'):
            instance.load(oid)
        t2 = set_value(storage, oid, 2)
        assert instance.poll_invalidations() == [oid]
        assert instance.load(oid) == (record(2), t2)
    finally:
        instance.release()


def test_a_connection_lost_after_vote_commits_nothing(dsn, opened):
    storage = opened(dsn)
    oid, tid = new_object(storage, 'old')
    txn = make_txn()
    storage.tpc_begin(txn)
    storage.store(oid, tid, record('new'), '', txn)
    storage.tpc_vote(txn)
    terminate(dsn, backend_pid(storage._store_link))
    with pytest.raises(errors.DisconnectedError, match='did not commit'):
        storage.tpc_finish(txn)
    storage.tpc_abort(txn)
    assert current(storage, oid) == (record('old'), tid)
    assert set_value(storage, oid, 'retried') > tid


def test_a_connection_lost_during_vote_aborts_cleanly(dsn, opened):
    storage = opened(dsn)
    oid, tid = new_object(storage, 'old')
    terminate(dsn, backend_pid(storage._store_link))
    txn = make_txn()
    storage.tpc_begin(txn)
    storage.store(oid, tid, record('new'), '', txn)
    with pytest.raises(errors.DisconnectedError):
        storage.tpc_vote(txn)
    storage.tpc_abort(txn)
    assert current(storage, oid) == (record('old'), tid)
    assert set_value(storage, oid, 'retried') > tid


class _DropsAfterCommit:
    """Stands for the store connection: runs the COMMIT, then loses the
    connection before the answer arrives (the unknown outcome)."""

    def __init__(self, conn):
        self._conn = conn

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def execute(self, query, *args):
        result = self._conn.execute(query, *args)
        if 'COMMIT' in query:
            self._conn.close()
            raise psycopg.OperationalError('server closed the connection')
        return result


def test_a_commit_whose_answer_was_lost_is_found_and_reported(dsn, opened):
    storage = opened(dsn)
    oid, tid = new_object(storage, 'old')
    txn = make_txn()
    storage.tpc_begin(txn)
    storage.store(oid, tid, record('new'), '', txn)
    storage.tpc_vote(txn)
    storage._store_link.conn = _DropsAfterCommit(storage._store_link.conn)
    finished = storage.tpc_finish(txn)
    assert current(storage, oid) == (record('new'), finished)
    assert storage.lastTransaction() == finished
    # The link opens a new connection for the next commit.
    assert set_value(storage, oid, 'next') > finished


# -- URIs -------------------------------------------------------------------------

def test_objstore_open_with_a_postgresql_uri(pg_database):
    import objstore
    uri = pg_database + '?keep_history=false'
    with pytest.raises(errors.URIError, match='fsync'):
        objstore.open(pg_database + '?fsync=true')
    db = objstore.open(uri)
    try:
        assert db.storage.keep_history is False
        with db.transaction() as conn:
            conn.root()['x'] = 1
    finally:
        db.close()
    db = objstore.open(uri, read_only=True)
    try:
        assert db.storage.isReadOnly()
        with db.transaction() as conn:
            assert conn.root()['x'] == 1
    finally:
        db.close()
