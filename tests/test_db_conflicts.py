"""MVCC snapshots, write conflicts, conflict resolution, readCurrent."""
import pytest
import transaction
from BTrees.Length import Length
from BTrees.OOBTree import OOBTree
from transaction.interfaces import TransientError

from objstore import errors

from db_fixtures import (  # noqa: F401 (fixtures)
    Counter, Item, close_connection, db, open_connection, storage_factory)


@pytest.fixture
def pair(db):
    """Two connections of ``db``, each with its own transaction manager,
    after a first commit of two items."""
    first, second = open_connection(db), open_connection(db)
    first.root.a = Item(value=1)
    first.root.b = Item(value=1)
    first.transaction_manager.commit()
    second.transaction_manager.begin()
    yield first, second
    close_connection(first)
    close_connection(second)


def test_each_connection_reads_one_snapshot_per_transaction(pair):
    first, second = pair
    assert second.root.a.value == 1
    first.root.a.value = 2
    first.root.b.value = 2
    first.transaction_manager.commit()
    # Same transaction: the change is not seen, even by a first load of b.
    assert second.root.a.value == 1
    assert second.root.b.value == 1
    second.transaction_manager.begin()
    assert (second.root.a.value, second.root.b.value) == (2, 2)


def test_changed_objects_are_ghosted_at_the_next_transaction(pair):
    first, second = pair
    a, b = second.root.a, second.root.b
    assert (a.value, b.value) == (1, 1)
    first.root.a.value = 2
    first.transaction_manager.commit()
    second.transaction_manager.begin()
    assert a._p_changed is None         # ghosted, not reloaded
    assert b._p_changed is False        # unchanged elsewhere: kept
    assert a.value == 2


def test_writing_a_changed_object_raises_conflict_error(pair):
    first, second = pair
    first.root.a.value = 2
    second.root.a.value = 3
    first.transaction_manager.commit()
    with pytest.raises(errors.ConflictError) as info:
        second.transaction_manager.commit()
    error = info.value
    assert isinstance(error, TransientError)
    assert error.oid == first.root.a._p_oid
    assert error.class_name == 'db_fixtures.Item'
    assert 'db_fixtures.Item' in str(error)
    assert errors.oid_repr(error.oid) in str(error)
    second.transaction_manager.abort()
    assert second.root.a.value == 2


def test_attempts_retry_a_conflicting_transaction(pair):
    first, second = pair
    tries = []
    for attempt in second.transaction_manager.attempts(3):
        with attempt:
            tries.append(1)
            second.root.a.value += 10
            if len(tries) == 1:
                first.root.a.value += 1
                first.transaction_manager.commit()
    assert len(tries) == 2
    first.transaction_manager.begin()
    assert first.root.a.value == 12


def test_conflicts_resolved_by_the_class_are_merged(pair):
    first, second = pair
    first.root.counter = Counter()
    first.transaction_manager.commit()
    second.transaction_manager.begin()
    counter = second.root.counter
    first.root.counter.add(5)
    counter.add(3)
    first.transaction_manager.commit()
    second.transaction_manager.commit()
    assert counter._p_changed is None   # ghosted: the merged state is loaded
    assert counter.value == 8
    first.transaction_manager.begin()
    assert first.root.counter.value == 8


def test_btree_and_length_conflicts_are_resolved(pair):
    first, second = pair
    first.root.tree = OOBTree({'m': 0})
    first.root.count = Length(1)
    first.transaction_manager.commit()
    second.transaction_manager.begin()
    first.root.tree['a'] = 1
    first.root.count.change(1)
    second.root.tree['z'] = 2
    second.root.count.change(1)
    first.transaction_manager.commit()
    second.transaction_manager.commit()
    assert dict(second.root.tree) == {'a': 1, 'm': 0, 'z': 2}
    assert second.root.count() == 3
    first.transaction_manager.begin()
    assert dict(first.root.tree) == {'a': 1, 'm': 0, 'z': 2}
    assert first.root.count() == 3


def test_btree_conflict_on_the_same_key_is_not_resolved(pair):
    first, second = pair
    first.root.tree = OOBTree({'m': 0})
    first.transaction_manager.commit()
    second.transaction_manager.begin()
    first.root.tree['m'] = 1
    second.root.tree['m'] = 2
    first.transaction_manager.commit()
    with pytest.raises(errors.ConflictError):
        second.transaction_manager.commit()
    second.transaction_manager.abort()


def test_read_current_raises_read_conflict_error(pair):
    first, second = pair
    checked = second.root.a
    assert checked.value == 1
    second.readCurrent(checked)
    second.root.b.value = checked.value + 1
    first.root.a.value = 5
    first.transaction_manager.commit()
    with pytest.raises(errors.ReadConflictError) as info:
        second.transaction_manager.commit()
    assert info.value.oid == checked._p_oid
    klass = type(checked)
    assert info.value.class_name == '%s.%s' % (klass.__module__,
                                               klass.__qualname__)
    assert 'class %s' % info.value.class_name in str(info.value)
    second.transaction_manager.abort()
    assert checked.value == 5


def test_read_current_passes_when_nothing_changed(pair):
    first, second = pair
    second.readCurrent(second.root.a)
    second.root.b.value = 7
    second.transaction_manager.commit()
    first.transaction_manager.begin()
    assert first.root.b.value == 7


def test_threads_default_managers_keep_their_own_transactions(db):
    connection = db.open()
    try:
        connection.root.item = Item(value=1)
        transaction.commit()
        assert connection.transaction_manager is transaction.manager.manager
    finally:
        transaction.abort()
        connection.close()


def test_resolved_objects_show_the_merged_state_with_explicit_managers(db):
    managers = [transaction.TransactionManager(explicit=True)
                for _ in range(2)]
    first, second = [db.open(m) for m in managers]
    try:
        with managers[0]:
            first.root.counter = Counter()
        managers[1].begin()
        counter = second.root.counter
        counter.add(3)
        with managers[0]:
            first.root.counter.add(5)
        managers[1].commit()
        counter.value   # loaded outside a transaction: the old snapshot
        with managers[1]:
            assert counter.value == 8
    finally:
        first.close()
        second.close()
