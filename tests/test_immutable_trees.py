"""objstore.immutable_trees: stable_hash, TrieMap and TrieVector against
dict and list (copies included), the token rules, and persistence through a
real DB: other processes with other hash seeds, and the bytes one change
writes."""
import copy
import datetime
import numbers
import os
import pickle
import subprocess
import sys
import uuid
from collections import namedtuple
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
import transaction
from hypothesis import given, settings, strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine, invariant, precondition, rule)
from persistent import Persistent

from objstore.db import DB
from objstore.immutable_trees import TrieMap, TrieVector, stable_hash
from objstore.storages.file import FileStorage
from objstore.storages.memory import MemoryStorage

from db_fixtures import db, storage_factory  # noqa: F401 -- fixtures

TESTS = Path(__file__).parent
NAN = float('nan')
TOKENS = [object(), object(), object()]


class SmallMap(TrieMap):
    """Tiny nodes, so that a few keys make a deep tree."""
    LEAF_SIZE = BRANCH_SIZE = 3


class SmallVector(TrieVector):
    LEAF_SIZE = BRANCH_SIZE = 3


class Shown:
    """Shows the class in failing examples."""

    def __repr__(self):
        return '%s(%s)' % (type(self).__name__, super().__repr__())


class StrSub(Shown, str):
    """Keeps str's == and hash: equal to the plain str."""


class IntSub(Shown, int):
    pass


class Caseless(Shown, str):
    """Its own == and hash: equal to any str with the same lower case.
    Made from lower case only: Caseless('B') == StrSub('b') but not the
    other way round, and a dict holding both finds either for 'b'."""

    def __eq__(self, other):
        return isinstance(other, str) and self.lower() == other.lower()

    def __hash__(self):
        return hash(self.lower())


class Approx:
    """Not a number, yet equal to the numbers equal to ``n`` and hashing
    like them. (Equal to all of them: where == is not an equivalence, a
    dict finds whichever equal key its probe order meets first.)"""

    def __init__(self, n):
        self.n = n

    def __eq__(self, other):
        if isinstance(other, Approx):
            return other.n == self.n
        return isinstance(other, numbers.Number) and other == self.n

    def __hash__(self):
        return hash(self.n)

    def __repr__(self):
        return 'Approx(%r)' % self.n


class Ident:
    """Equal only to itself."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return 'Ident(%r)' % self.name


class Holder(Persistent):
    pass


Point = namedtuple('Point', 'x y')
IDENTS = [Ident('a'), Ident('b')]
# Hashes that collide: hash(-1) == hash(-2), and multiples of 2**61 - 1
# all hash to 0.
COLLIDING = [-1, -2] + [k * (2 ** 61 - 1) for k in range(5)]

KEYS = st.one_of(
    st.integers(-3, 12),
    st.integers(-3, 12).map(float),
    st.booleans(),
    st.sampled_from(COLLIDING),
    st.sampled_from(['', 'a', 'b', 'ab', 'A']),
    st.sampled_from(['a', 'b']).map(StrSub),
    st.sampled_from(['a', 'b']).map(Caseless),
    st.integers(-2, 3).map(IntSub),
    st.integers(0, 3).map(Approx),
    st.tuples(st.integers(0, 2), st.integers(0, 2)),
    st.tuples(st.integers(0, 2), st.integers(0, 2)).map(lambda t: Point(*t)),
    st.tuples(st.sampled_from(['a', StrSub('a')]), st.integers(0, 1)),
    st.frozensets(st.integers(0, 2), max_size=2),
    st.sampled_from([None, NAN, IDENTS[0], IDENTS[1], Decimal(2),
                     Fraction(1, 2), 0.5, b'a', datetime.date(2020, 1, 1)]))
TOKEN = st.sampled_from(TOKENS)


def same_items(actual, expected):
    """The same key objects, in the same order, with equal values."""
    actual, expected = list(actual), list(expected)
    assert [id(k) for k, _ in actual] == [id(k) for k, _ in expected]
    assert [v for _, v in actual] == [v for _, v in expected]


# -- stable_hash ---------------------------------------------------------

def test_equal_numbers_of_every_type_hash_alike():
    for forms in [(1, 1.0, True, Decimal(1), Fraction(1), complex(1, 0)),
                  (0, 0.0, -0.0, False, Decimal('0.00'), Fraction(0)),
                  (0.5, Decimal('0.5'), Fraction(1, 2), complex(0.5, 0)),
                  (-7, -7.0, Decimal(-7), Fraction(-14, 2)),
                  (2 ** 70, float(2 ** 70), Decimal(2 ** 70)),
                  (float('inf'), Decimal('Infinity'))]:
        assert len({stable_hash(x) for x in forms}) == 1, forms


@given(st.integers() | st.fractions() | st.floats(
    allow_nan=False, allow_infinity=False) | st.decimals(
    allow_nan=False, allow_infinity=False))
def test_a_number_hashes_as_its_float_and_fraction_when_equal(x):
    h = stable_hash(x)
    assert 0 <= h < 2 ** 64
    exact = Fraction(x)
    assert stable_hash(exact) == h
    if float(exact) == x:
        assert stable_hash(float(exact)) == h


VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 2) | st.sampled_from(
        [0.0, 1.0, 2.0, 0.5, Decimal(1), Fraction(1, 2), complex(1, 0)])
    | st.sampled_from(['', 'a', 'é', '\ud800']) | st.sampled_from([b'', b'a']),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=6)


@given(st.lists(VALUES, min_size=2, max_size=6))
def test_equal_covered_values_hash_alike(values):
    for a in values:
        for b in values:
            if a == b:
                assert stable_hash(a) == stable_hash(b), (a, b)


def test_aware_datetimes_hash_their_moment_whatever_the_zone():
    utc = datetime.datetime(2024, 3, 1, 12, 30, tzinfo=datetime.timezone.utc)
    plus2 = utc.astimezone(datetime.timezone(datetime.timedelta(hours=2)))
    naive = datetime.datetime(2024, 3, 1, 12, 30)
    assert utc == plus2 and stable_hash(utc) == stable_hash(plus2)
    assert stable_hash(naive) == stable_hash(naive.replace(fold=1))
    assert stable_hash(naive) != stable_hash(utc)
    assert stable_hash(datetime.date(2024, 3, 1)) == stable_hash(
        datetime.date(2024, 3, 1))
    u = uuid.UUID(int=12345)
    assert stable_hash(u) == stable_hash(uuid.UUID(str(u)))


def test_what_cannot_be_hashed_stably_gives_none():
    for key in [StrSub('a'), IntSub(1), Point(1, 2), Caseless('a'),
                Approx(1), IDENTS[0], [1], {}, set(), NAN,
                complex(NAN, 0), Decimal('NaN'), Decimal('sNaN'),
                (1, StrSub('a')), frozenset([IntSub(1)]), object()]:
        assert stable_hash(key) is None, key


# Stored maps depend on these: a change of the hash makes them unreadable.
GOLDEN = {
    'abc': 0x5995d533d814bbd8, b'abc': 0x1bf244413511b9f6,
    (1, 'a'): 0x00af6f7d98b65468, frozenset({1, 2}): 0xc5e4a26e5048379e,
    None: 0x8ebc40c6f6290b12, 12345: 12345, -1: 2 ** 64 - 2,
    datetime.date(2000, 1, 1): 0xcd9bc3873cd69ca0,
    uuid.UUID(int=1): 0xef55a89a677db27a}
HASH_SCRIPT = '''
import datetime, sys, uuid
from objstore.immutable_trees import stable_hash
keys = ['abc', b'abc', (1, 'a'), frozenset({1, 2}), None, 12345, -1,
        datetime.date(2000, 1, 1), uuid.UUID(int=1), 'x' * 1000, ('é', 2.5)]
print([stable_hash(k) for k in keys])
'''


def hashes_with_seed(seed):
    env = dict(os.environ, PYTHONHASHSEED=str(seed))
    out = subprocess.run([sys.executable, '-c', HASH_SCRIPT], env=env,
                         capture_output=True, text=True, check=True)
    return out.stdout


def test_hashes_are_fixed_and_the_same_under_every_hash_seed():
    first = hashes_with_seed(1)
    assert first == hashes_with_seed(2)
    for key, expected in GOLDEN.items():
        assert stable_hash(key) == expected, (key, hex(stable_hash(key)))


# -- TrieMap against dict ------------------------------------------------

class MapMachine(RuleBasedStateMachine):
    """A SmallMap and its copies against dicts."""

    def __init__(self):
        super().__init__()
        self.map, self.model = SmallMap(), {}
        self.frozen = []        # (copy or original, items it must keep)

    @rule(key=KEYS, value=st.integers(), token=TOKEN)
    def set(self, key, value, token):
        self.map.set(key, value, token)
        self.model[key] = value

    @rule(key=KEYS, token=TOKEN)
    def delete(self, key, token):
        if key in self.model:
            self.map.delete(key, token)
            del self.model[key]
        else:
            with pytest.raises(KeyError):
                self.map.delete(key, token)

    @rule(pairs=st.lists(st.tuples(KEYS, st.integers()), max_size=8),
          token=TOKEN)
    def update(self, pairs, token):
        self.map.update(pairs, token)
        self.model.update(pairs)

    @rule(key=KEYS)
    def look_up(self, key):
        assert (key in self.map) == (key in self.model)
        assert self.map.get(key, 'missing') == self.model.get(key, 'missing')
        if key not in self.model:
            with pytest.raises(KeyError):
                self.map[key]

    @rule(keep_original=st.booleans())
    def copy(self, keep_original):
        # Either one may go on changing; the other must not see it.
        other = self.map.copy()
        if keep_original:
            other, self.map = self.map, other
        self.frozen.append((other, list(self.model.items())))

    @invariant()
    def agrees(self):
        same_items(self.map.items(), self.model.items())
        assert len(self.map) == len(self.model)
        assert list(self.map.values()) == list(self.model.values())
        assert [id(k) for k in reversed(self.map)] == [
            id(k) for k in reversed(self.model)]
        for frozen, items in self.frozen:
            same_items(frozen.items(), items)


TestMapMachine = MapMachine.TestCase
TestMapMachine.settings = settings(max_examples=150, stateful_step_count=50,
                                   deadline=None)


def test_update_of_an_empty_map_builds_it_at_once_with_dict_semantics():
    pairs = [(i % 50, i) for i in range(200)] + [
        (StrSub('k'), 1), ('k', 2), (1.0, 'one'), (NAN, 'nan')]
    m = TrieMap()
    m.update(pairs, TOKENS[0])
    same_items(m.items(), dict(pairs).items())
    m.update({'new': 1, 3: 'three'}, TOKENS[0])
    expected = dict(pairs)
    expected.update({'new': 1, 3: 'three'})
    same_items(m.items(), expected.items())


def test_mapping_api():
    m = TrieMap()
    for i in range(100):
        m.set('k%d' % i, i, TOKENS[0])
    assert m == {'k%d' % i: i for i in range(100)}
    assert m.get('nope') is None and 'k5' in m.keys()
    assert ('k5', 5) in m.items() and ('k5', 6) not in m.items()
    assert 99 in m.values()
    assert repr(TrieMap()) == 'TrieMap({})'
    m.set('k0', 'again', TOKENS[0])
    assert list(m)[0] == 'k0'                   # keeps its place
    m.delete('k0', TOKENS[0])
    m.set('k0', 'last', TOKENS[0])
    assert list(m)[-1] == 'k0' and next(reversed(m)) == 'k0'
    with pytest.raises(TypeError):
        m.set([1], 1, TOKENS[0])                 # unhashable, as in a dict
    with pytest.raises(TypeError):
        [1] in m


def test_iteration_walks_the_map_as_it_was():
    m = TrieMap()
    for i in range(10):
        m.set(i, i, TOKENS[0])
    seen = []
    for key in m:
        seen.append(key)
        m.set(key + 100, 0, TOKENS[0])
    assert seen == list(range(10)) and len(m) == 20


def test_node_contents_are_tuples():
    m = SmallMap()
    v = SmallVector.from_iterable(range(30), TOKENS[0])
    for i in range(30):
        m.set(i, i, TOKENS[0])
    m.set(StrSub('apart'), 1, TOKENS[0])
    for tree in (m, v):
        stack = [tree._root, getattr(tree, '_apart', None)]
        while stack:
            node = stack.pop()
            if node is not None:
                state = node.__getstate__()
                assert state and all(type(x) is tuple
                                     for x in state.values()), state
                stack.extend(getattr(node, 'kids', ()))


# -- TrieVector against list ---------------------------------------------

class VectorMachine(RuleBasedStateMachine):
    """A SmallVector and its copies against lists."""

    def __init__(self):
        super().__init__()
        self.vector, self.model = SmallVector(), []
        self.frozen = []

    @rule(i=st.integers(-30, 30), value=st.integers(), token=TOKEN)
    def insert(self, i, value, token):
        self.vector.insert(i, value, token)
        self.model.insert(i, value)

    @rule(value=st.integers(), token=TOKEN)
    def append(self, value, token):
        self.vector.append(value, token)
        self.model.append(value)

    @rule(values=st.lists(st.integers(), max_size=12), token=TOKEN)
    def extend(self, values, token):
        self.vector.extend(iter(values), token)
        self.model.extend(values)

    @rule(i=st.integers(-30, 30), value=st.integers(), token=TOKEN)
    def set(self, i, value, token):
        if -len(self.model) <= i < len(self.model):
            self.vector.set(i, value, token)
            self.model[i] = value
        else:
            with pytest.raises(IndexError):
                self.vector.set(i, value, token)

    @rule(i=st.integers(-30, 30), token=TOKEN)
    def delete(self, i, token):
        if -len(self.model) <= i < len(self.model):
            self.vector.delete(i, token)
            del self.model[i]
        else:
            with pytest.raises(IndexError):
                self.vector.delete(i, token)

    @rule(start=st.none() | st.integers(-35, 35),
          stop=st.none() | st.integers(-35, 35),
          step=st.none() | st.sampled_from([1, 2, 3, -1, -2]))
    def read(self, start, stop, step):
        assert self.vector[start:stop:step] == self.model[start:stop:step]
        if start is not None and -len(self.model) <= start < len(self.model):
            assert self.vector[start] == self.model[start]

    @precondition(lambda self: len(self.model) > 0)
    @rule(keep_original=st.booleans())
    def copy(self, keep_original):
        other = self.vector.copy()
        if keep_original:
            other, self.vector = self.vector, other
        self.frozen.append((other, list(self.model)))

    @invariant()
    def agrees(self):
        assert list(self.vector) == self.model
        assert list(reversed(self.vector)) == self.model[::-1]
        assert len(self.vector) == len(self.model)
        for frozen, items in self.frozen:
            assert list(frozen) == items


TestVectorMachine = VectorMachine.TestCase
TestVectorMachine.settings = settings(max_examples=150, stateful_step_count=50,
                                      deadline=None)


def test_vector_api():
    v = TrieVector.from_iterable(range(1000), TOKENS[0])
    assert v[-1] == 999 and v[500] == 500 and v[10:13] == [10, 11, 12]
    assert v.index(700) == 700 and v.count(3) == 1 and 3 in v
    with pytest.raises(IndexError):
        v[1000]
    with pytest.raises(TypeError):
        v['a']
    v.insert(-1, 'x', TOKENS[0])
    v.insert(10 ** 6, 'end', TOKENS[0])
    assert v[-3:] == [998, 'x', 999, 'end'][-3:] and len(v) == 1002
    assert repr(TrieVector()) == 'TrieVector([])'
    v.extend(range(200), TOKENS[1])
    assert v[-200:] == list(range(200))


def test_a_vector_built_by_appending_has_full_leaves():
    v = TrieVector()
    for i in range(64 * 20):
        v.append(i, TOKENS[0])
    assert [len(leaf.items) for leaf in v._root.kids] == [64] * 20


# -- token rules ---------------------------------------------------------

def test_nodes_made_under_the_token_change_in_place_others_are_copied():
    m = TrieMap()
    m.update({i: i for i in range(1000)}, TOKENS[0])
    root = m._root
    m.set(5, 'five', TOKENS[0])
    assert m._root is root                      # owned: changed in place
    m.set(6, 'six', TOKENS[1])
    assert m._root is not root and root.kids    # another token: copied
    shared = set(map(id, root.kids)) & set(map(id, m._root.kids))
    assert len(shared) == len(root.kids) - 1    # all but the changed path


def test_changed_values_are_those_of_the_nodes_made_under_the_token():
    m = TrieMap()
    m.update({i: 'old%d' % i for i in range(1000)}, TOKENS[0])
    m.set(StrSub('apart'), 'apart', TOKENS[0])
    copied = m.copy()
    copied.set(7, 'new', TOKENS[1])
    changed = list(copied.changed_values(TOKENS[1]))
    assert 'new' in changed and len(changed) <= TrieMap.LEAF_SIZE
    assert set(m.changed_values(TOKENS[0])) == set(m.values())
    # The copy shares the apart node, made under the first token, but its
    # root and the path to 7 are now the second token's.
    assert list(copied.changed_values(TOKENS[0])) == ['apart']
    v = TrieVector.from_iterable(range(1000), TOKENS[0]).copy()
    v.set(3, 'three', TOKENS[2])
    assert 'three' in set(v.changed_values(TOKENS[2])) and len(
        list(v.changed_values(TOKENS[2]))) <= 64


def test_copy_and_pickle_give_independent_trees():
    m = TrieMap()
    m.update({'a': 1, 'b': 2}, TOKENS[0])
    clone = copy.copy(m)
    m.set('a', 10, TOKENS[0])
    assert dict(clone) == {'a': 1, 'b': 2}
    loaded = pickle.loads(pickle.dumps(m))
    loaded.set('c', 3, TOKENS[0])
    assert dict(m) == {'a': 10, 'b': 2} and list(loaded) == ['a', 'b', 'c']
    v = TrieVector.from_iterable('abc', TOKENS[0])
    assert list(pickle.loads(pickle.dumps(v))) == ['a', 'b', 'c']


# -- persistence ---------------------------------------------------------

class CountingStorage(MemoryStorage):
    """Counts the record bytes each commit stores."""

    written = 0

    def store(self, oid, serial, data, version, transaction):
        self.written += len(data)
        return super().store(oid, serial, data, version, transaction)


@pytest.fixture
def counted():
    storage = CountingStorage()
    db = DB(storage)
    manager = transaction.TransactionManager()
    conn = db.open(manager)
    yield storage, conn, manager
    manager.abort()
    conn.close()
    db.close()


def written_by(storage, manager, change):
    storage.written = 0
    change()
    manager.commit()
    return storage.written


def test_one_change_of_a_committed_100000_entry_map_writes_under_8_kib(
        counted):
    storage, conn, manager = counted
    holder = conn.root.holder = Holder()
    holder.map = TrieMap()
    for i in range(100000):
        holder.map.set('key%d' % i, i, TOKENS[0])
    manager.commit()
    original = holder.map

    def change(key, value=None, delete=False):
        def run():
            new = holder.map.copy()
            token = object()
            if delete:
                new.delete(key, token)
            else:
                new.set(key, value, token)
            holder.map = new
        return written_by(storage, manager, run)

    assert change('key777', -1) <= 8192
    assert change('a new key', 1) <= 8192
    assert change('key778', delete=True) <= 8192
    assert original['key777'] == 777 and 'a new key' not in original
    assert len(original) == 100000 and original['key778'] == 778
    reader = conn.db().open(transaction.TransactionManager())
    try:
        fresh = reader.root.holder.map
        assert fresh['key777'] == -1 and len(fresh) == 100000
        assert list(fresh)[-1] == 'a new key'
    finally:
        reader.close()


def test_one_change_of_a_committed_vector_writes_under_8_kib(counted):
    storage, conn, manager = counted
    holder = conn.root.holder = Holder()
    holder.vector = TrieVector.from_iterable(range(100000), TOKENS[0])
    manager.commit()
    original = holder.vector
    for change in (lambda v, t: v.set(5000, 'x', t),
                   lambda v, t: v.insert(60000, 'y', t),
                   lambda v, t: v.delete(0, t)):
        def run():
            holder.vector = holder.vector.copy()
            change(holder.vector, object())
        assert written_by(storage, manager, run) <= 8192
    assert original[5000] == 5000 and len(original) == 100000
    assert holder.vector[4999] == 'x' and holder.vector[59999] == 'y'


def test_loaded_nodes_are_never_owned(counted):
    storage, conn, manager = counted
    holder = conn.root.holder = Holder()
    holder.map = TrieMap()
    holder.map.update({i: i for i in range(500)}, TOKENS[0])
    manager.commit()
    reader_manager = transaction.TransactionManager()
    reader = conn.db().open(reader_manager)
    try:
        loaded = reader.root.holder.map
        # The token that built the map: loaded nodes are copied anyway.
        assert written_by(storage, reader_manager,
                          lambda: loaded.set(3, 'x', TOKENS[0])) == 0
        assert holder.map[3] == 3 and loaded[3] == 'x'
        conn.cacheMinimize()                    # ghosts lose _v_ too
        assert list(holder.map.changed_values(TOKENS[0])) == []
    finally:
        reader.close()


def test_nodes_changed_in_place_after_a_commit_are_stored_again(db):
    manager = transaction.TransactionManager()
    conn = db.open(manager)
    holder = conn.root.holder = Holder()
    holder.map, holder.vector = SmallMap(), SmallVector()
    for i in range(50):
        holder.map.set(i, i, TOKENS[0])
        holder.vector.append(i, TOKENS[0])
    manager.commit()
    root = holder.map._root
    holder.map.set(7, 'seven', TOKENS[0])       # the same token: in place
    holder.vector.set(7, 'seven', TOKENS[0])
    assert holder.map._root is root
    manager.commit()
    reader = db.open(transaction.TransactionManager())
    try:
        assert reader.root.holder.map[7] == 'seven'
        assert reader.root.holder.vector[7] == 'seven'
    finally:
        reader.close()
        conn.close()


WRITER = '''
import sys, transaction
from objstore.db import DB
from objstore.storages.file import FileStorage
from objstore.immutable_trees import TrieMap, TrieVector
from test_immutable_trees import Holder, StrSub, stored_keys
db = DB(FileStorage(sys.argv[1]))
conn = db.open()
token = object()
holder = conn.root.holder = Holder()
holder.map = TrieMap()
for i, key in enumerate(stored_keys()):
    holder.map.set(key, i, token)
holder.map.set(StrSub('apart'), 'apart', token)
holder.vector = TrieVector.from_iterable(range(20000), token)
transaction.commit()
db.close()
'''
READER = '''
import sys
from objstore.db import DB
from objstore.storages.file import FileStorage
from test_immutable_trees import StrSub, stored_keys
db = DB(FileStorage(sys.argv[1], read_only=True))
holder = db.open().root.holder
keys = stored_keys()
m = holder.map
assert len(m) == len(keys) + 1
assert all(m[key] == i for i, key in enumerate(keys))
assert list(m)[:len(keys)] == keys and m['apart'] == 'apart'
assert m[StrSub('key7')] == 7 and m[7.0] == keys.index(7)
assert list(holder.vector) == list(range(20000))
print('ok', len(m))
db.close()
'''


def stored_keys():
    """Keys of every covered type, for the map other processes read."""
    keys = ['key%d' % i for i in range(10000)] + list(range(5000))
    keys += [('t', i) for i in range(2000)] + [b'b%d' % i for i in range(500)]
    keys += [datetime.date(2000, 1, 1) + datetime.timedelta(days=i)
             for i in range(500)]
    keys += [uuid.UUID(int=i) for i in range(500)] + [None, 0.5, -1]
    return keys


def run_with_seed(script, path, seed):
    path_list = [str(TESTS), os.environ.get('PYTHONPATH', '')]
    env = dict(os.environ, PYTHONHASHSEED=str(seed),
               PYTHONPATH=os.pathsep.join(path_list))
    return subprocess.run([sys.executable, '-c', script, str(path)], env=env,
                          capture_output=True, text=True, check=True).stdout


def test_a_stored_map_reads_back_in_a_process_with_another_hash_seed(
        tmp_path):
    path = tmp_path / 'Data.fs'
    run_with_seed(WRITER, path, 1)
    assert run_with_seed(READER, path, 2).split() == [
        'ok', str(len(stored_keys()) + 1)]
    with DB(FileStorage(path, read_only=True)) as db:
        conn = db.open()
        assert conn.root.holder.map[('t', 5)] == 15005
        conn.close()
