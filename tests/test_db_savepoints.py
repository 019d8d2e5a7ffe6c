"""Savepoints: rollback, nesting, new objects, what loads and commits see."""
import pytest

from objstore import errors

from db_fixtures import (  # noqa: F401 (fixtures)
    Item, close_connection, conn, db, open_connection, storage_factory)


@pytest.fixture
def item(conn):
    conn.root.item = item = Item(a=1)
    conn.transaction_manager.commit()
    return item


def test_rollback_restores_the_state_at_the_savepoint(conn, item):
    txn = conn.transaction_manager.get()
    item.a = 2
    savepoint = txn.savepoint()
    item.a = 3
    conn.root.extra = 'x'
    savepoint.rollback()
    assert item.a == 2
    assert 'extra' not in conn.root()
    conn.transaction_manager.commit()
    assert item.a == 2


def test_nested_savepoints_roll_back_to_the_one_chosen(conn, item):
    txn = conn.transaction_manager.get()
    item.a = 2
    outer = txn.savepoint()
    item.a = 3
    inner = txn.savepoint()
    item.a = 4
    inner.rollback()
    assert item.a == 3
    item.a = 5
    outer.rollback()
    assert item.a == 2
    item.a = 6
    outer.rollback()        # a savepoint can be rolled back to again
    assert item.a == 2


def test_rollback_before_any_change_forgets_everything(conn, item):
    txn = conn.transaction_manager.get()
    savepoint = txn.savepoint()     # the connection has not joined yet
    item.a = 2
    conn.root.new = Item()
    savepoint.rollback()
    assert item.a == 1
    assert 'new' not in conn.root()
    conn.transaction_manager.commit()


def test_objects_added_after_a_savepoint_are_disowned_on_rollback(conn, item):
    txn = conn.transaction_manager.get()
    kept = Item(n='kept')
    item.kept = kept
    savepoint = txn.savepoint()
    assert kept._p_oid is not None
    added, reached = Item(), Item()
    conn.add(added)
    item.reached = reached
    txn.savepoint()
    assert reached._p_oid is not None
    savepoint.rollback()
    assert added._p_jar is None and added._p_oid is None
    assert reached._p_jar is None and reached._p_oid is None
    assert kept._p_jar is conn and item.kept is kept
    conn.transaction_manager.commit()
    assert kept.n == 'kept' and kept._p_serial == item._p_serial


def test_loads_in_the_transaction_see_savepoint_data(conn, item):
    txn = conn.transaction_manager.get()
    item.a = 2
    txn.savepoint()
    conn.cacheMinimize()
    assert item._p_changed is None      # ghosted: its state is saved
    assert item.a == 2                  # loaded from the savepoint


def test_commit_stores_savepoint_data_and_later_changes(db, conn, item):
    txn = conn.transaction_manager.get()
    item.a = 2
    item.child = Item(n=1)
    txn.savepoint()
    item.b = 'after'
    conn.transaction_manager.commit()
    other = open_connection(db)
    try:
        stored = other.root.item
        assert (stored.a, stored.b, stored.child.n) == (2, 'after', 1)
    finally:
        close_connection(other)


def test_abort_after_savepoints_discards_everything(db, conn, item):
    last = db.lastTransaction()
    txn = conn.transaction_manager.get()
    item.a = 2
    child = item.child = Item()
    txn.savepoint()
    item.a = 3
    conn.transaction_manager.abort()
    assert item.a == 1
    assert child._p_jar is None
    assert db.lastTransaction() == last


def test_failed_commit_after_savepoints_shows_the_committed_state(db, conn):
    conn.root.first = first = Item(a=1)
    conn.root.second = second = Item(b=1)
    conn.transaction_manager.commit()
    other = open_connection(db)
    try:
        other.root.second.b = 'theirs'
        other.transaction_manager.commit()
    finally:
        close_connection(other)
    # first (stored before the conflicting second) and second both
    # savepointed: after the failed commit neither keeps our state.
    first.a = 'ours'
    second.b = 'ours'
    conn.transaction_manager.get().savepoint()
    with pytest.raises(errors.ConflictError):
        conn.transaction_manager.commit()
    conn.transaction_manager.abort()
    assert first.a == 1
    assert second.b == 'theirs'


def test_new_objects_keep_their_state_when_a_commit_fails(db, conn):
    conn.root.item = item = Item(a=1)
    conn.transaction_manager.commit()
    other = open_connection(db)
    try:
        other.root.item.a = 'theirs'
        other.transaction_manager.commit()
    finally:
        close_connection(other)
    txn = conn.transaction_manager.get()
    fresh = Item(n=1)
    conn.root.fresh = fresh
    txn.savepoint()
    fresh.n = 2                 # changed again after the savepoint
    item.a = 'ours'
    with pytest.raises(errors.ConflictError):
        conn.transaction_manager.commit()
    conn.transaction_manager.abort()
    assert fresh._p_jar is None
    assert fresh.n == 2


class FailingVote:
    """A data manager whose vote fails after the connection voted."""

    transaction_manager = None

    def sortKey(self):
        return '~ after every connection'

    def abort(self, txn):
        pass

    tpc_begin = commit = tpc_finish = tpc_abort = abort

    def tpc_vote(self, txn):
        raise RuntimeError('vote failed elsewhere')


def test_new_objects_keep_their_state_when_another_vote_fails(db, conn):
    last = db.lastTransaction()
    txn = conn.transaction_manager.get()
    fresh = Item(n=1)
    conn.root.fresh = fresh
    txn.savepoint()
    fresh.n = 2                 # changed again after the savepoint
    txn.join(FailingVote())
    with pytest.raises(RuntimeError):
        conn.transaction_manager.commit()
    conn.transaction_manager.abort()
    assert fresh._p_jar is None and fresh.n == 2
    assert 'fresh' not in conn.root()
    assert db.lastTransaction() == last
