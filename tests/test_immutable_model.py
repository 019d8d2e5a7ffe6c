"""ImmutableDict, ImmutableList and ImmutableSet against dict, list and set.

Reads must answer as the builtin does; a sequence of mutations inside an
``update()`` block must leave the clone equal to the builtin after the same
mutations and leave the original unchanged and locked.
"""
import operator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import objstore as im
from objstore.immutable_collections import BIG

keys = st.one_of(st.integers(-5, 5), st.text(max_size=2))
leaves = st.one_of(st.integers(-5, 5), st.text(max_size=3), st.none())
values = st.recursive(
    leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(keys, inner, max_size=3),
        st.tuples(inner, inner)),
    max_leaves=6)


def plain(value):
    """The builtin twin of a (possibly nested) immutable value."""
    if isinstance(value, im.ImmutableDict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, im.ImmutableList):
        return [plain(v) for v in value]
    if isinstance(value, im.ImmutableSet):
        return {plain(v) for v in value}
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    return value


def make(cls, data):
    with im.create(cls) as factory:
        return factory(data)


def outcome(func, *args):
    """func(*args) as ('ok', result) or ('error', exception type)."""
    try:
        return 'ok', plain(func(*args))
    except (KeyError, IndexError, ValueError, TypeError) as error:
        return 'error', type(error)


@given(st.dictionaries(keys, values, max_size=6), keys)
def test_dict_reads(data, key):
    dct = make(im.ImmutableDict, data)
    assert plain(dct) == data and dct == make(im.ImmutableDict, data)
    assert list(dct) == list(data) and len(dct) == len(data)
    assert (key in dct) == (key in data)
    assert plain(dct.get(key)) == data.get(key)
    assert outcome(operator.getitem, dct, key) == \
        outcome(operator.getitem, data, key)
    assert list(dct.keys()) == list(data.keys())
    assert [plain(v) for v in dct.values()] == list(data.values())
    assert list(reversed(dct)) == list(reversed(data))
    assert plain(dct | {key: 1}) == data | {key: 1}
    assert plain({key: 1} | dct) == {key: 1} | data
    if all(not isinstance(v, (list, dict)) for v in data.values()):
        assert repr(dct) == repr(data)


dict_ops = st.one_of(
    st.tuples(st.just('set'), keys, values),
    st.tuples(st.just('del'), keys),
    st.tuples(st.just('pop'), keys),
    st.tuples(st.just('setdefault'), keys, values),
    st.tuples(st.just('update'), st.dictionaries(keys, values, max_size=3)),
    st.tuples(st.just('ior'), st.dictionaries(keys, values, max_size=3)),
    st.tuples(st.just('popitem')),
    st.tuples(st.just('clear')),
)


def apply_dict(target, op):
    name, *args = op
    if name == 'set':
        target[args[0]] = args[1]
    elif name == 'del':
        del target[args[0]]
    elif name == 'pop':
        return target.pop(args[0])
    elif name == 'setdefault':
        return target.setdefault(*args)
    elif name == 'update':
        target.update(args[0])
    elif name == 'ior':
        target |= args[0]
    elif name == 'popitem':
        return target.popitem()
    else:
        target.clear()


@settings(max_examples=150)
@given(st.dictionaries(keys, values, max_size=5),
       st.lists(dict_ops, max_size=8))
def test_dict_update_block_matches_dict(data, ops):
    original = make(im.ImmutableDict, data)
    model = dict(data)
    with im.update(original) as clone:
        for op in ops:
            assert outcome(apply_dict, clone, op) == \
                outcome(apply_dict, model, op)
    assert plain(clone) == model and list(clone) == list(model)
    assert plain(original) == data
    assert original.__im_state__ == clone.__im_state__ == 'locked'


@given(st.lists(values, max_size=6), st.integers(-8, 8), st.integers(-8, 8),
       leaves)
def test_list_reads(data, i, j, probe):
    lst = make(im.ImmutableList, data)
    assert plain(lst) == data and lst == make(im.ImmutableList, data)
    assert len(lst) == len(data)
    assert outcome(operator.getitem, lst, i) == \
        outcome(operator.getitem, data, i)
    assert plain(lst[i:j]) == data[i:j] and plain(lst[::-1]) == data[::-1]
    assert (probe in lst) == (probe in data)
    assert lst.count(probe) == data.count(probe)
    assert outcome(lst.index, probe) == outcome(data.index, probe)
    assert plain(lst + [probe]) == data + [probe]
    assert plain([probe] + lst) == [probe] + data
    assert plain(lst * 2) == data * 2
    assert [plain(v) for v in reversed(lst)] == list(reversed(data))
    flat = [v for v in data if not isinstance(v, (list, dict, tuple))]
    flat_list = make(im.ImmutableList, flat)
    assert repr(flat_list) == repr(flat)
    ints = [v for v in flat if isinstance(v, int)]
    assert (make(im.ImmutableList, ints) < [probe] if isinstance(probe, int)
            else True) == (ints < [probe] if isinstance(probe, int) else True)


list_ops = st.one_of(
    st.tuples(st.just('append'), values),
    st.tuples(st.just('insert'), st.integers(-6, 6), values),
    st.tuples(st.just('set'), st.integers(-6, 6), values),
    st.tuples(st.just('setslice'), st.integers(-6, 6), st.integers(-6, 6),
              st.lists(values, max_size=3)),
    st.tuples(st.just('del'), st.integers(-6, 6)),
    st.tuples(st.just('delslice'), st.integers(-6, 6), st.integers(-6, 6)),
    st.tuples(st.just('pop'), st.integers(-6, 6)),
    st.tuples(st.just('remove'), leaves),
    st.tuples(st.just('extend'), st.lists(values, max_size=3)),
    st.tuples(st.just('iadd'), st.lists(values, max_size=3)),
    st.tuples(st.just('imul'), st.integers(-1, 3)),
    st.tuples(st.just('reverse')),
    st.tuples(st.just('sort'), st.booleans()),
    st.tuples(st.just('clear')),
)


def apply_list(target, op):
    name, *args = op
    if name == 'append':
        target.append(args[0])
    elif name == 'insert':
        target.insert(*args)
    elif name == 'set':
        target[args[0]] = args[1]
    elif name == 'setslice':
        target[args[0]:args[1]] = args[2]
    elif name == 'del':
        del target[args[0]]
    elif name == 'delslice':
        del target[args[0]:args[1]]
    elif name == 'pop':
        return target.pop(args[0])
    elif name == 'remove':
        target.remove(args[0])
    elif name == 'extend':
        target.extend(args[0])
    elif name == 'iadd':
        target += args[0]
    elif name == 'imul':
        target *= args[0]
    elif name == 'reverse':
        target.reverse()
    elif name == 'sort':
        target.sort(key=repr, reverse=args[0])
    else:
        target.clear()


@settings(max_examples=150)
@given(st.lists(values, max_size=5), st.lists(list_ops, max_size=8))
def test_list_update_block_matches_list(data, ops):
    original = make(im.ImmutableList, data)
    model = list(data)
    with im.update(original) as clone:
        for op in ops:
            assert outcome(apply_list, clone, op) == \
                outcome(apply_list, model, op)
    assert plain(clone) == model
    assert plain(original) == data
    assert original.__im_state__ == clone.__im_state__ == 'locked'


set_items = st.one_of(st.integers(-5, 5), st.text(max_size=2),
                      st.tuples(st.integers(0, 2), st.integers(0, 2)))


@given(st.sets(set_items, max_size=6), st.sets(set_items, max_size=4),
       set_items)
def test_set_reads(data, other, probe):
    imset = make(im.ImmutableSet, data)
    assert plain(imset) == data and imset == data and data == imset
    assert len(imset) == len(data) and (probe in imset) == (probe in data)
    for op in (operator.or_, operator.and_, operator.sub, operator.xor):
        assert plain(op(imset, other)) == op(data, other)
        assert plain(op(other, imset)) == op(other, data)
        assert op(imset, other).__im_state__ == 'locked'
    for op in (operator.le, operator.lt, operator.ge, operator.gt):
        assert op(imset, other) == op(data, other)
    assert imset.isdisjoint(other) == data.isdisjoint(other)
    assert hash(imset) == hash(frozenset(data))
    if len(data) <= 1:
        assert repr(imset) == repr(data)


set_ops = st.one_of(
    st.tuples(st.sampled_from(['add', 'discard', 'remove']), set_items),
    st.tuples(st.sampled_from(['ior', 'iand', 'isub', 'ixor']),
              st.sets(set_items, max_size=4)),
    st.tuples(st.sampled_from(['pop', 'clear'])),
)


def apply_set(target, op):
    name, *args = op
    if name in ('add', 'discard', 'remove'):
        getattr(target, name)(args[0])
    elif name == 'ior':
        target |= args[0]
    elif name == 'iand':
        target &= args[0]
    elif name == 'isub':
        target -= args[0]
    elif name == 'ixor':
        target ^= args[0]
    elif name == 'pop':
        # Which item set.pop() takes is arbitrary: compare the effect only.
        target.pop()
    else:
        target.clear()


@settings(max_examples=150)
@given(st.sets(set_items, max_size=5), st.lists(set_ops, max_size=8))
def test_set_update_block_matches_set(data, ops):
    original = make(im.ImmutableSet, data)
    model = set(data)
    with im.update(original) as clone:
        for op in ops:
            if op[0] == 'pop' and model:
                value = clone.pop()
                model.discard(value)
                continue
            assert outcome(apply_set, clone, op) == \
                outcome(apply_set, model, op)
    assert plain(clone) == model
    assert plain(original) == data
    assert original.__im_state__ == clone.__im_state__ == 'locked'


@pytest.mark.parametrize('cls, data', [
    (im.ImmutableDict, {'a': [1]}), (im.ImmutableList, [[1]]),
    (im.ImmutableSet, {1})])
def test_model_helpers_see_the_types(cls, data):
    assert plain(make(cls, data)) == data


# -- big collections: the same models across the small/big threshold -----

# Enough plain items to pass BIG, so the storage is a tree from the start
# (pad) or becomes one inside the block (BIG - 2 items, then growth).
pads = st.sampled_from([0, BIG - 2, BIG + 6])


@settings(max_examples=60)
@given(pads, st.dictionaries(keys, values, max_size=5),
       st.lists(dict_ops, max_size=8))
def test_big_dict_update_block_matches_dict(pad, data, ops):
    data = {**{'pad%d' % i: i for i in range(pad)}, **data}
    original = make(im.ImmutableDict, data)
    model = dict(data)
    with im.update(original) as clone:
        for op in ops + [('set', 'grow%d' % i, i) for i in range(4)]:
            assert outcome(apply_dict, clone, op) == \
                outcome(apply_dict, model, op)
    assert plain(clone) == model and list(clone) == list(model)
    assert list(reversed(clone)) == list(reversed(model))
    assert plain(original) == data and list(original) == list(data)
    assert original.__im_state__ == clone.__im_state__ == 'locked'
    if all(not isinstance(v, (list, dict)) for v in model.values()):
        assert repr(clone) == repr(model)


@settings(max_examples=60)
@given(pads, st.lists(values, max_size=5), st.lists(list_ops, max_size=8))
def test_big_list_update_block_matches_list(pad, data, ops):
    data = list(range(pad)) + data
    original = make(im.ImmutableList, data)
    model = list(data)
    with im.update(original) as clone:
        for op in ops + [('append', i) for i in range(4)]:
            assert outcome(apply_list, clone, op) == \
                outcome(apply_list, model, op)
    assert plain(clone) == model and plain(original) == data
    assert clone[pad // 2:] == model[pad // 2:]
    assert original.__im_state__ == clone.__im_state__ == 'locked'


@settings(max_examples=60)
@given(pads, st.sets(set_items, max_size=5), st.lists(set_ops, max_size=8),
       st.sets(set_items, max_size=4))
def test_big_set_update_block_matches_set(pad, data, ops, other):
    data = set(range(100, 100 + pad)) | data
    original = make(im.ImmutableSet, data)
    model = set(data)
    with im.update(original) as clone:
        for op in ops + [('add', -i) for i in range(10, 14)]:
            if op[0] == 'pop' and model:
                model.discard(clone.pop())
                continue
            assert outcome(apply_set, clone, op) == \
                outcome(apply_set, model, op)
    assert plain(clone) == model and plain(original) == data
    for op in (operator.or_, operator.and_, operator.sub, operator.xor,
               operator.le, operator.ge):
        assert plain(op(clone, other)) == op(model, other)
    assert hash(clone) == hash(frozenset(model))
