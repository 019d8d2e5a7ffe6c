"""Time travel: db.open(at=..., before=...) with tids and datetimes."""
import datetime
import time

import pytest

from objstore import errors
from objstore.db import tid_of
from objstore.storages.base import TimeStamp, p64, tid_time, u64

from db_fixtures import (  # noqa: F401 (fixtures)
    Item, close_connection, conn, db, open_connection, storage_factory)


@pytest.fixture
def moments(db, conn):
    """Three commits of ``conn.root.item.a`` (1, 2, 3); their tids."""
    tids = []
    conn.root.item = item = Item(a=1, child=Item(b='one'))
    conn.transaction_manager.commit()
    tids.append(db.lastTransaction())
    item.a = 2
    item.child.b = 'two'
    conn.transaction_manager.commit()
    tids.append(db.lastTransaction())
    time.sleep(0.001)   # datetimes between commits must exist
    item.a = 3
    conn.transaction_manager.commit()
    tids.append(db.lastTransaction())
    return tids


def _utc(tid):
    return datetime.datetime.fromtimestamp(tid_time(tid),
                                           datetime.timezone.utc)


@pytest.mark.history
def test_open_at_a_tid_shows_the_database_then(db, moments):
    for value, tid in enumerate(moments, 1):
        past = db.open(at=tid)
        try:
            assert past.root.item.a == value
            assert past.root.item.child.b == ('one' if value == 1 else 'two')
        finally:
            past.close()


@pytest.mark.history
def test_open_before_a_tid_excludes_that_transaction(db, moments):
    past = db.open(before=moments[1])
    try:
        assert past.root.item.a == 1
    finally:
        past.close()


@pytest.mark.history
def test_open_at_a_datetime_naive_is_utc(db, moments):
    # A datetime has microseconds, a tid finer steps: a moment a little
    # after the second commit (and before the third) shows its state.
    when = _utc(moments[1]) + datetime.timedelta(microseconds=2)
    assert when < _utc(moments[2])
    for moment in (when, when.replace(tzinfo=None),
                   when.astimezone(datetime.timezone(
                       datetime.timedelta(hours=5)))):
        past = db.open(at=moment)
        try:
            assert past.root.item.a == 2
        finally:
            past.close()


def test_tid_of_keeps_microseconds():
    when = datetime.datetime(2026, 12, 1, 4, 5, 6, 250000)
    assert abs(tid_time(tid_of(when)) - when.replace(
        tzinfo=datetime.timezone.utc).timestamp()) < 1e-3
    with pytest.raises(TypeError):
        tid_of('yesterday')


@pytest.mark.history
def test_historical_connection_is_read_only(db, moments):
    past = db.open(at=moments[0])
    try:
        assert past.isReadOnly()
        item = past.root.item
        with pytest.raises(errors.ReadOnlyHistoryError,
                           match='read-only') as info:
            item.a = 10
        assert isinstance(info.value, errors.ReadOnlyError)
        assert item.a == 1
        with pytest.raises(errors.ReadOnlyHistoryError):
            past.add(Item())
        with pytest.raises(errors.ReadOnlyHistoryError):
            past.root.new = 1
    finally:
        past.close()


@pytest.mark.history
def test_historical_connection_does_not_move(db, conn, moments):
    past = db.open(at=moments[0])
    try:
        conn.root.item.a = 4
        conn.transaction_manager.commit()
        past.transaction_manager.begin()
        assert past.root.item.a == 1
    finally:
        past.close()


@pytest.mark.history
def test_before_the_first_transaction_the_root_does_not_exist(db, moments):
    past = db.open(before=p64(1))
    try:
        with pytest.raises(errors.POSKeyError):
            past.root()
    finally:
        past.close()


@pytest.mark.history
def test_a_moment_before_history_start_raises_history_unavailable(db, conn):
    conn.root.item = item = Item(a=1)
    conn.transaction_manager.commit()
    old = db.lastTransaction()
    item.a = 2
    conn.transaction_manager.commit()
    past = db.open(at=old)      # before the pack: still there
    past.close()
    db.pack()
    with pytest.raises(errors.HistoryUnavailable) as info:
        db.open(at=old)
    oldest = info.value.oldest
    assert oldest == db.storage.history_start() > old
    message = str(info.value)
    assert errors.oid_repr(oldest) in message
    assert errors.oid_repr(old) in message
    assert 'oldest' in message
    with pytest.raises(errors.HistoryUnavailable):
        db.open(before=oldest)
    past = db.open(at=oldest)
    try:
        assert past.root.item.a == 2
    finally:
        past.close()


@pytest.mark.history
def test_historical_connections_are_not_pooled(db, moments):
    past = db.open(at=moments[0])
    past.close()
    again = db.open(at=moments[0])
    assert again is not past
    again.close()
    assert past not in db._available


def test_at_accepts_any_eight_bytes_tid(db, moments):
    stamp = TimeStamp(moments[2])
    past = db.open(at=stamp.raw())
    try:
        assert past.root.item.a == 3
        assert u64(past.before) == u64(moments[2]) + 1
    finally:
        past.close()
