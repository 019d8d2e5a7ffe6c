"""Pool objects behave exactly like list, dict and object (hypothesis).

Random operations run on a builtin (the oracle) and on the pool object;
results, exceptions and contents must agree after every operation. The
operations come in groups: changes committed one by one (outside a
transaction), a group committed as one transaction, or a group rolled
back by an exception (the pool object must then equal the builtin as it
was before the group). At the end the pool is reopened and compared
again. The same operations also run on objects in no pool.
"""
import copy
import operator
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from objstore.pool import (
    PersistentDict, PersistentList, PersistentObject, PersistentObjectPool)
from test_pool_support import AVAILABLE_KINDS, factory_for

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

small_ints = st.integers(-3, 6)
indexes = st.integers(-7, 7)
slices = st.builds(slice, st.none() | indexes, st.none() | indexes,
                   st.none() | st.integers(-3, 3).filter(bool))
int_lists = st.lists(small_ints, max_size=5)


def op(label, fn):
    return (label, fn)


def _call(label, *args, **kw):
    return op('%s%r%r' % (label, args, kw or ''),
              lambda target: getattr(target, label)(*args, **kw))


list_ops = st.one_of(
    small_ints.map(lambda v: _call('append', v)),
    int_lists.map(lambda vs: _call('extend', vs)),
    st.tuples(indexes, small_ints).map(lambda a: _call('insert', *a)),
    st.just(_call('pop')),
    indexes.map(lambda i: _call('pop', i)),
    small_ints.map(lambda v: _call('remove', v)),
    st.just(_call('clear')),
    st.just(_call('reverse')),
    st.booleans().map(lambda r: _call('sort', reverse=r)),
    st.just(_call('sort', key=lambda v: -v)),
    small_ints.map(lambda v: _call('index', v)),
    small_ints.map(lambda v: _call('count', v)),
    st.just(_call('copy')),
    st.tuples(indexes, small_ints).map(
        lambda a: op('setitem %r' % (a,),
                     lambda t: operator.setitem(t, a[0], a[1]))),
    st.tuples(slices, int_lists).map(
        lambda a: op('setslice %r' % (a,),
                     lambda t: operator.setitem(t, a[0], a[1]))),
    st.one_of(indexes, slices).map(
        lambda i: op('delitem %r' % (i,), lambda t: operator.delitem(t, i))),
    st.one_of(indexes, slices).map(
        lambda i: op('getitem %r' % (i,), lambda t: t[i])),
    int_lists.map(lambda vs: op('iadd %r' % vs, lambda t: _iadd(t, vs))),
    st.integers(-1, 3).map(lambda n: op('imul %r' % n,
                                        lambda t: _imul(t, n))),
    int_lists.map(lambda vs: op('compare %r' % vs, lambda t: (
        t == vs, t != vs, t < vs, t <= vs, t > vs, t >= vs, vs == t,
        vs < t))),
    int_lists.map(lambda vs: op('add %r' % vs, lambda t: (t + vs, vs + t))),
    st.integers(-1, 3).map(lambda n: op('mul %r' % n,
                                        lambda t: (t * n, n * t))),
    small_ints.map(lambda v: op('in %r' % v, lambda t: v in t)),
    st.just(op('iter', lambda t: (list(t), list(reversed(t)), len(t),
                                  bool(t)))),
)

keys = st.sampled_from(['a', 'b', 'c', 1, 2, (1, 'x'), None])
values = st.one_of(small_ints, st.text(max_size=3), st.none(),
                   st.tuples(small_ints, st.text(max_size=2)))
pairs = st.lists(st.tuples(keys, values), max_size=4)

dict_ops = st.one_of(
    st.tuples(keys, values).map(
        lambda a: op('setitem %r' % (a,),
                     lambda t: operator.setitem(t, a[0], a[1]))),
    keys.map(lambda k: op('delitem %r' % (k,),
                          lambda t: operator.delitem(t, k))),
    keys.map(lambda k: op('getitem %r' % (k,), lambda t: t[k])),
    keys.map(lambda k: _call('get', k)),
    st.tuples(keys, values).map(lambda a: _call('get', *a)),
    keys.map(lambda k: _call('pop', k)),
    st.tuples(keys, values).map(lambda a: _call('pop', *a)),
    st.just(_call('popitem')),
    st.tuples(keys, values).map(lambda a: _call('setdefault', *a)),
    keys.map(lambda k: _call('setdefault', k)),
    pairs.map(lambda p: _call('update', p)),
    pairs.map(lambda p: _call('update', dict(p))),
    st.dictionaries(st.sampled_from(['a', 'x']), values).map(
        lambda kw: _call('update', **kw)),
    st.just(_call('clear')),
    st.just(_call('copy')),
    pairs.map(lambda p: op('ior %r' % p, lambda t: _ior(t, dict(p)))),
    pairs.map(lambda p: op('or %r' % p, lambda t: (t | dict(p),
                                                   dict(p) | t))),
    pairs.map(lambda p: op('eq %r' % p, lambda t: (t == dict(p),
                                                   dict(p) != t))),
    keys.map(lambda k: op('in %r' % (k,), lambda t: k in t)),
    st.just(op('views', lambda t: (list(t), list(t.keys()),
                                   list(t.values()), list(t.items()),
                                   list(reversed(t)), len(t), bool(t)))),
)

names = st.sampled_from(['a', 'b', 'kind', 'shout'])

object_ops = st.one_of(
    st.tuples(names, values).map(
        lambda a: op('setattr %r' % (a,),
                     lambda t: setattr(t, a[0], a[1]))),
    names.map(lambda n: op('delattr %r' % n, lambda t: delattr(t, n))),
    names.map(lambda n: op('getattr %r' % n, lambda t: _attr(t, n))),
    names.map(lambda n: op('hasattr %r' % n, lambda t: hasattr(t, n))),
    st.just(op('kind +=', lambda t: _add_to_kind(t))),
)


def _iadd(target, values):
    target += values
    return None


def _imul(target, n):
    target *= n
    return None


def _ior(target, other):
    target |= other
    return None


def _attr(target, name):
    value = getattr(target, name)
    return value() if callable(value) else value


def _add_to_kind(target):
    target.kind += '!'


class Plain:
    kind = 'k'

    def shout(self):
        return 'shout'


class Thing(PersistentObject):
    kind = 'k'

    def shout(self):
        return 'shout'


def plain_state(obj):
    if isinstance(obj, PersistentList):
        return list(obj)
    if isinstance(obj, PersistentDict):
        return dict(obj)
    if isinstance(obj, (Thing, Plain)):
        return {k: v for k, v in vars(obj).items()
                if not k.startswith(('_p_', '_v_'))}
    return obj


def normal(result):
    if isinstance(result, tuple):
        return tuple(normal(r) for r in result)
    return plain_state(result)


def apply(label_fn, target):
    label, fn = label_fn
    try:
        return normal(fn(target)), None
    except Exception as exc:
        return None, type(exc)


def check_step(step, model, real):
    expected = apply(step, model)
    got = apply(step, real)
    assert got == expected, step[0]
    assert plain_state(real) == plain_state(model), step[0]


class Rollback(Exception):
    pass


groups_of = {
    'list': st.lists(st.tuples(st.sampled_from(['auto', 'txn', 'rollback']),
                               st.lists(list_ops, max_size=6)), max_size=4),
    'dict': st.lists(st.tuples(st.sampled_from(['auto', 'txn', 'rollback']),
                               st.lists(dict_ops, max_size=6)), max_size=4),
    'object': st.lists(st.tuples(st.sampled_from(['auto', 'txn', 'rollback']),
                                 st.lists(object_ops, max_size=6)),
                       max_size=4),
}

makers = {
    'list': (list, lambda pool: pool.new(PersistentList)),
    'dict': (dict, lambda pool: pool.new(PersistentDict)),
    'object': (Plain, lambda pool: pool.new(Thing)),
}


def run_in_pool(kind, storage, groups):
    make_model, make_real = makers[kind]
    with tempfile.TemporaryDirectory() as directory:
        path = directory + '/model.pool'
        factory = factory_for(storage)
        pool = PersistentObjectPool(path, 'x', _storage_factory=factory)
        try:
            model = make_model()
            real = pool.root = make_real(pool)
            for mode, steps in groups:
                if mode == 'auto':
                    for step in steps:
                        check_step(step, model, real)
                    continue
                before = copy.deepcopy(model)
                try:
                    with pool.transaction():
                        for step in steps:
                            check_step(step, model, real)
                        if mode == 'rollback':
                            raise Rollback
                except Rollback:
                    model = before
                assert plain_state(real) == plain_state(model)
        finally:
            pool.close()
        pool = PersistentObjectPool(path, 'w', _storage_factory=factory)
        try:
            assert plain_state(pool.root) == plain_state(model)
        finally:
            pool.close()


def run_detached(kind, groups):
    make_model = makers[kind][0]
    real = {'list': PersistentList, 'dict': PersistentDict,
            'object': Thing}[kind]()
    model = make_model()
    for _mode, steps in groups:
        for step in steps:
            check_step(step, model, real)


def _model_test(kind):
    @SETTINGS
    @given(storage=st.sampled_from(AVAILABLE_KINDS), groups=groups_of[kind])
    def test(storage, groups):
        run_in_pool(kind, storage, groups)
    return test


def _detached_test(kind):
    @settings(max_examples=150, deadline=None)
    @given(groups=groups_of[kind])
    def test(groups):
        run_detached(kind, groups)
    return test


test_persistent_list_behaves_like_list = _model_test('list')
test_persistent_dict_behaves_like_dict = _model_test('dict')
test_persistent_object_behaves_like_object = _model_test('object')
test_list_in_no_pool_behaves_like_list = _detached_test('list')
test_dict_in_no_pool_behaves_like_dict = _detached_test('dict')
test_object_in_no_pool_behaves_like_object = _detached_test('object')
