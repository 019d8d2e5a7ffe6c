"""Revisioned immutables, defaultInfo and the simple revision manager."""
import asyncio
import datetime
import threading

import pytest
import transaction
from hypothesis import given, settings, strategies as st
from zope.interface.verify import verifyObject

import objstore as im
from objstore import errors
from objstore.interfaces import (
    IM_STATE_DELETED, IM_STATE_LOCKED, IM_STATE_RETIRED, IM_STATE_TRANSIENT,
    IRevisionedImmutable, IRevisionedImmutableManager)

from db_fixtures import db, storage_factory  # noqa: F401 -- fixtures


class Answer(im.RevisionedImmutable):

    def __init__(self, question=None, answer=None):
        self.question = question
        self.answer = answer


def make(*args, creator=None, comment=None):
    with im.create(Answer, creator=creator, comment=comment) as factory:
        return factory(*args)


def history(manager, n, creator=None):
    """A manager holding ``n`` revisions; returns (manager, revisions)."""
    manager = manager or im.SimpleRevisionedImmutableManager()
    obj = make('q', 0, creator=creator)
    manager.addRevision(obj)
    revisions = [obj]
    for i in range(1, n):
        with im.update(obj, creator, 'rev %d' % i) as obj:
            obj.answer = i
        revisions.append(obj)
    return manager, revisions


# -- the seed README's revisioned examples ------------------------------

def test_readme_revisioned_example():
    data = im.RevisionedMapping()
    data['a'] = answer = make('Answer to the ultimate question')
    assert data['a'] is answer
    assert isinstance(answer.__im_start_on__, datetime.datetime)
    assert answer.__im_end_on__ is None
    assert answer.__im_manager__ is data.getRevisionManager('a')
    assert answer.__im_creator__ is None
    assert answer.__im_comment__ is None

    answer_r1 = answer
    with im.update(answer, 'universe', 'Provide Answer') as answer:
        answer.answer = 42
    assert answer.answer == 42
    assert isinstance(answer.__im_start_on__, datetime.datetime)
    assert answer.__im_end_on__ is None
    assert answer.__im_creator__ == 'universe'
    assert answer.__im_comment__ == 'Provide Answer'
    assert answer_r1.__im_end_on__ == answer.__im_start_on__
    assert answer_r1.__im_state__ == im.interfaces.IM_STATE_RETIRED

    revisions = data.getRevisionManager('a')
    assert len(list(revisions.getRevisionHistory())) == 2
    assert revisions.getCurrentRevision(answer_r1) is answer
    revisions.rollbackToRevision(answer_r1)
    assert len(list(revisions.getRevisionHistory())) == 1
    assert answer_r1.__im_end_on__ is None
    assert answer_r1.__im_state__ == im.interfaces.IM_STATE_LOCKED
    assert data['a'] is answer_r1


def test_interfaces_are_provided():
    manager, (obj,) = history(None, 1)
    assert verifyObject(IRevisionedImmutable, obj)
    assert verifyObject(IRevisionedImmutableManager, manager)


def test_versions_timestamps_and_retirement():
    manager, revs = history(None, 4)
    assert [r.__im_version__ for r in revs] == [0, 1, 2, 3]
    starts = [r.__im_start_on__ for r in revs]
    assert all(s.tzinfo is datetime.timezone.utc for s in starts)
    assert starts == sorted(set(starts))
    assert [r.__im_end_on__ for r in revs[:-1]] == starts[1:]
    assert [r.__im_state__ for r in revs] == [IM_STATE_RETIRED] * 3 + [
        IM_STATE_LOCKED]
    assert manager.getCurrentRevision() is revs[-1]
    assert manager.getNumberOfRevisions() == 4


def test_outdated_revision_cannot_be_updated():
    _, revs = history(None, 2)
    with pytest.raises(errors.ImmutableStateError):
        with im.update(revs[0]) as clone:
            clone.answer = 5


def test_update_without_manager_makes_next_version():
    obj = make('q', 1)
    with im.update(obj, 'me') as new:
        new.answer = 2
    assert new.__im_version__ == 1 and new.__im_creator__ == 'me'
    assert obj.__im_state__ == IM_STATE_LOCKED
    assert new.__im_manager__ is None and new.__im_start_on__ is None


def test_add_revision_refuses_transient_duplicates_and_forks():
    manager, revs = history(None, 2)
    transient = Answer('q')
    assert transient.__im_state__ == IM_STATE_TRANSIENT
    with pytest.raises(errors.ImmutableStateError):
        manager.addRevision(transient)
    with pytest.raises(errors.InvalidArgumentError):
        manager.addRevision(revs[1], old=revs[1])
    with pytest.raises(errors.ImmutableStateError):
        manager.addRevision(make('fork'), old=revs[0])
    assert manager.getNumberOfRevisions() == 2


# -- rollback -------------------------------------------------------------

@pytest.mark.parametrize('target', [0, 1, 2, 3, 4])
def test_rollback_keeps_revisions_up_to_the_target(target):
    manager, revs = history(None, 5)
    manager.rollbackToRevision(revs[target])
    assert list(manager.getRevisionHistory()) == revs[:target + 1]
    assert manager.getNumberOfRevisions() == target + 1
    assert manager.getCurrentRevision() is revs[target]
    assert revs[target].__im_state__ == IM_STATE_LOCKED
    assert revs[target].__im_end_on__ is None
    with im.update(revs[target], 'x') as new:
        new.answer = 'again'
    assert manager.getCurrentRevision() is new
    assert list(manager.getRevisionHistory()) == revs[:target + 1] + [new]


def test_rollback_without_activate_leaves_no_current_revision():
    manager, revs = history(None, 3)
    manager.rollbackToRevision(revs[0], activate=False)
    assert manager.getNumberOfRevisions() == 1
    assert manager.getCurrentRevision() is None
    assert revs[0].__im_state__ == IM_STATE_RETIRED


def test_revision_rolled_out_of_history_refuses_update_before_block_runs():
    manager, revs = history(None, 3)
    manager.rollbackToRevision(revs[0])
    # The current revision left the history: retired, with an end.
    assert revs[2].__im_state__ == IM_STATE_RETIRED
    assert revs[2].__im_end_on__ is not None
    ran = []
    with pytest.raises(errors.ImmutableStateError, match='outdated'):
        with im.update(revs[2]) as clone:
            ran.append(clone)
    assert ran == []
    assert list(manager.getRevisionHistory()) == revs[:1]
    assert manager.getCurrentRevision() is revs[0]


def test_rollback_to_unknown_revision_raises_key_error():
    manager, _ = history(None, 2)
    with pytest.raises(KeyError):
        manager.rollbackToRevision(make('stranger'))


def test_deletion_and_revival_through_the_mapping():
    data = im.RevisionedMapping()
    data['a'] = answer = make('q', 1)
    with im.update(answer) as answer:
        answer.answer = 2
    del data['a']
    assert 'a' not in data and len(data) == 0 and list(data) == []
    with pytest.raises(KeyError):
        data['a']
    with pytest.raises(KeyError):
        del data['a']
    assert answer.__im_state__ == IM_STATE_DELETED
    assert answer.__im_end_on__ is not None
    manager = data.getRevisionManager('a')
    assert manager.getNumberOfRevisions() == 2
    assert manager.getCurrentRevision() is None
    with pytest.raises(errors.ImmutableStateError):
        with im.update(answer):
            pass
    manager.rollbackToRevision(answer)
    assert data['a'] is answer and answer.__im_state__ == IM_STATE_LOCKED
    with pytest.raises(KeyError):
        data.getRevisionManager('missing')


# -- history queries ------------------------------------------------------

def test_history_filters_and_batches():
    manager, revs = history(None, 6)
    with im.update(revs[-1], 'arthur', 'the end') as last:
        last.answer = 'x'
    revs.append(last)
    assert list(manager.getRevisionHistory(creator='arthur')) == [last]
    assert list(manager.getRevisionHistory(comment='rev ')) == revs[1:6]
    assert list(manager.getRevisionHistory(comment='end')) == [last]
    middle = revs[3].__im_start_on__
    assert list(manager.getRevisionHistory(startBefore=middle)) == revs[:3]
    assert list(manager.getRevisionHistory(startAfter=middle)) == revs[4:]
    assert list(manager.getRevisionHistory(reversed=True)) == revs[::-1]
    assert list(manager.getRevisionHistory(
        batchStart=2, batchSize=3)) == revs[2:5]
    assert list(manager.getRevisionHistory(
        reversed=True, batchStart=1, batchSize=2)) == revs[::-1][1:3]
    assert iter(manager.getRevisionHistory()) is not None
    with pytest.raises(errors.InvalidArgumentError):
        manager.getRevisionHistory(batchStart=-1)


# -- defaultInfo ----------------------------------------------------------

def test_default_info_is_honoured_by_create_and_update():
    with im.defaultInfo('arthur', 'made') as info:
        assert (info.creator, info.comment) == ('arthur', 'made')
        obj = make('q')
        with im.update(obj) as new:
            new.answer = 1
        with im.update(new, 'ford') as newer:
            newer.answer = 2
    assert (obj.__im_creator__, obj.__im_comment__) == ('arthur', 'made')
    assert (new.__im_creator__, new.__im_comment__) == ('arthur', 'made')
    assert (newer.__im_creator__, newer.__im_comment__) == ('ford', 'made')
    assert make('q').__im_creator__ is None


def test_default_info_nests_and_restores():
    with im.defaultInfo('outer', 'why'):
        with im.defaultInfo('inner'):
            assert make().__im_creator__ == 'inner'
            assert make().__im_comment__ == 'why'
            with im.defaultInfo(comment='deeper') as info:
                assert (info.creator, info.comment) == ('inner', 'deeper')
        assert make().__im_creator__ == 'outer'
    assert make().__im_creator__ is None


def test_default_info_as_decorator_is_reentrant():
    @im.defaultInfo('decorated')
    def build(depth):
        if depth:
            with im.defaultInfo('nested'):
                build(depth - 1)
        return make().__im_creator__

    assert build(2) == 'decorated'
    assert build(0) == 'decorated'
    assert make().__im_creator__ is None


def test_default_info_is_isolated_between_asyncio_tasks():
    async def worker(name, started, release):
        with im.defaultInfo(name):
            started.set()
            await release.wait()
            return make().__im_creator__

    async def main():
        events = [(asyncio.Event(), asyncio.Event()) for _ in range(3)]
        tasks = [asyncio.create_task(worker('t%d' % i, s, r))
                 for i, (s, r) in enumerate(events)]
        for started, _ in events:
            await started.wait()
        for _, release in events:
            release.set()
        return await asyncio.gather(*tasks)

    assert asyncio.run(main()) == ['t0', 't1', 't2']
    assert make().__im_creator__ is None


def test_default_info_is_isolated_between_threads():
    barrier = threading.Barrier(2)
    seen = {}

    def worker(name):
        with im.defaultInfo(name):
            barrier.wait()
            seen[name] = make().__im_creator__

    threads = [threading.Thread(target=worker, args=(n,)) for n in 'ab']
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {'a': 'a', 'b': 'b'}


# -- persistence ----------------------------------------------------------

def _reopen(storage_factory, database):
    if not storage_factory.keeps_data:
        return database
    database.close()
    return im.DB(storage_factory())


def test_history_survives_store_and_reload(storage_factory):
    database = im.DB(storage_factory())
    with database.transaction() as conn:
        data = conn.root()['data'] = im.RevisionedMapping()
        data['a'] = answer = make('q', 0, creator='arthur')
        for i in range(1, 4):
            with im.update(answer, 'ford', 'step %d' % i) as answer:
                answer.answer = i
    with database.transaction() as conn:
        manager = conn.root()['data'].getRevisionManager('a')
        revs = list(manager.getRevisionHistory())
        manager.rollbackToRevision(revs[1])
    database = _reopen(storage_factory, database)
    try:
        conn = database.open(transaction.TransactionManager())
        conn.cacheMinimize()
        data = conn.root()['data']
        manager = data.getRevisionManager('a')
        revs = list(manager.getRevisionHistory())
        assert [r.answer for r in revs] == [0, 1]
        assert data['a'] is revs[1] is manager.getCurrentRevision()
        assert revs[0].__im_state__ == IM_STATE_RETIRED
        assert revs[1].__im_state__ == IM_STATE_LOCKED
        assert revs[0].__im_creator__ == 'arthur'
        assert revs[1].__im_comment__ == 'step 1'
        assert revs[1].__im_start_on__.tzinfo is not None
        assert revs[1].__im_manager__ is manager
        with pytest.raises(AttributeError):
            revs[1].answer = 9
        conn.transaction_manager.abort()
        conn.close()
        with database.transaction() as conn:
            data = conn.root()['data']
            with im.update(data['a'], 'zaphod') as new:
                new.answer = 'later'
        with database.transaction() as conn:
            manager = conn.root()['data'].getRevisionManager('a')
            assert [r.answer for r in manager.getRevisionHistory()] == [
                0, 1, 'later']
            assert [r.__im_version__ for r in
                    manager.getRevisionHistory(creator='zaphod')] == [2]
    finally:
        database.close()


def test_revisions_share_unchanged_sub_objects_in_storage(db):
    with db.transaction() as conn:
        manager = conn.root()['m'] = im.SimpleRevisionedImmutableManager()
        obj = make('q', ['a', 'b'])
        manager.addRevision(obj)
    with db.transaction() as conn:
        manager = conn.root()['m']
        old = manager.getCurrentRevision()
        with im.update(old) as new:
            new.question = 'other'
    with db.transaction() as conn:
        old, new = conn.root()['m'].getRevisionHistory()
        assert old.question == 'q' and new.question == 'other'
        assert old.answer == new.answer == ['a', 'b']


@pytest.mark.history
def test_rolled_back_revisions_stay_readable_by_time_travel(db):
    with db.transaction() as conn:
        data = conn.root()['data'] = im.RevisionedMapping()
        data['a'] = answer = make('q', 0)
        for i in (1, 2):
            with im.update(answer) as answer:
                answer.answer = i
    before_rollback = db.lastTransaction()
    with db.transaction() as conn:
        manager = conn.root()['data'].getRevisionManager('a')
        manager.rollbackToRevision(next(manager.getRevisionHistory()))
    with db.transaction() as conn:
        manager = conn.root()['data'].getRevisionManager('a')
        assert [r.answer for r in manager.getRevisionHistory()] == [0]
    past = db.open(at=before_rollback)
    try:
        manager = past.root()['data'].getRevisionManager('a')
        assert [r.answer for r in manager.getRevisionHistory()] == [0, 1, 2]
        assert past.root()['data']['a'].answer == 2
    finally:
        past.close()


def test_concurrent_updates_of_one_revision_conflict(db):
    with db.transaction() as conn:
        data = conn.root()['data'] = im.RevisionedMapping()
        data['a'] = make('q', 0)
    first = db.open(transaction.TransactionManager())
    second = db.open(transaction.TransactionManager())
    try:
        for conn, value in ((first, 1), (second, 2)):
            with im.update(conn.root()['data']['a']) as new:
                new.answer = value
        first.transaction_manager.commit()
        with pytest.raises(errors.ConflictError):
            second.transaction_manager.commit()
        second.transaction_manager.abort()
        manager = second.root()['data'].getRevisionManager('a')
        assert [r.answer for r in manager.getRevisionHistory()] == [0, 1]
    finally:
        first.transaction_manager.abort()
        first.close()
        second.close()


# -- a model ----------------------------------------------------------------

_ops = st.lists(st.one_of(
    st.tuples(st.just('update'), st.sampled_from([None, 'a', 'b'])),
    st.tuples(st.just('rollback'), st.integers(0, 30), st.booleans()),
), max_size=25)


@settings(max_examples=60, deadline=None)
@given(_ops)
def test_history_matches_a_list_model(ops):
    manager = im.SimpleRevisionedImmutableManager()
    first = make('q', 0)
    manager.addRevision(first)
    model = [first]
    active = True
    for op in ops:
        if op[0] == 'update':
            if not active:
                continue
            with im.update(model[-1], op[1]) as new:
                new.answer = len(model)
            model.append(new)
        else:
            target = model[op[1] % len(model)]
            manager.rollbackToRevision(target, activate=op[2])
            # Without activate, the current revision stays current and a
            # retired one stays retired.
            active = op[2] or (active and target is model[-1])
            del model[model.index(target) + 1:]
        history_now = list(manager.getRevisionHistory())
        assert history_now == model
        assert manager.getNumberOfRevisions() == len(model)
        assert manager.getCurrentRevision() is (
            model[-1] if active else None)
        for creator in (None, 'a', 'b'):
            expected = [r for r in model if creator is None
                        or r.__im_creator__ == creator]
            assert list(manager.getRevisionHistory(creator=creator)) == \
                expected
            assert list(manager.getRevisionHistory(
                creator=creator, reversed=True, batchStart=1,
                batchSize=2)) == expected[::-1][1:3]
        starts = [r.__im_start_on__ for r in history_now]
        assert starts == sorted(starts)


def test_public_names_and_no_asserts():
    import ast
    import inspect
    for name in im.revisioned.__all__:
        assert getattr(im, name) is getattr(im.revisioned, name)
    tree = ast.parse(inspect.getsource(im.revisioned))
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Assert)]
