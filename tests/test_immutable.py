"""objstore.immutable: shoobx.immutable's behaviours and messages, the holes
it left open (now closed), and persistence through objstore's DB."""
import datetime
import enum
import re
import subprocess
import sys
from collections import namedtuple

import pytest
import transaction
from zope.interface.verify import verifyClass, verifyObject

import objstore as im
from objstore import errors
from objstore.interfaces import (
    IImmutable, IImmutableObject, IM_MODE_MASTER, IM_MODE_SLAVE,
    IM_STATE_LOCKED, IM_STATE_RETIRED, IM_STATE_TRANSIENT)
from db_fixtures import db, storage_factory  # noqa: F401 -- fixtures

LOCKED = re.escape('Cannot update locked immutable object.')
MASTER_ONLY = re.escape('update() is only available for master immutables.')


class Color(enum.Enum):
    RED = 1


class Answer(im.Immutable):
    def __init__(self, question=None, answer=None, witnesses=None):
        self.question = question
        self.answer = answer
        self.witnesses = witnesses


class Answer2(Answer):
    pass


def make(cls, *args, **kw):
    with im.create(cls) as factory:
        return factory(*args, **kw)


def locked_nested():
    return make(im.ImmutableDict, {
        'answer': 42, 'witnesses': ['Arthur', 'Gag'], 'tags': {'a'},
        'where': {'planet': 'Earth'}, 'pair': ([1], 2)})


# -- the seed README's behaviours ---------------------------------------

def test_package_exports_shoobx_names():
    for name in ('create', 'update', 'failOnNonTransient', 'ImmutableBase',
                 'Immutable', 'ImmutableDict', 'ImmutableList',
                 'ImmutableSet'):
        assert getattr(im, name) is getattr(im.immutable, name)
    assert im.interfaces.IM_STATE_RETIRED == IM_STATE_RETIRED
    assert {'DB', 'open', 'connection'} <= set(im.__all__)


def test_create_locks_and_update_gives_a_new_locked_object():
    with im.create(im.ImmutableDict) as factory:
        answer = factory({'question': 'q', 'answer': 0})
    assert answer.__im_state__ == IM_STATE_LOCKED
    with pytest.raises(AttributeError, match=LOCKED):
        answer['answer'] = 42
    orig = answer
    with im.update(answer) as answer:
        answer['answer'] = 42
    assert answer['answer'] == 42 and orig['answer'] == 0
    assert orig is not answer
    assert answer.__im_state__ == IM_STATE_LOCKED


def test_values_are_conformed_and_sub_objects_are_locked_slaves():
    answer = locked_nested()
    witnesses = answer['witnesses']
    assert isinstance(witnesses, im.ImmutableList)
    assert isinstance(answer['tags'], im.ImmutableSet)
    assert isinstance(answer['where'], im.ImmutableDict)
    assert witnesses.__im_mode__ == IM_MODE_SLAVE
    assert witnesses.__im_state__ == IM_STATE_LOCKED
    with pytest.raises(AttributeError, match=LOCKED):
        witnesses.append('Deep Thought')
    with pytest.raises(AttributeError, match=MASTER_ONLY):
        with im.update(witnesses):
            pass


def test_immutable_set_readme_example():
    data = im.ImmutableSet({6})
    assert repr(data) == '{6}'
    with im.update(data) as data:
        data.discard(6)
        data.add(9)
    assert repr(data) == '{9}'
    assert repr(im.ImmutableSet()) == 'set()'


def test_custom_immutable_built_directly_is_transient():
    answer = Answer('The Answer', 42, ['Arthur', 'Gag'])
    assert answer.__im_state__ == IM_STATE_TRANSIENT
    assert isinstance(answer.witnesses, im.ImmutableList)
    answer = make(Answer, 'The Answer', 42)
    with pytest.raises(AttributeError, match=LOCKED):
        answer.answer = 54
    with im.update(answer) as answer:
        answer.answer = 54
    assert answer.answer == 54


def test_update_of_a_transient_object_yields_itself_and_nests():
    obj = make(im.ImmutableBase)
    with im.update(obj) as second:
        second.answer = 42
        with im.update(second) as third:
            third.answer = 84
        second.answer = 99
    assert third is second and second is not obj
    assert second.answer == 99 and second.__im_state__ == IM_STATE_LOCKED


def test_update_clone_is_deep_and_original_stays_locked():
    obj = make(Answer, 'q', 1, ['a'])
    with im.update(obj) as new:
        with pytest.raises(AttributeError, match=LOCKED):
            obj.answer = 2
        new.witnesses.append('b')
    assert new.witnesses is not obj.witnesses
    assert list(obj.witnesses) == ['a'] and list(new.witnesses) == ['a', 'b']


def test_update_block_that_raises_leaves_no_change():
    obj = make(Answer, 'q', 1)
    with pytest.raises(KeyError):
        with im.update(obj) as new:
            new.answer = 2
            raise KeyError('x')
    assert obj.answer == 1 and new.__im_state__ == IM_STATE_TRANSIENT


def test_create_modes_finalize_and_hooks():
    calls = []

    class Hooked(im.Immutable):
        def __im_after_create__(self, *args, **kw):
            calls.append(('create', self.__im_state__, args, kw))

        def __im_before_update__(self, clone, *args, **kw):
            calls.append(('before', clone.__im_state__, args, kw))

        def __im_after_update__(self, clone, *args, **kw):
            calls.append(('after', clone.__im_state__, args, kw))

    with Hooked.__im_create__(IM_MODE_SLAVE, False, 'c', x=1) as factory:
        slave = factory()
    assert slave.__im_mode__ == IM_MODE_SLAVE
    assert slave.__im_state__ == IM_STATE_TRANSIENT
    assert factory.created == [slave]
    obj = make(Hooked)
    with im.update(obj, 'who', comment='why'):
        pass
    assert calls == [
        ('create', IM_STATE_TRANSIENT, ('c',), {'x': 1}),
        ('create', IM_STATE_TRANSIENT, (), {}),
        ('before', IM_STATE_TRANSIENT, ('who',), {'comment': 'why'}),
        ('after', IM_STATE_LOCKED, ('who',), {'comment': 'why'})]


def test_master_put_into_an_immutable_is_adopted_or_cloned():
    with im.create(im.ImmutableBase) as factory:
        outer = factory()
        with im.create(im.ImmutableBase, finalize=False) as inner_factory:
            inner = inner_factory()
        outer.inner = inner
    assert outer.inner is inner and inner.__im_mode__ == IM_MODE_SLAVE
    assert inner.__im_state__ == IM_STATE_LOCKED
    question = make(Answer, 'q')
    with im.update(outer) as outer:
        outer.question = question
    assert outer.question is not question
    assert outer.question.__im_mode__ == IM_MODE_SLAVE
    assert question.__im_mode__ == IM_MODE_MASTER


@pytest.mark.parametrize('put', [
    lambda o, s: setattr(o, 'other', s),
    lambda o, s: setattr(o, 'other', {'answer': s}),
    lambda o, s: setattr(o, 'other', [s]),
    lambda o, s: setattr(o, 'other', {s}),
    lambda o, s: setattr(o, 'other', (1, s)),
])
def test_a_slave_cannot_get_a_second_parent(put):
    obj = make(Answer, 'q', 1, {'x'})  # an ImmutableSet: hashable
    with im.update(obj) as new:
        with pytest.raises(ValueError, match='sub-object of another'):
            put(new, new.witnesses)


def test_slave_cannot_be_added_to_collections():
    with im.create(im.ImmutableBase, mode=IM_MODE_SLAVE) as factory:
        slave = factory()
    for coll, add in [(im.ImmutableDict(), lambda c: c.__setitem__('k', slave)),
                      (im.ImmutableList(), lambda c: c.append(slave)),
                      (im.ImmutableList([0]), lambda c: c.insert(0, slave)),
                      (im.ImmutableSet(), lambda c: c.add(slave))]:
        with pytest.raises(errors.InvalidArgumentError):
            add(coll)


def test_conform_keeps_core_immutables_and_refuses_others():
    obj = make(im.ImmutableBase)
    for value in (42, 1.5, 'x', b'x', None, True, datetime.date(2019, 6, 11),
                  datetime.datetime(2019, 6, 11, 11, 3),
                  datetime.timedelta(days=1), Color.RED, (1, 'a')):
        assert obj.__im_conform__(value) is value
    with pytest.raises(ValueError, match='Unable to conform'):
        obj.__im_conform__(object())


def test_conform_uses_im_get():
    class Mutable:
        def __im_get__(self, mode=None):
            with im.create(im.ImmutableBase, finalize=False,
                           mode=mode) as factory:
                return factory()

    obj = make(im.ImmutableBase)
    got = obj.__im_conform__(Mutable())
    assert got.__im_mode__ == IM_MODE_SLAVE
    assert got.__im_state__ == IM_STATE_TRANSIENT

    class Liar:
        def __im_get__(self, mode=None):
            return self

    with pytest.raises(errors.InvalidArgumentError, match='__im_get__'):
        obj.__im_conform__(Liar())


def test_finalize_of_a_locked_object_raises_runtime_error():
    obj = make(im.ImmutableBase)
    with pytest.raises(RuntimeError, match='in state: locked'):
        obj.__im_finalize__()


def test_outdated_object_cannot_be_updated():
    obj = make(im.ImmutableBase)
    obj.__im_set_state__(IM_STATE_RETIRED)
    with pytest.raises(im.immutable.ImmutableStateError, match='outdated'):
        with im.update(obj):
            pass


def test_internal_dunder_attributes_stay_writable_when_locked():
    obj = make(im.ImmutableBase)
    obj.__answer__ = 42
    assert obj.__answer__ == 42
    assert obj.__im_is_internal_attr__('__answer__')
    assert not obj.__im_is_internal_attr__('answer')


def test_fail_on_non_transient():
    class Thing:
        __im_state__ = IM_STATE_TRANSIENT

        @im.failOnNonTransient
        def poke(self):
            return 'poked'

    thing = Thing()
    assert thing.poke() == 'poked'
    thing.__im_state__ = IM_STATE_LOCKED
    with pytest.raises(AttributeError, match=LOCKED):
        thing.poke()


def test_fromkeys_gives_each_key_its_own_value():
    value = make(im.Immutable)
    dct = im.ImmutableDict.fromkeys([41, 42], value)
    assert dct.__im_state__ == IM_STATE_LOCKED
    assert dct[41] is not value and dct[41] is not dct[42]
    assert dict(im.ImmutableDict.fromkeys('ab', 1)) == {'a': 1, 'b': 1}


def test_copy_is_locked_like_its_source_and_shares_locked_items():
    dct = locked_nested()
    copy = dct.copy()
    assert copy == dct and copy is not dct
    assert copy['where'] is dct['where']
    with pytest.raises(AttributeError, match=LOCKED):
        copy['x'] = 1
    lst = make(im.ImmutableList, [[1], 2])
    assert lst.copy()[0] is lst[0]
    transient = im.ImmutableList([[1]])
    assert transient.copy()[0] is not transient[0]
    assert transient.copy().__im_state__ == IM_STATE_TRANSIENT


def test_sort_takes_key_and_reverse():
    lst = make(im.ImmutableList, ['bb', 'a', 'ccc'])
    with im.update(lst) as lst:
        lst.sort(key=len, reverse=True)
    assert lst == ['ccc', 'bb', 'a']


def test_interfaces_are_provided():
    for cls in (im.ImmutableBase, im.ImmutableDict, im.ImmutableList,
                im.ImmutableSet):
        assert verifyClass(IImmutable, cls)
    assert verifyObject(IImmutableObject, make(Answer))
    assert verifyObject(IImmutable, locked_nested())


# -- the holes shoobx.immutable left open -------------------------------

def test_del_of_attribute_or_item_of_a_locked_object_raises():
    obj = make(Answer, 'q', 1)
    with pytest.raises(AttributeError, match=LOCKED):
        del obj.answer
    with pytest.raises(AttributeError, match=LOCKED):
        del obj.__im_mode__
    dct = locked_nested()
    with pytest.raises(AttributeError, match=LOCKED):
        del dct['answer']
    with pytest.raises(AttributeError, match=LOCKED):
        del dct['witnesses'][0]
    with pytest.raises(AttributeError, match=LOCKED):
        del dct['witnesses'][0:1]
    assert obj.answer == 1 and dct['witnesses'] == ['Arthur', 'Gag']
    with im.update(obj) as obj:
        del obj.answer
    assert not hasattr(obj, 'answer')


@pytest.mark.parametrize('operation', [
    lambda d: d['witnesses'].__iadd__(['x']),
    lambda d: d['witnesses'].__imul__(2),
    lambda d: d['tags'].__ior__({'b'}),
    lambda d: d['tags'].__iand__(set()),
    lambda d: d['tags'].__ixor__({'b'}),
    lambda d: d['tags'].__isub__({'a'}),
    lambda d: d.__ior__({'x': 1}),
    lambda d: d['tags'].__ior__(set()),
    lambda d: d['witnesses'].__setitem__(slice(0, 1), ['x']),
    lambda d: d['witnesses'].sort(),
    lambda d: d['witnesses'].reverse(),
    lambda d: d['tags'].pop(),
    lambda d: d['tags'].remove('a'),
    lambda d: d.setdefault('answer', 1),
    lambda d: d.popitem(),
    lambda d: d.update(),
], ids=['list+=', 'list*=', 'set|=', 'set&=', 'set^=', 'set-=', 'dict|=',
        'set|=empty', 'slice=', 'sort', 'reverse', 'set.pop', 'set.remove',
        'setdefault', 'popitem', 'update'])
def test_in_place_operations_on_a_locked_object_raise(operation):
    dct = locked_nested()
    before = repr(dct)
    with pytest.raises(AttributeError, match=LOCKED):
        operation(dct)
    assert repr(dct) == before


def test_in_place_operator_syntax_inside_update():
    dct = locked_nested()
    with im.update(dct) as new:
        new['witnesses'] += ['Deep Thought']
        new['tags'] |= {'b'}
        new |= {'extra': [1]}
    assert new['witnesses'] == ['Arthur', 'Gag', 'Deep Thought']
    assert new['tags'] == {'a', 'b'}
    assert isinstance(new['extra'], im.ImmutableList)
    assert new['extra'].__im_state__ == IM_STATE_LOCKED


def test_slices_of_a_locked_list_are_locked_and_share_locked_items():
    lst = make(im.ImmutableList, [[1], [2], 3])
    part = lst[0:2]
    assert isinstance(part, im.ImmutableList) and part == [[1], [2]]
    assert part.__im_state__ == IM_STATE_LOCKED
    assert part[0] is lst[0]
    with pytest.raises(AttributeError, match=LOCKED):
        part.append(4)
    for derived in (lst + [5], [5] + lst, lst * 2, 2 * lst):
        assert derived.__im_state__ == IM_STATE_LOCKED
    transient = im.ImmutableList([[1]])
    part = transient[:]
    assert part.__im_state__ == IM_STATE_TRANSIENT
    assert part[0] is not transient[0]
    assert part[0].__im_mode__ == IM_MODE_SLAVE


def test_imul_inside_update_clones_nested_items():
    lst = make(im.ImmutableList, [[1]])
    with im.update(lst) as lst:
        lst *= 3
    assert lst == [[1], [1], [1]]
    assert len({id(item) for item in lst}) == 3
    assert all(item.__im_state__ == IM_STATE_LOCKED for item in lst)


def test_mutable_values_inside_tuples_are_conformed():
    Point = namedtuple('Point', 'x y')
    obj = make(Answer, ([1, 2], 'a'), Point([3], 4))
    assert isinstance(obj.question[0], im.ImmutableList)
    assert obj.question[0].__im_state__ == IM_STATE_LOCKED
    assert isinstance(obj.answer, Point)
    with pytest.raises(AttributeError, match=LOCKED):
        obj.question[0].append(3)
    with im.update(obj) as new:
        assert new.question[0].__im_state__ == IM_STATE_TRANSIENT
        new.question[0].append(3)
    assert obj.question[0] == [1, 2] and new.question[0] == [1, 2, 3]
    with pytest.raises(ValueError, match='Unable to conform'):
        make(Answer, (object(),))


def test_frozenset_of_immutables_is_kept_and_others_refused():
    value = frozenset({1, 'a', (2, 3)})
    obj = make(Answer, value)
    assert obj.question is value

    class Hashable:
        pass

    with pytest.raises(ValueError):
        make(Answer, frozenset({Hashable()}))


def test_im_state_cannot_be_written_directly():
    obj = make(Answer, 'q')
    with pytest.raises(AttributeError, match='__im_state__'):
        obj.__im_state__ = IM_STATE_TRANSIENT
    with pytest.raises(AttributeError, match='__im_state__'):
        del obj.__im_state__
    with pytest.raises(RuntimeError, match='never becomes transient'):
        obj.__im_set_state__(IM_STATE_TRANSIENT)
    with pytest.raises(ValueError, match='unknown immutable state'):
        obj.__im_set_state__('open')
    with pytest.raises(AttributeError, match=LOCKED):
        obj.__im_mode__ = IM_MODE_SLAVE
    with pytest.raises(AttributeError, match=LOCKED):
        obj.__dict__ = {}
    with pytest.raises(AttributeError, match=LOCKED):
        obj.__class__ = Answer2
    assert obj.question == 'q' and type(obj) is Answer
    assert obj.__im_state__ == IM_STATE_LOCKED


@pytest.mark.parametrize('obj', [
    im.ImmutableDict({'a': 1}), im.ImmutableList([1]), im.ImmutableSet({1})],
    ids=['dict', 'list', 'set'])
def test_internal_storage_cannot_be_replaced(obj):
    for target in (obj, make(type(obj), obj)):
        with pytest.raises(AttributeError, match='internal storage'):
            target._im_data = {}
        with pytest.raises(AttributeError, match='internal storage'):
            del target._im_data
        assert not hasattr(target, 'data')


@pytest.mark.parametrize('obj, change', [
    (im.ImmutableDict({'a': 1}), lambda d: d.__setitem__('b', 2)),
    (im.ImmutableDict({'a': 1}), lambda d: d.update(b=2)),
    (im.ImmutableDict({'a': 1}), lambda d: d.pop('a')),
    (im.ImmutableList([1]), lambda d: d.append(2)),
    (im.ImmutableList([1]), lambda d: d.__delitem__(0)),
    (im.ImmutableList([2, 1]), lambda d: d.sort()),
    (im.ImmutableSet({1}), lambda d: d.add(2)),
    (im.ImmutableSet({1}), lambda d: d.__ior__({2})),
    (im.ImmutableSet({1}), lambda d: d.difference_update({1})),
], ids=['dict[]=', 'dict.update', 'dict.pop', 'list.append', 'list del',
        'list.sort', 'set.add', 'set|=', 'set.difference_update'])
def test_internal_storage_cannot_be_changed_in_place(obj, change):
    for target in (obj, make(type(obj), obj)):
        before = repr(target)
        with pytest.raises(AttributeError, match='internal storage'):
            change(target._im_data)
        assert repr(target) == before


def test_guards_hold_under_python_O():
    code = (
        'import objstore as im\n'
        'with im.create(im.ImmutableList) as f:\n'
        '    x = f([1])\n'
        'for poke in (lambda: x.append(2), lambda: x.__delitem__(0)):\n'
        '    try:\n'
        '        poke()\n'
        '    except AttributeError:\n'
        '        pass\n'
        '    else:\n'
        '        raise SystemExit("not locked")\n'
        'print("ok")\n')
    out = subprocess.run([sys.executable, '-O', '-c', code],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == 'ok'


def test_no_assert_statements_in_the_modules():
    import ast
    import inspect
    import objstore.immutable_collections
    for module in (im.immutable, objstore.immutable_collections):
        tree = ast.parse(inspect.getsource(module))
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.Assert)]


# -- persistence --------------------------------------------------------

def _reopen(storage_factory, database):
    # A memory storage lives only as long as its DB; a file storage is
    # reopened from disk, so its objects are really loaded again.
    if not storage_factory.keeps_data:
        return database
    database.close()
    return im.DB(storage_factory())


def test_locked_objects_stay_locked_after_store_and_load(storage_factory):
    database = im.DB(storage_factory())
    with database.transaction() as conn:
        conn.root()['answer'] = locked_nested()
        conn.root()['obj'] = make(Answer, 'q', 42, ['Arthur'])
    database = _reopen(storage_factory, database)
    try:
        conn = database.open(transaction.TransactionManager())
        conn.cacheMinimize()
        answer = conn.root()['answer']
        obj = conn.root()['obj']
        assert answer == {'answer': 42, 'witnesses': ['Arthur', 'Gag'],
                          'tags': {'a'}, 'where': {'planet': 'Earth'},
                          'pair': (im.ImmutableList([1]), 2)}
        for value in (answer, answer['witnesses'], answer['tags'],
                      answer['where'], answer['pair'][0], obj,
                      obj.witnesses):
            assert value.__im_state__ == IM_STATE_LOCKED
        assert answer['where'].__im_mode__ == IM_MODE_SLAVE
        with pytest.raises(AttributeError, match=LOCKED):
            answer['where']['planet'] = 'Mars'
        with pytest.raises(AttributeError, match=LOCKED):
            obj.witnesses.append('Gag')
        with pytest.raises(AttributeError, match=LOCKED):
            obj.answer = 1
        conn.transaction_manager.abort()
        conn.close()
    finally:
        database.close()


def test_update_of_a_loaded_object_commits_a_new_object(storage_factory):
    database = im.DB(storage_factory())
    with database.transaction() as conn:
        conn.root()['answer'] = locked_nested()
    with database.transaction() as conn:
        old = conn.root()['answer']
        with im.update(old) as new:
            new['where']['planet'] = 'Mars'
            new['witnesses'].append('Ford')
        conn.root()['answer'] = new
        conn.root()['old'] = old
    database = _reopen(storage_factory, database)
    try:
        with database.transaction() as conn:
            new, old = conn.root()['answer'], conn.root()['old']
            assert new['where'] == {'planet': 'Mars'}
            assert old['where'] == {'planet': 'Earth'}
            assert new['witnesses'] == ['Arthur', 'Gag', 'Ford']
            assert new.__im_state__ == IM_STATE_LOCKED
            assert new['where'].__im_state__ == IM_STATE_LOCKED
    finally:
        database.close()


def test_locked_object_is_not_rewritten_by_a_later_commit(db):  # noqa: F811
    with db.transaction() as conn:
        conn.root()['answer'] = locked_nested()
    with db.transaction() as conn:
        answer = conn.root()['answer']
        serial = answer._p_serial
        with pytest.raises(AttributeError):
            answer['answer'] = 1
        conn.root()['other'] = 1
    with db.transaction() as conn:
        assert conn.root()['answer']._p_serial == serial


def test_ghosts_refuse_writes_and_sets_of_sets_load(storage_factory):
    database = im.DB(storage_factory())
    with database.transaction() as conn:
        conn.root()['obj'] = make(Answer, 'q', 42)
        conn.root()['sets'] = make(im.ImmutableSet, [{42}, {1, 2}])
    database = _reopen(storage_factory, database)
    try:
        conn = database.open(transaction.TransactionManager())
        conn.cacheMinimize()
        obj = conn.root()['obj']
        assert obj._p_status == 'ghost'
        with pytest.raises(AttributeError, match=LOCKED):
            obj.answer = 1
        obj._p_deactivate()
        with pytest.raises(AttributeError, match='__im_state__'):
            obj.__im_state__ = IM_STATE_TRANSIENT
        assert obj.answer == 42 and obj.__im_state__ == IM_STATE_LOCKED
        sets = conn.root()['sets']
        assert sets == {frozenset({42}), frozenset({1, 2})}
        assert frozenset({42}) in sets
        assert all(s.__im_state__ == IM_STATE_LOCKED for s in sets)
        conn.transaction_manager.abort()
        conn.close()
    finally:
        database.close()
