"""objstore.timeline: history(), as_of() and diff() of any persistent object,
on every storage kind."""
import copy
import datetime
import gc
import weakref

import pytest
from BTrees.OOBTree import OOBTree, OOSet
from hypothesis import given, settings, strategies as st
from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

import objstore
from objstore import errors
from objstore.db import DB
from objstore.timeline import (
    ADDED, ATTRIBUTE, CHANGED, INDEX, KEY, MEMBER, REMOVED, Change, Diff,
    Path, Revision, as_of, diff, history)

from db_fixtures import (  # noqa: F401 (fixtures)
    NO_HISTORY, Item, close_connection, conn, db, open_connection,
    storage_factory)

UTC = datetime.timezone.utc


def commit(conn, note='', user=None, **extension):
    """Commit ``conn``'s transaction; its tid."""
    txn = conn.transaction_manager.get()
    if note:
        txn.note(note)
    if user:
        txn.setUser(user)
    for key, value in extension.items():
        txn.extension[key] = value
    conn.transaction_manager.commit()
    return conn.db().lastTransaction()


@pytest.fixture
def hdb(db):
    # Tests taking it are marked history: db_fixtures.NO_HISTORY kinds
    # (pmem) do not run them; test_pmem_history_is_unavailable covers those.
    return db


@pytest.fixture
def story(hdb, conn):
    """``item.a`` 1, 2, 3 over four commits (the third touches only
    another object); returns the tids of the commits changing item."""
    conn.root.item = item = Item(a=1, child=Item(b='one'))
    conn.root.other = Item(n=0)
    t1 = commit(conn, 'create', 'alice', ticket='T-1')
    item.a = 2
    item.child.b = 'two'
    t2 = commit(conn, 'second', 'bob')
    conn.root.other.n = 1
    commit(conn, 'other only')
    item.a = 3
    t3 = commit(conn, 'third')
    return [t1, t2, t3]


def utc(tid):
    return datetime.datetime.fromtimestamp(
        objstore.storages.base.tid_time(tid), UTC)


# -- history -----------------------------------------------------------------

@pytest.mark.history
def test_history_lists_each_commit_touching_the_object_newest_first(
        conn, story):
    revisions = history(conn.root.item)
    assert [r.tid for r in revisions] == story[::-1]
    assert [r.description for r in revisions] == ['third', 'second',
                                                  'create']
    assert [r.user for r in revisions] == ['', '/ bob', '/ alice']
    assert revisions[-1].extension['ticket'] == 'T-1'
    for revision in revisions:
        assert isinstance(revision, Revision)
        assert revision.time.utcoffset() == datetime.timedelta(0)
        assert abs(revision.time - utc(revision.tid)) < datetime.timedelta(
            milliseconds=1)
        assert revision.size > 0
    assert revisions[0].time > revisions[1].time > revisions[2].time
    assert '/ alice: create' in str(revisions[-1])
    # The child changed once after its creation.
    assert [r.description for r in history(conn.root.item.child)] == [
        'second', 'create']


@pytest.mark.history
def test_revisions_are_frozen_values(conn, story):
    revision = history(conn.root.item)[0]
    with pytest.raises(AttributeError):
        revision.user = 'mallory'
    assert revision == history(conn.root.item)[0]
    assert hash(revision) == hash(history(conn.root.item)[0])


@pytest.mark.history
def test_history_since_and_until_take_tids_both_ends_included(conn, story):
    item = conn.root.item
    t1, t2, t3 = story
    assert [r.tid for r in history(item, since=t2)] == [t3, t2]
    assert [r.tid for r in history(item, until=t2)] == [t2, t1]
    assert [r.tid for r in history(item, since=t2, until=t2)] == [t2]
    assert history(item, since=t3, until=t1) == []


@pytest.mark.history
def test_history_since_and_until_take_aware_datetimes_and_revisions(
        conn, story):
    item = conn.root.item
    t1, t2, t3 = story
    between = utc(t2) + (utc(t3) - utc(t2)) / 2
    assert utc(t2) < between < utc(t3)
    assert [r.tid for r in history(item, since=between)] == [t3]
    assert [r.tid for r in history(item, until=between)] == [t2, t1]
    east = between.astimezone(datetime.timezone(datetime.timedelta(hours=5)))
    assert [r.tid for r in history(item, since=east)] == [t3]
    second = history(item)[1]
    assert [r.tid for r in history(item, until=second)] == [t2, t1]


def test_history_refuses_naive_datetimes_and_other_moments(conn, story):
    item = conn.root.item
    with pytest.raises(errors.InvalidArgumentError, match='naive'):
        history(item, since=datetime.datetime.now())
    with pytest.raises(TypeError, match='tid'):
        history(item, until='yesterday')
    with pytest.raises(errors.InvalidArgumentError, match='naive'):
        as_of(item, datetime.datetime.now())


@pytest.mark.history
def test_history_of_objects_not_stored(hdb, conn):
    with pytest.raises(TypeError, match='persistent'):
        history({'a': 1})
    with pytest.raises(errors.InvalidArgumentError, match='no connection'):
        history(Item())
    conn.root.new = new = Item()
    assert new._p_oid is None
    conn.add(new)
    assert history(new) == []       # an oid, but nothing committed yet


@pytest.mark.history
def test_history_includes_commits_of_other_connections(hdb, conn, story):
    other = open_connection(hdb)
    try:
        other.root.item.a = 4
        t4 = commit(other, 'elsewhere')
    finally:
        close_connection(other)
    assert history(conn.root.item)[0].tid == t4


@pytest.mark.history
def test_history_of_a_past_copy_stops_at_its_moment(conn, story):
    old = as_of(conn.root.item, story[1])
    assert [r.tid for r in history(old)] == story[1::-1]


# -- as_of -------------------------------------------------------------------

@pytest.mark.history
def test_as_of_a_tid_shows_the_object_then(conn, story):
    item = conn.root.item
    for value, tid in enumerate(story, 1):
        old = as_of(item, tid)
        assert type(old) is Item and old._p_oid == item._p_oid
        assert old.a == value
        assert old.child.b == ('one' if value == 1 else 'two')
        assert old._p_jar is not conn and old._p_jar.isReadOnly()
    assert item.a == 3


@pytest.mark.history
def test_as_of_a_datetime_or_revision(conn, story):
    item = conn.root.item
    t1, t2, t3 = story
    assert as_of(item, utc(t2) + (utc(t3) - utc(t2)) / 2).a == 2
    assert as_of(item, history(item)[-1]).a == 1
    # A moment after the last commit is the present, pinned.
    now = as_of(item, datetime.datetime.now(UTC) + datetime.timedelta(
        days=1))
    assert now.a == 3
    item.a = 4
    commit(conn)
    assert now.a == 3 and as_of(item, datetime.datetime.now(UTC)).a == 4


@pytest.mark.history
def test_as_of_refuses_writes(conn, story):
    old = as_of(conn.root.item, story[0])
    with pytest.raises(errors.ReadOnlyHistoryError, match='read-only'):
        old.a = 10
    with pytest.raises(errors.ReadOnlyHistoryError):
        old.child.b = 'x'
    assert old.a == 1
    conn.transaction_manager.abort()
    assert conn.root.item.a == 3


@pytest.mark.history
def test_as_of_before_the_object_existed(conn, story):
    conn.root.late = late = Item(x=1)
    created = commit(conn, 'late')
    with pytest.raises(errors.HistoryUnavailable,
                       match='no revision as of') as info:
        as_of(late, story[0])
    assert info.value.oldest == created
    assert as_of(late, info.value.oldest).x == 1


@pytest.mark.history
def test_as_of_connection_is_released_on_close_or_collection(hdb, conn,
                                                             story):
    old = as_of(conn.root.item, story[0])
    jar = old._p_jar
    jar.close()
    assert not jar.opened
    old = as_of(conn.root.item, story[0])
    jar = weakref.ref(old._p_jar)
    assert jar() in hdb._connections
    del old
    gc.collect()
    assert jar() is None


@pytest.mark.history
def test_as_of_after_pack_raises_history_unavailable(hdb, conn, story):
    item = conn.root.item
    hdb.pack()
    with pytest.raises(errors.HistoryUnavailable, match='oldest') as info:
        as_of(item, story[0])
    oldest = info.value.oldest
    assert oldest is not None and oldest > story[0]
    assert as_of(item, oldest).a == 3
    assert as_of(item, story[2]).a == 3


@pytest.mark.history
def test_history_after_pack(hdb, conn, story):
    item = conn.root.item
    hdb.pack()
    kept = history(item)
    assert kept and kept[0].tid == story[2]
    # Whether pack kept the older revision's metadata is the storage's
    # business; asking for revisions since before the pack is refused.
    with pytest.raises(errors.HistoryUnavailable,
                       match='incomplete') as info:
        history(item, since=story[0])
    assert info.value.oldest == kept[-1].tid
    assert history(item, since=kept[-1].tid) == kept
    # An object created after the pack has its whole history.
    conn.root.fresh = fresh = Item(v=1)
    created = commit(conn, 'fresh')
    assert [r.tid for r in history(fresh, since=story[0])] == [created]


def test_storage_without_history_refuses(storage_factory):
    storage = storage_factory()
    if storage_factory.kind not in NO_HISTORY:
        storage.keep_history = False
    # The NO_HISTORY kinds (pmem, history-free PostgreSQL) say so themselves.
    with DB(storage) as database:
        conn = open_connection(database)
        try:
            conn.root.item = item = Item(a=1)
            tid = commit(conn)
            with pytest.raises(errors.HistoryUnavailable,
                               match='keeps no history'):
                history(item)
            with pytest.raises(errors.HistoryUnavailable,
                               match='keeps no history'):
                as_of(item, tid)
        finally:
            close_connection(conn)


@pytest.mark.history
def test_storage_keeping_only_current_states_in_its_window(
        hdb, conn, story, monkeypatch):
    # As a storage keeping no history but saying nothing of it (pmem): its
    # window starts at the last commit and it lists the current revision.
    storage = hdb.storage
    listed = storage.history
    monkeypatch.setattr(storage, 'history_start', storage.lastTransaction)
    monkeypatch.setattr(storage, 'history',
                        lambda oid, size=1: listed(oid, 1))
    item = conn.root.item
    with pytest.raises(errors.HistoryUnavailable, match='oldest'):
        as_of(item, story[0])
    with pytest.raises(errors.HistoryUnavailable, match='incomplete'):
        history(item, since=story[0])
    assert [r.tid for r in history(item)] == [story[2]]


@pytest.mark.history
def test_storage_whose_history_raises(hdb, conn, monkeypatch):
    conn.root.item = item = Item(a=1)
    commit(conn)

    def unsupported(oid, size=1):
        raise errors.Unsupported('no history here')
    monkeypatch.setattr(hdb.storage, 'history', unsupported)
    with pytest.raises(errors.HistoryUnavailable, match='no history here'):
        history(item)


# -- diff of stored objects --------------------------------------------------

@pytest.mark.history
def test_diff_of_attributes(conn, story):
    item = conn.root.item
    item.c = 'new'
    del item.child
    commit(conn)
    changes = diff(as_of(item, story[0]), item)
    assert [(c.path, c.kind, c.old) for c in changes] == [
        (('a',), CHANGED, 1), (('child',), REMOVED, changes[1].old),
        (('c',), ADDED, None)]
    assert changes[0].new == 3 and changes[2].new == 'new'
    assert changes[1].old._p_oid is not None
    assert str(changes).splitlines() == [
        '.a: 1 -> 3', '.child: removed <Item %s>'
        % errors.oid_repr(changes[1].old._p_oid), ".c: added 'new'"]


@pytest.mark.history
def test_diff_follows_the_same_persistent_object(conn, story):
    item = conn.root.item
    changes = diff(as_of(item, story[0]), item)
    assert [(c.path, c.old, c.new) for c in changes] == [
        (('a',), 1, 3), (('child', 'b'), 'one', 'two')]
    assert changes[1].path.kinds == (ATTRIBUTE, ATTRIBUTE)
    assert str(changes[1]) == ".child.b: 'one' -> 'two'"
    # Not following: the child is the same object, so unchanged.
    assert [c.path for c in diff(as_of(item, story[0]), item,
                                 follow=False)] == [('a',)]


@pytest.mark.history
def test_diff_of_an_object_whose_state_is_no_dict(hdb, conn):
    from BTrees.Length import Length
    conn.root.item = item = Item(count=Length(1))
    t = commit(conn)
    item.count.change(2)
    commit(conn)
    assert [(c.path, c.old, c.new)
            for c in diff(as_of(item, t), item)] == [(('count',), 1, 3)]


@pytest.mark.history
def test_diff_of_a_replaced_persistent_object_is_one_change(conn, story):
    item = conn.root.item
    old_child = item.child
    item.child = Item(b='two')
    commit(conn)
    changes = diff(as_of(item, story[2]), item)
    assert len(changes) == 1
    assert changes[0].path == ('child',) and changes[0].kind == CHANGED
    assert changes[0].old._p_oid == old_child._p_oid
    assert changes[0].new is item.child


@pytest.mark.history
def test_diff_of_cycles_ends(conn, story):
    item = conn.root.item
    item.child.parent = item
    commit(conn)
    t = conn.db().lastTransaction()
    item.a = 4
    item.child.b = 'three'
    commit(conn)
    changes = diff(as_of(item, t), item)
    assert [c.path for c in changes] == [('a',), ('child', 'b')]
    plain = {'x': 1}
    plain['self'] = plain
    other = {'x': 2}
    other['self'] = other
    assert [c.path for c in diff(plain, other)] == [('x',)]


@pytest.mark.history
def test_diff_of_mappings(hdb, conn):
    conn.root.m = m = PersistentMapping({'a': 1, 'b': {'x': 1}})
    conn.root.tree = tree = OOBTree({'k1': 1, 'k2': 2})
    t = commit(conn)
    m['a'] = 2
    m['b']['x'] = 2
    m._p_changed = True
    m['c'] = 3
    del tree['k1']
    tree['k3'] = [1]
    commit(conn)
    assert [(c.path, c.kind) for c in diff(as_of(m, t), m)] == [
        (('a',), CHANGED), (('b', 'x'), CHANGED), (('c',), ADDED)]
    assert str(diff(as_of(m, t), m)) == (
        "['a']: 1 -> 2\n['b']['x']: 1 -> 2\n['c']: added 3")
    changes = diff(as_of(tree, t), tree)
    assert [(c.path, c.kind, c.old, c.new) for c in changes] == [
        (('k1',), REMOVED, 1, None), (('k3',), ADDED, None, [1])]
    assert changes[0].path.kinds == (KEY,)


@pytest.mark.history
def test_diff_of_lists(hdb, conn):
    conn.root.items = items = PersistentList(['a', 'b', 'c', 'd'])
    t = commit(conn)
    items.insert(0, 'z')
    items.remove('c')
    items.append('e')
    commit(conn)
    changes = diff(as_of(items, t), items)
    assert [(c.path, c.kind) for c in changes] == [
        ((0,), ADDED), ((3,), REMOVED), ((4,), ADDED)]
    assert changes[0].path.kinds == (INDEX,)
    assert str(changes) == "[0]: added 'z'\n[3]: removed 'c'\n[4]: added 'e'"


@pytest.mark.history
def test_diff_of_sets(hdb, conn):
    conn.root.tags = tags = OOSet(['a', 'b'])
    t = commit(conn)
    tags.remove('a')
    tags.add('c')
    commit(conn)
    changes = diff(as_of(tags, t), tags)
    assert [(c.path, c.kind) for c in changes] == [
        (('a',), REMOVED), (('c',), ADDED)]
    assert changes[0].path.kinds == (MEMBER,)
    assert str(changes) == "{'a'}: removed 'a'\n{'c'}: added 'c'"


@pytest.mark.history
def test_diff_of_immutables_compares_their_content(hdb, conn):
    with objstore.create(objstore.ImmutableDict) as factory:
        meta = factory({'k': 1, 'tags': ['x']})
    with objstore.create(objstore.ImmutableList) as factory:
        seq = factory([1, 2])
    with objstore.create(objstore.ImmutableSet) as factory:
        members = factory({1, 2})
    conn.root.item = item = Item(meta=meta, seq=seq, members=members)
    t = commit(conn)
    with objstore.update(item.meta) as changed:
        changed['k'] = 2
    with objstore.update(item.seq) as longer:
        longer.append(3)
    with objstore.update(item.members) as fewer:
        fewer.discard(1)
    item.meta, item.seq, item.members = changed, longer, fewer
    commit(conn)
    # New immutable objects (new oids), compared as values.
    assert item.meta._p_oid != as_of(item, t).meta._p_oid
    changes = diff(as_of(item, t), item)
    assert [(c.path, c.kind, c.old, c.new) for c in changes] == [
        (('meta', 'k'), CHANGED, 1, 2), (('seq', 2), ADDED, None, 3),
        (('members', 1), REMOVED, 1, None)]


@pytest.mark.history
def test_diff_of_immutable_objects(hdb, conn):
    class_ = Point
    with objstore.create(class_) as factory:
        point = factory(1, 2)
    conn.root.point = point
    t = commit(conn)
    with objstore.update(point) as moved:
        moved.y = 5
    conn.root.point = moved
    commit(conn)
    assert [(c.path, c.old, c.new)
            for c in diff(as_of(conn.root(), t)['point'], moved)] == [
        (('y',), 2, 5)]


class Point(objstore.Immutable):

    def __init__(self, x, y):
        self.x = x
        self.y = y


# -- diff of plain values ----------------------------------------------------

def test_diff_of_states_and_plain_values():
    assert not diff({'a': [1, 2]}, {'a': [1, 2]})
    assert str(diff(1, 1)) == 'no changes'
    changes = diff({'a': [1, {'b': 2}]}, {'a': [1, {'b': 3}], 'c': None})
    assert changes == Diff([
        Change(Path(('a', 1, 'b'), (KEY, INDEX, KEY)), CHANGED, 2, 3),
        Change(Path(('c',), (KEY,)), ADDED, None, None)])
    assert repr(changes) == '<Diff: 2 changes>'
    assert str(changes) == "['a'][1]['b']: 2 -> 3\n['c']: added None"
    # Different types change whole, even when ==.
    assert [(c.path, c.old, c.new) for c in diff([1], [True])] == [
        ((0,), 1, True)]
    assert str(diff(1, 'one')) == "(value): 1 -> 'one'"
    assert [c.path for c in diff(Item(a=1), Item(a=2))] == [('a',)]


def test_diff_paths_are_plain_tuples_for_code():
    change = diff({'a': {'b': 1}}, {'a': {'b': 2}})[0]
    assert change.path == ('a', 'b')
    assert change.path.kinds == (KEY, KEY)
    assert {change.path: 'x'}[('a', 'b')] == 'x'
    with pytest.raises(AttributeError):
        change.kind = ADDED


def _apply(value, changes):
    """The test's oracle: apply ``changes`` in order to a copy of ``value``."""
    holder = [copy.deepcopy(value)]
    for change in changes:
        steps = (0,) + tuple(change.path)
        kinds = (INDEX,) + change.path.kinds
        container = holder
        for step, kind in zip(steps[:-1], kinds[:-1]):
            container = (getattr(container, step) if kind == ATTRIBUTE
                         else container[step])
        step, kind = steps[-1], kinds[-1]
        if kind == MEMBER:
            if change.kind == ADDED:
                container.add(change.new)
            else:
                container.remove(change.old)
        elif change.kind == ADDED and isinstance(container, list):
            container.insert(step, copy.deepcopy(change.new))
        elif change.kind == REMOVED:
            del container[step]
        else:
            container[step] = copy.deepcopy(change.new)
    return holder[0]


def _typed(value):
    """``value`` with every type spelled out, so 1 and True differ."""
    if isinstance(value, dict):
        return ('dict', sorted((k, _typed(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ('list', [_typed(v) for v in value])
    if isinstance(value, set):
        return ('set', sorted(value, key=repr))
    return (type(value).__name__, value)


_atoms = (st.none() | st.booleans() | st.integers(-3, 3)
          | st.floats(allow_nan=False) | st.text(max_size=3))
_data = st.recursive(
    _atoms,
    lambda inner: (st.lists(inner, max_size=6)
                   | st.dictionaries(st.text(max_size=2), inner, max_size=5)
                   | st.sets(st.integers(0, 5), max_size=4)),
    max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(_data, _data)
def test_diff_applied_to_a_gives_b(a, b):
    changes = diff(a, b)
    assert _typed(_apply(a, changes)) == _typed(b)
    assert bool(changes) == (_typed(a) != _typed(b))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 4), max_size=12),
       st.lists(st.integers(0, 4), max_size=12))
def test_diff_of_lists_applies_in_order(a, b):
    changes = diff(a, b)
    assert _apply(a, changes) == b
    # Aligned, not positional: never more changes than a positional diff.
    assert len(changes) <= max(len(a), len(b))
