"""The records cache PostgreSQLStorage instances share (cache.py): the
cache alone, then under two storages on the same tables acting as two
processes, in both history modes."""
import itertools
import threading

import pytest
import transaction

pytest.importorskip('psycopg')

from objstore.db import DB  # noqa: E402
from objstore.testing.pg import pg_module_database, schema_dsn  # noqa: E402,F401

from db_fixtures import Item  # noqa: E402

_schemas = itertools.count(1)


def _make_cache(limit=10000):
    from objstore.storages.postgresql.cache import RecordCache
    return RecordCache(limit)


# -- the cache alone ----------------------------------------------------------

def test_an_entry_serves_snapshots_from_its_tid_through_the_polls():
    cache = _make_cache()
    cache.advance(None, 10, [])
    cache.put(1, 5, b'five', 10)
    assert cache.get(1, 10) == (5, b'five')
    assert cache.get(1, 7) == (5, b'five')
    assert cache.get(1, 4) is None          # before the revision
    assert cache.get(1, 11) is None         # past what polls covered
    cache.advance(10, 12, [(2, 11)])        # another object changed
    assert cache.get(1, 12) == (5, b'five')
    cache.advance(12, 15, [(1, 14)])        # this one changed
    assert cache.get(1, 12) is None and cache.get(1, 15) is None
    assert len(cache) == 0 and cache.size == 0


def test_a_late_put_is_refused_when_the_object_changed_since_its_snapshot():
    cache = _make_cache()
    cache.advance(None, 10, [])
    cache.advance(10, 20, [(1, 15)])
    cache.put(1, 5, b'old', 10)             # loaded at 10: stale at 20
    assert cache.get(1, 10) is None
    cache.put(2, 5, b'two', 10)             # unchanged since 10: fine
    assert cache.get(2, 20) == (5, b'two')
    cache.put(3, 5, b'three', 8)            # before what polls told
    assert cache.get(3, 20) is None
    cache.put(4, 5, b'four', 25)            # a snapshot polls did not reach
    assert cache.get(4, 20) is None


def test_a_poll_leaving_a_gap_empties_the_cache():
    cache = _make_cache()
    cache.advance(None, 10, [])
    cache.put(1, 5, b'five', 10)
    cache.advance(12, 20, [])               # (10, 12] unknown
    assert len(cache) == 0 and cache.tid == 20
    cache.put(1, 5, b'five', 20)
    cache.advance(15, 18, [(1, 16)])        # older news: ignored
    assert cache.get(1, 20) == (5, b'five')


def test_the_size_limit_evicts_the_least_recently_used():
    from objstore.storages.postgresql.cache import ENTRY_OVERHEAD
    cache = _make_cache(limit=3 * (10 + ENTRY_OVERHEAD))
    cache.advance(None, 10, [])
    for oid in range(1, 4):
        cache.put(oid, 1, b'x' * 10, 10)
    assert cache.get(1, 10)                 # 1 is now the most recent
    cache.put(4, 1, b'x' * 10, 10)
    assert cache.get(2, 10) is None
    assert all(cache.get(oid, 10) for oid in (1, 3, 4))
    assert cache.size == 3 * (10 + ENTRY_OVERHEAD)
    cache.put(5, 1, b'x' * cache.limit, 10)     # too big to keep
    assert cache.get(5, 10) is None and len(cache) == 3
    cache.clear()
    assert len(cache) == 0 and cache.size == 0


# -- under DBs ------------------------------------------------------------------

@pytest.fixture(params=[True, False], ids=['history', 'history-free'])
def keep_history(request):
    return request.param


@pytest.fixture
def open_db(pg_module_database, keep_history):
    """``open_db(**storage_options)``: a DB on this test's tables, as
    another process would open it; closed after the test."""
    from objstore.storages.postgresql import PostgreSQLStorage
    dsn = schema_dsn(pg_module_database, 'cache%d' % next(_schemas))
    made = []

    def open_one(**options):
        options.setdefault('keep_history', keep_history)
        db = DB(PostgreSQLStorage(dsn, **options))
        made.append(db)
        return db
    yield open_one
    for db in reversed(made):
        db.close()


@pytest.fixture
def server_loads(monkeypatch):
    """A list that gets the oid (an int) of every load the server answers."""
    from objstore.storages.postgresql.storage import PostgreSQLStorage
    loads = []
    fetch = PostgreSQLStorage._fetch

    def counting_fetch(self, doing, query, params=None, many=False):
        if query == self._q.load_current:
            loads.append(params[0])
        return fetch(self, doing, query, params, many)
    monkeypatch.setattr(PostgreSQLStorage, '_fetch', counting_fetch)
    return loads


def connect(db):
    tm = transaction.TransactionManager()
    return db.open(tm), tm


def _add_items(db, count):
    conn, tm = connect(db)
    conn.root()['items'] = items = [Item(value=0) for _ in range(count)]
    conn.root()._p_changed = True
    tm.commit()
    oids = [item._p_oid for item in items]
    conn.close()
    return oids


def _values(conn, tm):
    """A new transaction on an emptied pickle cache: every item's value."""
    tm.begin()
    conn.cacheMinimize()
    return [item.value for item in conn.root()['items']]


def test_cached_reads_see_the_other_process_commits(open_db):
    db1, db2 = open_db(), open_db()
    _add_items(db1, 3)
    c1, tm1 = connect(db1)
    c2, tm2 = connect(db2)
    assert _values(c2, tm2) == [0, 0, 0]        # now in db2's cache
    for n in range(1, 4):
        c1.root()['items'][1].value = n
        tm1.commit()
        assert _values(c2, tm2) == [0, n, 0]
    # db2's own commits, seen by another connection of db2.
    c3, tm3 = connect(db2)
    assert _values(c3, tm3) == [0, 3, 0]
    c2.root()['items'][2].value = 7
    tm2.commit()
    assert _values(c3, tm3) == [0, 3, 7]
    tm1.begin()
    assert [item.value for item in c1.root()['items']] == [0, 3, 7]


def test_an_older_snapshot_never_gets_a_newer_cached_record(open_db):
    db1, db2 = open_db(), open_db()
    oid = _add_items(db1, 1)[0]
    c1, tm1 = connect(db1)
    storage = db2.storage
    old = storage.new_instance()
    try:
        old_data, old_serial = old.load(oid)        # cached
        c1.root()['items'][0].value = 1
        tm1.commit()
        new = storage.new_instance()                # polls past the change
        try:
            new_data, new_serial = new.load(oid)    # cached, the new one
            assert new_serial > old_serial
            assert old.load(oid) == (old_data, old_serial)
            assert new.load(oid) == (new_data, new_serial)
            old.poll_invalidations()
            assert old.load(oid) == (new_data, new_serial)
        finally:
            new.release()
    finally:
        old.release()


def test_cache_hits_cost_no_round_trip(open_db, server_loads):
    db1, db2 = open_db(), open_db()
    oids = {int.from_bytes(oid, 'big') for oid in _add_items(db1, 20)}
    c2, tm2 = connect(db2)
    _values(c2, tm2)
    assert oids <= set(server_loads)
    del server_loads[:]
    assert _values(c2, tm2) == [0] * 20
    other, tm = connect(db2)        # another connection of the storage
    assert _values(other, tm) == [0] * 20
    assert not oids & set(server_loads)
    assert db2.storage._shared.cache.hits >= 40
    db2.storage.clear_cache()
    assert _values(c2, tm2) == [0] * 20
    assert oids <= set(server_loads)


def test_the_size_limit_evicts(open_db):
    db1 = open_db()
    db2 = open_db(cache_size_bytes=5000)
    _add_items(db1, 60)
    c2, tm2 = connect(db2)
    for _ in range(2):
        assert _values(c2, tm2) == [0] * 60
    cache = db2.storage._shared.cache
    assert 0 < len(cache) < 60 and cache.size <= 5000
    db3 = open_db(cache_size_bytes=0)
    c3, tm3 = connect(db3)
    assert _values(c3, tm3) == [0] * 60
    assert len(db3.storage._shared.cache) == 0


def test_threads_read_consistent_snapshots_through_the_cache(open_db):
    """A writer keeps every item equal; reader threads, each with its own
    connection of one DB (one cache), never see them differ."""
    writer_db, reader_db = open_db(), open_db()
    _add_items(writer_db, 10)
    stop = threading.Event()
    seen, failures = [], []

    def read():
        conn, tm = connect(reader_db)
        try:
            while not stop.is_set():
                values = _values(conn, tm)
                if len(set(values)) != 1:
                    failures.append(values)
                seen.append(values[0])
        except Exception as exc:    # reported by the main thread
            failures.append(exc)
        finally:
            tm.abort()
            conn.close()

    readers = [threading.Thread(target=read) for _ in range(4)]
    for thread in readers:
        thread.start()
    conn, tm = connect(writer_db)
    try:
        for n in range(1, 31):
            for item in conn.root()['items']:
                item.value = n
            tm.commit()
    finally:
        stop.set()
        for thread in readers:
            thread.join(30)
    assert not failures
    assert reader_db.storage._shared.cache.hits > 0
    c2, tm2 = connect(reader_db)
    assert _values(c2, tm2) == [30] * 10
