"""PostgreSQLStorage under objstore.DB and ZODB.DB: several databases on one
PostgreSQL database, as several processes would use it (each DB has its
own storage object, connections and snapshots), in both history modes."""
import itertools
import time

import pytest
import transaction

pytest.importorskip('psycopg')

from BTrees.Length import Length  # noqa: E402

from objstore import errors  # noqa: E402
from objstore.db import DB  # noqa: E402
from objstore.testing.pg import pg_module_database, schema_dsn  # noqa: E402,F401

from db_fixtures import Item  # noqa: E402

_schemas = itertools.count(1)


@pytest.fixture(params=[True, False], ids=['history', 'history-free'])
def keep_history(request):
    return request.param


@pytest.fixture
def dsn(pg_module_database):
    return schema_dsn(pg_module_database, 'db%d' % next(_schemas))


@pytest.fixture
def open_db(dsn, keep_history):
    """``open_db(**storage_options)``: another objstore DB on the same
    tables, as another process would open it; closed after the test."""
    from objstore.storages.postgresql import PostgreSQLStorage
    made = []

    def open_one(**options):
        options.setdefault('keep_history', keep_history)
        db = DB(PostgreSQLStorage(dsn, **options))
        made.append(db)
        return db
    yield open_one
    for db in reversed(made):
        db.close()


def connect(db):
    tm = transaction.TransactionManager()
    return db.open(tm), tm


def test_databases_see_each_others_commits_at_transaction_start(open_db):
    db1, db2 = open_db(), open_db()
    c1, tm1 = connect(db1)
    c2, tm2 = connect(db2)
    tm2.begin()
    assert 'item' not in c2.root()
    c1.root()['item'] = Item(value=1)
    tm1.commit()
    # Within its transaction c2 keeps its snapshot; the next one moves.
    assert 'item' not in c2.root()
    tm2.begin()
    assert c2.root()['item'].value == 1
    c2.root()['item'].value = 2
    tm2.commit()
    tm1.begin()
    assert c1.root()['item'].value == 2


def test_poll_reports_exactly_what_other_commits_changed(open_db):
    db1, db2 = open_db(), open_db()
    c1, tm1 = connect(db1)
    root = c1.root()
    root['a'], root['b'], root['c'] = Item(v=1), Item(v=1), Item(v=1)
    tm1.commit()
    oids = {name: root[name]._p_oid for name in 'abc'}
    instance = db2.storage.new_instance()
    try:
        other = db1.storage.new_instance()
        try:
            root['a'].v = 2
            root['new'] = Item(v=0)
            tm1.commit()
            # The instance's own commits are not reported back to it.
            txn = transaction.Transaction()
            other.tpc_begin(txn)
            data, serial = other.load(oids['c'])
            other.store(oids['c'], serial, data, '', txn)
            other.tpc_vote(txn)
            other.tpc_finish(txn)
            assert set(other.poll_invalidations()) == {
                oids['a'], root._p_oid, root['new']._p_oid}
        finally:
            other.release()
        assert set(instance.poll_invalidations()) == {
            oids['a'], oids['c'], root._p_oid, root['new']._p_oid}
        assert instance.poll_invalidations() == []
    finally:
        instance.release()


def test_a_write_conflict_raises_conflict_error_and_a_retry_succeeds(
        open_db):
    db1, db2 = open_db(), open_db()
    c1, tm1 = connect(db1)
    c1.root()['item'] = Item(value=0)
    tm1.commit()
    c2, tm2 = connect(db2)
    c2.root()['item'].value = 2
    c1.root()['item'].value = 1
    tm1.commit()
    with pytest.raises(errors.ConflictError) as info:
        tm2.commit()
    assert info.value.oid == c1.root()['item']._p_oid
    tm2.abort()
    for attempt in tm2.attempts():
        with attempt:
            c2.root()['item'].value += 10
    tm1.begin()
    assert c1.root()['item'].value == 11


def test_btrees_length_conflicts_resolve_between_databases(open_db):
    db1, db2 = open_db(), open_db()
    c1, tm1 = connect(db1)
    c1.root()['n'] = Length(0)
    tm1.commit()
    c2, tm2 = connect(db2)
    tm2.begin()
    c2.root()['n'].change(5)
    c1.root()['n'].change(1)
    tm1.commit()
    tm2.commit()    # resolved: both increments count
    tm1.begin()
    tm2.begin()
    assert c1.root()['n']() == c2.root()['n']() == 6


def test_undo_through_the_database(open_db, keep_history):
    db1, db2 = open_db(), open_db()
    if not keep_history:
        # History-free storages cannot undo, and say so.
        assert not db1.supportsUndo() and db1.undoLog() == []
        return
    c1, tm1 = connect(db1)
    c1.root()['item'] = Item(value='first')
    tm1.commit()
    c1.root()['item'].value = 'second'
    tm1.get().note('the change')
    tm1.commit()
    last = db2.undoLog(0, 1)[0]
    assert last['description'] == 'the change'
    tm = transaction.TransactionManager()
    db2.undo(last['id'], tm.begin())
    tm.commit()
    tm1.begin()
    assert c1.root()['item'].value == 'first'


def test_pack_collects_garbage_and_keeps_what_is_reachable(open_db,
                                                           keep_history):
    db1, db2 = open_db(), open_db()
    c1, tm1 = connect(db1)
    c1.root()['kept'] = Item(child=Item(value='child'))
    c1.root()['dropped'] = Item(value='garbage')
    tm1.commit()
    garbage = c1.root()['dropped']._p_oid
    child = c1.root()['kept'].child._p_oid
    del c1.root()['dropped']
    tm1.commit()
    before_pack = db1.lastTransaction()
    time.sleep(0.01)
    db2.pack()
    with pytest.raises(errors.POSKeyError):
        db2.storage.load(garbage)
    c2, tm2 = connect(db2)
    assert c2.root()['kept'].child.value == 'child'
    assert db1.storage.load(child)[0]
    assert 'dropped' not in c2.root()
    if keep_history:
        # The moment just before the pack is still whole...
        historical = db2.open(at=before_pack)
        assert historical.root()['kept'].child.value == 'child'
        historical.close()
        # ...an earlier one is not.
        with pytest.raises(errors.HistoryUnavailable):
            db2.open(before=before_pack)


def test_open_at_a_past_moment(open_db, keep_history):
    db = open_db()
    c, tm = connect(db)
    c.root()['item'] = Item(value=1)
    tm.commit()
    first = db.lastTransaction()
    c.root()['item'].value = 2
    tm.commit()
    if not keep_history:
        with pytest.raises(errors.HistoryUnavailable):
            db.open(at=first)
        return
    historical = db.open(at=first)
    try:
        assert historical.root()['item'].value == 1
        with pytest.raises(errors.ReadOnlyHistoryError):
            historical.root()['item'].value = 3
    finally:
        historical.close()
    tm.begin()
    assert c.root()['item'].value == 2


def test_with_a_poll_interval_commits_are_seen_through_notifications(
        open_db):
    db1 = open_db()
    db2 = open_db(poll_interval=60)
    c1, tm1 = connect(db1)
    c2, tm2 = connect(db2)
    tm2.begin()
    instance = c2._storage
    polled = instance._polled_at
    tm2.begin()
    # Nothing was committed: no round trip, the snapshot stays.
    assert instance._polled_at == polled
    c1.root()['item'] = Item(value=1)
    tm1.commit()
    deadline = time.monotonic() + 10
    while 'item' not in c2.root():
        assert time.monotonic() < deadline, 'the notification never came'
        time.sleep(0.01)
        tm2.begin()
    assert c2.root()['item'].value == 1


def test_a_conflict_makes_the_next_transaction_poll(open_db):
    db1 = open_db()
    db2 = open_db(poll_interval=60)
    c1, tm1 = connect(db1)
    c1.root()['item'] = Item(value=0)
    tm1.commit()
    c2, tm2 = connect(db2)
    assert c2.root()['item'].value == 0
    c1.root()['item'].value = 1
    tm1.commit()
    for attempt in tm2.attempts(3):
        with attempt:
            c2.root()['item'].value += 10
    tm1.begin()
    assert c1.root()['item'].value == 11


# -- ZODB.DB on the storage (through objstore.zodb.adapt) --------------------

def test_zodb_databases_share_it_as_an_mvcc_storage(dsn, keep_history):
    ZODB = pytest.importorskip('ZODB')
    from ZODB.POSException import ConflictError
    from ZODB.interfaces import IMVCCStorage
    from objstore.storages.postgresql import PostgreSQLStorage
    from objstore.zodb import adapt

    dbs = [ZODB.DB(adapt(PostgreSQLStorage(dsn, keep_history=keep_history)))
           for _ in range(2)]
    try:
        assert IMVCCStorage.providedBy(dbs[0].storage)
        (c1, tm1), (c2, tm2) = connect(dbs[0]), connect(dbs[1])
        c1.root()['n'] = Length(0)
        c1.root()['item'] = Item(value=0)
        tm1.commit()
        tm2.begin()
        c2.root()['n'].change(2)
        c2.root()['item'].value = 2
        c1.root()['n'].change(1)
        c1.root()['item'].value = 1
        tm1.commit()
        with pytest.raises(ConflictError):
            tm2.commit()
        tm2.abort()
        c2.root()['n'].change(2)
        tm2.commit()
        tm1.begin()
        assert c1.root()['n']() == 3
        assert c1.root()['item'].value == 1
        c1.close()
        c2.close()
    finally:
        for db in dbs:
            db.close()


def test_invalidate_cache_makes_every_connection_reload(open_db):
    db = open_db()
    c, tm = connect(db)
    c.root()['item'] = Item(value=1)
    tm.commit()
    item = c.root()['item']
    assert item.value == 1
    db.invalidateCache()
    tm.begin()
    assert item._p_changed is None      # a ghost: reloaded at next use
    assert item.value == 1
