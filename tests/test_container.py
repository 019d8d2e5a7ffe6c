"""objstore.container.RevisionedContainer: named histories in BTrees, as a
mapping and a revision manager, in memory and end to end in a DB."""
import datetime

import pytest
from zope.interface.verify import verifyObject

import objstore as im
from objstore import errors
from objstore.container import RevisionedContainer
from objstore.interfaces import (
    IM_STATE_DELETED, IM_STATE_LOCKED, IM_STATE_RETIRED,
    IRevisionedImmutableManager)

from db_fixtures import (  # noqa: F401 -- fixtures
    close_connection, db, open_connection, storage_factory)

UTC = datetime.timezone.utc


class Note(im.RevisionedImmutable):

    def __init__(self, text='', tags=()):
        self.text = text
        self.tags = list(tags)


def make(text='', creator=None, comment=None, **kw):
    with im.create(Note, creator=creator, comment=comment) as factory:
        return factory(text, **kw)


def edit(revision, text, creator=None, comment=None):
    with im.update(revision, creator, comment) as new:
        new.text = text
    return new


def filled(names=('a',), revisions=3):
    """A container where each name has ``revisions`` revisions, texts
    '<name>0', '<name>1'..., made by 'ann' and 'bob' in turn."""
    container = RevisionedContainer()
    for name in names:
        container[name] = current = make(name + '0', 'ann', 'first')
        for i in range(1, revisions):
            current = edit(current, name + str(i), ('ann', 'bob')[i % 2],
                           'edit %d' % i)
    return container


def texts(revisions):
    return [r.text for r in revisions]


# -- the mapping -------------------------------------------------------------

def test_interfaces_are_provided():
    container = filled()
    assert verifyObject(IRevisionedImmutableManager, container)
    assert verifyObject(IRevisionedImmutableManager,
                        container.withDeletedItems())


def test_assigning_a_name_starts_its_history():
    container = RevisionedContainer()
    note = make('hello', 'ann', 'new')
    container['b'] = note
    container['a'] = make('other')
    assert container['b'] is note
    assert note.__name__ == 'b' and note.__im_version__ == 0
    assert note.__im_manager__ is container
    assert note.__im_state__ == IM_STATE_LOCKED
    assert note.__im_start_on__.tzinfo is UTC and note.__im_end_on__ is None
    assert (note.__im_creator__, note.__im_comment__) == ('ann', 'new')
    assert len(container) == 2 and list(container) == ['a', 'b']
    assert 'b' in container and 'c' not in container and 5 not in container
    assert container.get('c') is None and container.get('b') is note
    assert list(container.keys()) == ['a', 'b']
    assert [v.text for v in container.values()] == ['other', 'hello']
    assert dict(container.items())['b'] is note
    assert container.getNumberOfRevisions('b') == 1
    assert container.getCurrentRevision(note) is note
    assert container.getRevision('b', 0) is note
    assert repr(container) == '<RevisionedContainer with 2 names>'


def test_update_adds_the_next_revision_and_retires_the_old_one():
    container = RevisionedContainer()
    container['a'] = first = make('v0')
    second = edit(first, 'v1', 'bob', 'typo')
    assert container['a'] is second
    assert second.__name__ == 'a' and second.__im_version__ == 1
    assert second.__im_manager__ is container
    assert (second.__im_creator__, second.__im_comment__) == ('bob', 'typo')
    assert first.__im_state__ == IM_STATE_RETIRED
    assert first.__im_end_on__ == second.__im_start_on__
    assert second.__im_start_on__ > first.__im_start_on__
    assert container.getRevision('a', 0) is first
    assert container.getRevision('a', 1) is second
    assert texts(container.getRevisionHistory(first)) == ['v0', 'v1']
    assert len(container) == 1


def test_assigning_a_live_name_adds_its_next_revision():
    container = filled(revisions=2)
    old = container['a']
    container['a'] = new = make('replacement', 'cy')
    assert new.__im_version__ == 2 and container['a'] is new
    assert old.__im_state__ == IM_STATE_RETIRED
    assert texts(container.getRevisionHistory('a')) == [
        'a0', 'a1', 'replacement']


def test_add_revision_without_old_uses_the_name_of_the_revision():
    container = filled(revisions=2)
    new = make('by name')
    new.__name__ = 'a'
    container.addRevision(new)
    assert container['a'] is new and new.__im_version__ == 2
    fresh = make('new name')
    fresh.__name__ = 'z'
    container.addRevision(fresh)
    assert container['z'] is fresh and fresh.__im_version__ == 0
    with pytest.raises(errors.InvalidArgumentError, match='__name__'):
        container.addRevision(make('nameless'))


def test_start_times_increase_even_when_the_clock_stands_still(monkeypatch):
    frozen = datetime.datetime(2030, 1, 1, tzinfo=UTC)
    monkeypatch.setattr('objstore.container._utc_now', lambda: frozen)
    container = filled(revisions=4)
    starts = [r.__im_start_on__ for r in container.getRevisionHistory('a')]
    tick = datetime.timedelta(microseconds=1)
    assert starts == [frozen + i * tick for i in range(4)]
    current = container['a']
    del container['a']
    assert current.__im_end_on__ > current.__im_start_on__
    container['a'] = after = make('after')
    assert after.__im_start_on__ > current.__im_end_on__


# -- refused input -----------------------------------------------------------

class Plain(im.Immutable):
    def __init__(self, value=None):
        self.value = value


def test_bad_values_are_refused_with_clear_errors():
    container = filled()
    with pytest.raises(errors.ImmutableStateError, match='transient'):
        container['x'] = Note('draft')
    with im.create(Plain) as factory:
        plain = factory(1)
    with pytest.raises(errors.InvalidArgumentError, match='revisioned'):
        container['x'] = plain
    with pytest.raises(errors.InvalidArgumentError, match='str'):
        container[5] = make()
    with pytest.raises(errors.InvalidArgumentError, match='history already'):
        container['x'] = container['a']
    with pytest.raises(errors.InvalidArgumentError, match='history already'):
        filled()['x'] = container['a']
    with pytest.raises(errors.InvalidArgumentError, match='creator'):
        container['x'] = make('n', creator=42)
    with im.create(Plain) as factory:
        holder = factory(make('inner'))
    with pytest.raises(errors.InvalidArgumentError, match='sub-object'):
        container['x'] = holder.value
    assert list(container) == ['a']
    assert container.getNumberOfRevisions('a') == 3


def test_unknown_names_and_revisions_raise_key_error():
    container = filled()
    stranger = make('stranger')
    for call in (
            lambda: container['missing'],
            lambda: container[5],
            lambda: container.__delitem__('missing'),
            lambda: container.getRevision('a', 3),
            lambda: container.getRevision('missing', 0),
            lambda: container.getRevisionHistory('missing'),
            lambda: container.getRevisionHistory(stranger),
            lambda: container.getNumberOfRevisions('missing'),
            lambda: container.getCurrentRevision('missing'),
            lambda: container.rollbackToRevision(stranger),
            lambda: container.rollbackToRevision(filled()['a']),
            lambda: container.addRevision(make(), old=stranger)):
        with pytest.raises(KeyError):
            call()
    with pytest.raises(KeyError) as raised:
        container.getRevision('a', 7)
    assert raised.value.args == (('a', 7),)


@pytest.mark.parametrize('kw', [
    {'creator': 1}, {'comment': b'x'},
    {'startBefore': datetime.datetime(2020, 1, 1)},
    {'startAfter': '2020-01-01'},
    {'batchStart': -1}, {'batchStart': None}, {'batchSize': -2},
    {'batchSize': 1.5}, {'batchStart': True},
])
def test_bad_query_arguments_raise_invalid_argument_error(kw):
    container = filled()
    with pytest.raises(errors.InvalidArgumentError):
        container.getRevisionHistory('a', **kw)


def test_get_revision_checks_its_arguments():
    container = filled()
    for name in (1, None, ('a',)):
        with pytest.raises(errors.InvalidArgumentError, match='str'):
            container.getRevision(name, 0)
        with pytest.raises(errors.InvalidArgumentError, match='str'):
            container[name] = make()
    with pytest.raises(errors.InvalidArgumentError, match='version'):
        container.getRevision('a', '0')


def test_outdated_revisions_cannot_be_updated_or_forked():
    container = filled(revisions=2)
    old = container.getRevision('a', 0)
    with pytest.raises(errors.ImmutableStateError, match='outdated'):
        edit(old, 'fork')
    with pytest.raises(errors.ImmutableStateError, match='not the current'):
        container.addRevision(make('fork'), old=old)
    current = container['a']
    with pytest.raises(errors.InvalidArgumentError, match='history already'):
        container.addRevision(current, old=current)
    assert container.getNumberOfRevisions('a') == 2


# -- deletion, revival, rollback ---------------------------------------------

def test_delete_marks_the_current_revision_deleted_and_keeps_all():
    container = filled(('a', 'b', 'c'), revisions=2)
    current = container['b']
    del container['b']
    assert list(container) == ['a', 'c'] and len(container) == 2
    assert 'b' not in container
    assert current.__im_state__ == IM_STATE_DELETED
    assert current.__im_end_on__ > current.__im_start_on__
    assert container.getCurrentRevision('b') is None
    assert container.getNumberOfRevisions('b') == 2
    assert texts(container.getRevisionHistory('b')) == ['b0', 'b1']
    assert container.getRevision('b', 1) is current
    with pytest.raises(errors.ImmutableStateError):
        edit(current, 'again')
    with pytest.raises(KeyError):
        del container['b']


def test_with_deleted_items_shows_deleted_names():
    container = filled(('a', 'b', 'c', 'd'), revisions=2)
    del container['b']
    del container['d']
    view = container.withDeletedItems()
    assert list(view) == ['a', 'b', 'c', 'd'] and len(view) == 4
    assert view['b'] is container.getRevision('b', 1)
    assert view['b'].__im_state__ == IM_STATE_DELETED
    assert 'd' in view and 'x' not in view and 3 not in view
    assert view.getNumberOfRevisions('b') == 2
    assert texts(view.getRevisionHistory('d', reversed=True)) == ['d1', 'd0']
    assert view.withDeletedItems() is view
    assert 'with deleted items' in repr(view)
    # Writes go to the container.
    view['e'] = make('e0')
    del view['a']
    assert list(container) == ['c', 'e']
    assert list(view) == ['a', 'b', 'c', 'd', 'e']
    with pytest.raises(KeyError):
        del view['b']
    with pytest.raises(AttributeError):
        view._live


def test_rollback_revives_a_deleted_revision():
    container = filled(revisions=2)
    current = container['a']
    del container['a']
    container.rollbackToRevision(current)
    assert container['a'] is current and len(container) == 1
    assert current.__im_state__ == IM_STATE_LOCKED
    assert current.__im_end_on__ is None
    assert list(container.withDeletedItems()) == ['a']
    assert edit(current, 'a2').__im_version__ == 2


def test_assigning_a_deleted_name_continues_its_history():
    container = filled(revisions=2)
    deleted = container['a']
    del container['a']
    container['a'] = new = make('back')
    assert new.__im_version__ == 2 and container['a'] is new
    assert deleted.__im_state__ == IM_STATE_DELETED
    assert len(container.withDeletedItems()) == 1


@pytest.mark.parametrize('target', [0, 1, 2, 3])
def test_rollback_removes_later_revisions_from_every_index(target):
    container = filled(revisions=5)
    revisions = list(container.getRevisionHistory('a'))
    newest = revisions[-1]
    end = revisions[-1].__im_start_on__ + datetime.timedelta(seconds=1)
    container.rollbackToRevision(revisions[target])
    kept = revisions[:target + 1]
    assert list(container.getRevisionHistory('a')) == kept
    assert container.getNumberOfRevisions('a') == target + 1
    assert container['a'] is revisions[target]
    assert revisions[target].__im_state__ == IM_STATE_LOCKED
    assert newest.__im_state__ == IM_STATE_RETIRED
    for creator in ('ann', 'bob'):
        assert list(container.getRevisionHistory('a', creator=creator)) == [
            r for r in kept if r.__im_creator__ == creator]
    assert list(container.getRevisionHistory('a', startBefore=end)) == kept
    for gone in range(target + 1, 5):
        with pytest.raises(KeyError):
            container.getRevision('a', gone)
    again = edit(revisions[target], 'again', 'bob')
    assert again.__im_version__ == target + 1
    assert container.getRevision('a', target + 1) is again
    assert list(container.getRevisionHistory('a', creator='bob'))[-1] is again
    assert list(container.getRevisionHistory('a')) == kept + [again]


def test_rollback_without_activate():
    container = filled(revisions=3)
    first, second, third = container.getRevisionHistory('a')
    container.rollbackToRevision(third, activate=False)
    assert container['a'] is third
    container.rollbackToRevision(first, activate=False)
    assert container.getNumberOfRevisions('a') == 1
    assert first.__im_state__ == IM_STATE_RETIRED
    assert container.getCurrentRevision('a') is None
    assert 'a' not in container and 'a' not in container.withDeletedItems()
    container.rollbackToRevision(first)
    assert container['a'] is first and first.__im_state__ == IM_STATE_LOCKED


# -- in a database -----------------------------------------------------------

def test_histories_survive_commit_and_reopen(storage_factory):
    database = im.DB(storage_factory())
    with database.transaction() as conn:
        container = conn.root()['notes'] = RevisionedContainer()
        container['a'] = current = make('a0', 'ann', tags=['x'])
        container['b'] = make('b0', 'ann')
        container['c'] = make('c0', 'bob')
    with database.transaction() as conn:
        container = conn.root()['notes']
        current = container['a']
        for i in range(1, 5):
            current = edit(current, 'a%d' % i, ('ann', 'bob')[i % 2],
                           'edit %d' % i)
        del container['c']
    with database.transaction() as conn:
        container = conn.root()['notes']
        container.rollbackToRevision(container.getRevision('a', 3))
    if storage_factory.keeps_data:
        database.close()
        database = im.DB(storage_factory())
    try:
        conn = open_connection(database)
        conn.cacheMinimize()
        container = conn.root()['notes']
        assert list(container) == ['a', 'b']
        assert list(container.withDeletedItems()) == ['a', 'b', 'c']
        history = list(container.getRevisionHistory('a'))
        assert texts(history) == ['a0', 'a1', 'a2', 'a3']
        assert container['a'] is history[-1]
        assert history[-1].__im_manager__ is container
        assert [r.__im_state__ for r in history] == [IM_STATE_RETIRED] * 3 + [
            IM_STATE_LOCKED]
        assert texts(container.getRevisionHistory('a', creator='bob')) == [
            'a1', 'a3']
        assert texts(container.getRevisionHistory('a', comment='edit 2')) == [
            'a2']
        assert history[0].__im_start_on__.tzinfo is not None
        assert history[0].tags == history[3].tags == ['x']
        assert container.withDeletedItems()['c'].__im_state__ == \
            IM_STATE_DELETED
        with pytest.raises(AttributeError):
            history[-1].text = 'locked'
        close_connection(conn)
        with database.transaction() as conn:
            container = conn.root()['notes']
            edit(container['a'], 'a4', 'cy')
            container.rollbackToRevision(container.getRevision('c', 0))
        with database.transaction() as conn:
            container = conn.root()['notes']
            assert texts(container.getRevisionHistory('a', creator='cy')) == [
                'a4']
            assert list(container) == ['a', 'b', 'c']
            assert container.getNumberOfRevisions('a') == 5
    finally:
        database.close()


@pytest.mark.history
def test_rolled_back_revisions_stay_readable_by_time_travel(db):
    with db.transaction() as conn:
        container = conn.root()['notes'] = RevisionedContainer()
        container['a'] = current = make('a0')
        for i in (1, 2):
            current = edit(current, 'a%d' % i, 'ann')
    before_rollback = db.lastTransaction()
    with db.transaction() as conn:
        container = conn.root()['notes']
        container.rollbackToRevision(container.getRevision('a', 0))
    with db.transaction() as conn:
        container = conn.root()['notes']
        assert texts(container.getRevisionHistory('a')) == ['a0']
        assert texts(container.getRevisionHistory('a', creator='ann')) == []
    past = db.open(at=before_rollback)
    try:
        container = past.root()['notes']
        assert texts(container.getRevisionHistory('a')) == ['a0', 'a1', 'a2']
        assert texts(container.getRevisionHistory('a', creator='ann')) == [
            'a1', 'a2']
        assert container['a'].text == 'a2'
        assert container.getRevision('a', 2).__im_state__ == IM_STATE_LOCKED
    finally:
        past.close()


# -- conflicts ---------------------------------------------------------------

def _two_connections(db):
    with db.transaction() as conn:
        container = conn.root()['notes'] = RevisionedContainer()
        for name in ('a', 'b'):
            container[name] = make(name + '0')
            edit(container[name], name + '1')
    return open_connection(db), open_connection(db)


def _update(conn, name='a'):
    container = conn.root()['notes']
    edit(container[name], 'by %s' % id(conn), 'ann', 'concurrent')


def _delete(conn, name='a'):
    del conn.root()['notes'][name]


def _rollback(conn, name='a'):
    container = conn.root()['notes']
    container.rollbackToRevision(container.getRevision(name, 0))


def _assign(conn, name='a'):
    conn.root()['notes'][name] = make('assigned')


@pytest.mark.parametrize('first, second', [
    (_update, _update), (_update, _delete), (_delete, _update),
    (_rollback, _update), (_update, _rollback), (_assign, _update),
    (_rollback, _rollback), (_delete, _delete),
], ids=lambda f: f.__name__.strip('_'))
def test_two_changes_of_one_history_conflict(db, first, second):
    one, two = _two_connections(db)
    try:
        first(one)
        second(two)
        one.transaction_manager.commit()
        with pytest.raises(errors.ConflictError):
            two.transaction_manager.commit()
        two.transaction_manager.abort()
        container = two.root()['notes']
        history = list(container.getRevisionHistory('a'))
        # Exactly the first transaction's change: no fork, no merge.
        assert [r.__im_version__ for r in history] == list(range(len(
            history)))
        assert sum(r.__im_state__ == IM_STATE_LOCKED for r in history) <= 1
        assert container.getNumberOfRevisions('a') == len(history)
    finally:
        close_connection(one)
        close_connection(two)


def test_changes_of_different_histories_both_commit(db):
    one, two = _two_connections(db)
    try:
        _update(one, 'a')
        _update(two, 'b')
        one.transaction_manager.commit()
        two.transaction_manager.commit()
    finally:
        close_connection(one)
        close_connection(two)
    with db.transaction() as conn:
        container = conn.root()['notes']
        assert container.getNumberOfRevisions('a') == 3
        assert container.getNumberOfRevisions('b') == 3
        assert [container[n].__im_version__ for n in container] == [2, 2]


def test_outdated_revision_in_a_stale_connection_cannot_be_updated(db):
    one, two = _two_connections(db)
    try:
        stale = two.root()['notes']['a']
        _update(one)
        one.transaction_manager.commit()
        two.transaction_manager.begin()
        with pytest.raises(errors.ImmutableStateError):
            edit(stale, 'late')
    finally:
        close_connection(one)
        close_connection(two)


def test_long_histories_read_backwards_in_chunks():
    # Reversed queries read the BTrees forward, a chunk at a time.
    container = RevisionedContainer()
    container['a'] = current = make('0', 'ann', 'even')
    for i in range(1, 150):
        current = edit(current, str(i), ('ann', 'bob', 'cy')[i % 3],
                       ('even', 'odd')[i % 2])
    history = list(container.getRevisionHistory('a'))
    assert texts(history) == [str(i) for i in range(150)]
    for creator, comment in ((None, None), ('bob', None), (None, 'odd'),
                             ('ann', 'even')):
        selected = [r for r in history
                    if creator in (None, r.__im_creator__)
                    and comment in (None, r.__im_comment__)][::-1]
        for start, size in ((0, None), (3, 70), (60, 5), (140, 20)):
            assert list(container.getRevisionHistory(
                'a', creator=creator, comment=comment, reversed=True,
                batchStart=start,
                batchSize=size)) == selected[start:None if size is None
                                             else start + size]
