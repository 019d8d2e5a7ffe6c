"""objstore.pickler: objects <-> ZODB records, checked against ZODB itself."""
import datetime
import itertools
import threading

import pytest
from hypothesis import given, settings, strategies as st
from persistent import Persistent, PickleCache
from persistent.list import PersistentList
from persistent.mapping import PersistentMapping
from persistent.wref import WeakRef

from objstore import errors
from objstore.serialize import dumps_record, loads_record


def persistent_ids(record):
    """The persistent ids of a record, classes imported."""
    found = []
    loads_record(record, persistent_load=lambda pid: found.append(pid))
    return found


def p64(n):
    return n.to_bytes(8, 'big')


class Store:
    """Records by oid plus an oid counter, shared by the jars of one test."""

    def __init__(self):
        self.records = {}
        self.counter = itertools.count(1)


class FakeJar:
    """What the pickler uses of a connection, backed by a dict."""

    database_name = 'unnamed'
    # Read by ZODB's ObjectWriter when the compatibility tests use it.
    xrefs = True
    databases = {}

    def __init__(self, store=None):
        from objstore.pickler import ObjectReader, ObjectWriter
        self.store = store if store is not None else Store()
        self._cache = PickleCache(self, 10000)
        self.writer = ObjectWriter(self)
        self.reader = ObjectReader(self)

    def db(self):
        return self

    def new_oid(self):
        return p64(next(self.store.counter))

    def add(self, obj):
        obj._p_oid = self.new_oid()
        obj._p_jar = self
        self._cache[obj._p_oid] = obj
        return obj._p_oid

    def get_ghost(self, oid, klass):
        obj = self._cache.get(oid)
        if obj is not None:
            return obj
        if klass is None:
            if oid not in self.store.records:
                raise errors.POSKeyError(oid)
            obj = self.reader.new_ghost(oid, self.store.records[oid])
            self._cache[oid] = obj
        else:
            obj = klass.__new__(klass)
            self._cache.new_ghost(oid, obj)
        return obj

    def get(self, oid):
        return self.get_ghost(oid, None)

    # WeakRef.__call__ loads its target with dm[oid].
    __getitem__ = get

    def setstate(self, obj):
        self.reader.set_ghost_state(obj, self.store.records[obj._p_oid])

    def register(self, obj):
        pass

    def commit(self, *objs):
        """Store objs and every new object they reach; the stored oids."""
        stored = []
        pending = list(objs)
        while pending:
            obj = pending.pop(0)
            self.store.records[obj._p_oid] = self.writer.serialize(obj)
            stored.append(obj._p_oid)
            if self._cache.get(obj._p_oid) is None:
                self._cache[obj._p_oid] = obj
            pending.extend(self.writer.new_objects)
            del self.writer.new_objects[:]
        return stored


def reopen(jar, oid):
    """The object oid as a fresh jar on the same records loads it."""
    return FakeJar(jar.store).get(oid)


class Item(Persistent):
    def __init__(self, **kw):
        self.__dict__.update(kw)


class Folder(Persistent):
    def __init__(self):
        self.items = {}
        self.title = 'folder'


class Plain:
    """A non-persistent value stored inside a persistent one."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def __eq__(self, other):
        return type(other) is Plain and other.__dict__ == self.__dict__


class WithNewArgs(Persistent):
    def __new__(cls, size):
        self = Persistent.__new__(cls)
        self.__dict__['size'] = size
        return self

    def __getnewargs__(self):
        return (self.size,)


class Slotted(Persistent):
    __slots__ = ('a', 'b', '__dict__')


# -- round trips ------------------------------------------------------------

def test_persistent_subclass_round_trips_as_a_ghost_then_its_state():
    jar = FakeJar()
    item = Item(name='x', n=3, data={'k': [1, (2, 3)]}, when=datetime.date(2026, 1, 2))
    oid = jar.add(item)
    jar.commit(item)
    loaded = reopen(jar, oid)
    assert type(loaded) is Item
    assert loaded._p_status == 'ghost'
    assert loaded.name == 'x' and loaded.n == 3
    assert loaded.data == {'k': [1, (2, 3)]}
    assert loaded.when == datetime.date(2026, 1, 2)


def test_slots_round_trip():
    jar = FakeJar()
    obj = Slotted()
    obj.a, obj.b, obj.c = 1, [2], 'three'
    oid = jar.add(obj)
    jar.commit(obj)
    loaded = reopen(jar, oid)
    assert (loaded.a, loaded.b, loaded.c) == (1, [2], 'three')


def test_persistent_mapping_and_list_round_trip_with_references():
    jar = FakeJar()
    root = PersistentMapping()
    oid = jar.add(root)
    root['list'] = PersistentList([1, 'two', PersistentMapping(x=3)])
    root['plain'] = Plain(a=1)
    jar.commit(root)
    loaded = reopen(jar, oid)
    assert loaded['list'][:2] == [1, 'two']
    assert loaded['list'][2]['x'] == 3
    assert loaded['plain'] == Plain(a=1)


def test_oobtree_with_buckets_round_trips():
    from BTrees.OOBTree import OOBTree
    jar = FakeJar()
    root = PersistentMapping()
    oid = jar.add(root)
    tree = root['tree'] = OOBTree()
    for i in range(2000):
        tree['k%05d' % i] = Item(i=i)
    stored = jar.commit(root)
    assert len(stored) > 2000 + 2      # root, tree, buckets, items
    loaded = reopen(jar, oid)['tree']
    assert len(loaded) == 2000
    assert list(loaded.keys())[:3] == ['k00000', 'k00001', 'k00002']
    assert loaded['k01234'].i == 1234


def test_records_after_a_big_one_round_trip():
    # A big record makes the writer start a new pickle memo; what it
    # writes next must not refer to anything of the old one.
    jar = FakeJar()
    root = PersistentMapping()
    oid = jar.add(root)
    shared = ('shared', 1)
    root['big'] = PersistentMapping({i: (shared, str(i)) for i in range(20000)})
    root['small'] = [PersistentMapping({'t': shared}) for _ in range(3)]
    jar.commit(root)
    loaded = reopen(jar, oid)
    assert loaded['big'][19999] == (('shared', 1), '19999')
    assert [m['t'] for m in loaded['small']] == [shared] * 3


def test_cycles_and_self_references_round_trip():
    jar = FakeJar()
    a, b = Item(), Item()
    a.other, b.other, a.me = b, a, a
    oid = jar.add(a)
    jar.commit(a)
    loaded = reopen(jar, oid)
    assert loaded.me is loaded
    assert loaded.other.other is loaded


def test_shared_plain_values_stay_shared_within_a_record():
    jar = FakeJar()
    shared = [1, 2]
    item = Item(a=shared, b=shared)
    oid = jar.add(item)
    jar.commit(item)
    loaded = reopen(jar, oid)
    assert loaded.a is loaded.b


# -- references -------------------------------------------------------------

def test_references_carry_the_class_except_for_getnewargs_classes():
    jar = FakeJar()
    item = Item(child=Item(), sized=WithNewArgs(5))
    jar.add(item)
    record = jar.writer.serialize(item)
    child_ref, sized_ref = persistent_ids(record)
    assert child_ref == (item.child._p_oid, Item)
    assert sized_ref == item.sized._p_oid


def test_getnewargs_class_is_recorded_with_its_args_and_rebuilt_with_them():
    jar = FakeJar()
    obj = WithNewArgs(7)
    obj.extra = 'e'
    oid = jar.add(obj)
    jar.commit(obj)
    holder = Item(ref=obj)
    holder_oid = jar.add(holder)
    jar.commit(holder)
    other = FakeJar(jar.store)
    ghost = other.reader.new_ghost(oid, jar.store.records[oid])
    assert ghost._p_status == 'ghost' and ghost.__dict__ == {}
    loaded = other.get(holder_oid).ref
    assert type(loaded) is WithNewArgs
    assert (loaded.size, loaded.extra) == (7, 'e')


def test_new_objects_get_oids_and_the_jar_and_are_listed_in_order():
    jar = FakeJar()
    folder = Folder()
    jar.add(folder)
    first, second = Item(), Item(inner=Item())
    folder.items = {'a': first, 'b': second}
    jar.writer.serialize(folder)
    assert jar.writer.new_objects == [first, second]
    assert all(o._p_jar is jar and len(o._p_oid) == 8 for o in (first, second))
    assert second.inner._p_oid is None     # found when second is stored
    jar.writer.serialize(second)
    assert jar.writer.new_objects[-1] is second.inner
    assert second.inner._p_jar is jar


def test_an_object_already_stored_is_not_new_again():
    jar = FakeJar()
    folder = Folder()
    jar.add(folder)
    folder.items['a'] = Item()
    jar.commit(folder)
    jar.writer.serialize(folder)
    assert jar.writer.new_objects == []


def test_weakref_is_written_as_w_form_and_loads_its_target():
    jar = FakeJar()
    target = Item(name='t')
    holder = Item(target=target, ref=WeakRef(target))
    oid = jar.add(holder)
    jar.commit(holder)
    pids = persistent_ids(jar.store.records[oid])
    assert ['w', (target._p_oid,)] in pids
    loaded = reopen(jar, oid)
    assert loaded.ref() is loaded.target
    assert loaded.ref().name == 't'


def test_weakref_to_a_new_object_adds_the_object():
    jar = FakeJar()
    target = Item(name='only weakly held')
    holder = Item(ref=WeakRef(target))
    oid = jar.add(holder)
    jar.commit(holder)
    assert target._p_jar is jar and target._p_oid in jar.store.records
    assert reopen(jar, oid).ref().name == 'only weakly held'


def test_reference_to_an_object_of_another_jar_names_both_objects():
    jar, other = FakeJar(), FakeJar()
    folder = Folder()
    jar.add(folder)
    foreign = Item()
    other.add(foreign)
    folder.items['x'] = foreign
    with pytest.raises(errors.InvalidObjectReference) as info:
        jar.writer.serialize(folder)
    text = str(info.value)
    assert 'test_pickler.Folder (oid 0x01)' in text
    assert ".items['x'] refers to test_pickler.Item (oid 0x01)" in text
    assert 'another connection' in text


def test_reference_to_an_object_with_an_oid_but_no_jar_is_refused():
    jar = FakeJar()
    folder = Folder()
    jar.add(folder)
    orphan = Item()
    orphan._p_oid = p64(99)
    folder.items['o'] = orphan
    with pytest.raises(errors.InvalidObjectReference, match='no connection'):
        jar.writer.serialize(folder)


# -- unpicklable values -----------------------------------------------------

def _store_error(**attributes):
    jar = FakeJar()
    folder = Folder()
    jar.add(folder)
    folder.__dict__.update(attributes)
    with pytest.raises(errors.SerializationError) as info:
        jar.writer.serialize(folder)
    assert not isinstance(info.value, errors.InvalidObjectReference)
    return str(info.value)


def test_unpicklable_attribute_is_named():
    text = _store_error(callback=lambda: None)
    assert text.startswith('cannot store test_pickler.Folder (oid 0x01): '
                           '.callback is a function, which cannot be pickled')


def test_unpicklable_value_under_a_dict_key_and_attribute_is_named():
    text = _store_error(items={'x': Plain(callback=lambda: None)})
    assert (".items['x'].callback is a function, which cannot be pickled"
            in text)


def test_unpicklable_list_element_is_named_by_index():
    text = _store_error(locks=[1, 2, threading.Lock()])
    assert '.locks[2] is a _thread.lock, which cannot be pickled' in text


def test_unpicklable_value_nested_in_tuples_and_objects_is_named():
    with open(__file__) as f:
        text = _store_error(deep={'a': (0, [Plain(inner={'f': f})])})
    assert ".deep['a'][1][0].inner['f'] is a _io.TextIOWrapper" in text


def test_unpicklable_dict_key_is_named():
    text = _store_error(index={threading.Lock(): 1})
    assert '.index[<unlocked _thread.lock object' in text
    assert '(a dict key) is a _thread.lock' in text


def test_failed_serialize_forgets_the_new_objects_it_found():
    jar = FakeJar()
    folder = Folder()
    jar.add(folder)
    jar.commit(folder)
    earlier, new, weakly = Item(), Item(), Item()
    jar.writer.new_objects.append(earlier)
    ref = WeakRef(weakly)
    folder.items = {'a': new, 'w': ref, 'z': lambda: None}
    with pytest.raises(errors.SerializationError):
        jar.writer.serialize(folder)
    assert jar.writer.new_objects == [earlier]
    assert new._p_oid is None and new._p_jar is None
    assert weakly._p_oid is None and ref.oid is None and ref.dm is None
    del folder.items['z']
    jar.writer.serialize(folder)
    assert jar.writer.new_objects == [earlier, new, weakly]
    assert ref.oid == weakly._p_oid and ref.dm is jar


def test_writer_keeps_working_after_an_error():
    jar = FakeJar()
    folder = Folder()
    jar.add(folder)
    folder.bad = lambda: None
    with pytest.raises(errors.SerializationError):
        jar.writer.serialize(folder)
    del folder.bad
    record = jar.writer.serialize(folder)
    assert jar.reader.get_state(record)['title'] == 'folder'


def test_unimportable_class_of_the_object_is_reported():
    class Local(Persistent):
        pass
    jar = FakeJar()
    obj = Local()
    jar.add(obj)
    with pytest.raises(errors.SerializationError, match='its class cannot be pickled'):
        jar.writer.serialize(obj)


# -- reading ----------------------------------------------------------------

def _record(meta, state, pids=()):
    """A record whose state holds persistent ids (markers -> pids)."""
    markers = {id(m): pid for m, pid in pids}
    return dumps_record(meta, state, persistent_id=lambda o: markers.get(id(o)))


def test_reader_accepts_every_local_reference_form():
    jar = FakeJar()
    target = Item(v=1)
    tid = jar.add(target)
    jar.commit(target)
    marks = [object() for _ in range(5)]
    record = _record(Item, {'refs': marks}, [
        (marks[0], tid), (marks[1], (tid, Item)),
        (marks[2], (tid, ('test_pickler', 'Item'))),
        (marks[3], ['m', ('unnamed', tid, Item)]),
        (marks[4], tid.decode('latin-1')),
    ])
    other = FakeJar(jar.store)
    refs = other.reader.get_state(record)['refs']
    assert all(ref is refs[0] for ref in refs)
    assert refs[0].v == 1


def test_reader_accepts_weak_reference_forms():
    jar = FakeJar()
    target = Item(v=1)
    tid = jar.add(target)
    jar.commit(target)
    marks = [object() for _ in range(4)]
    record = _record(Item, {'refs': marks}, [
        (marks[0], ['w', (tid,)]), (marks[1], ['w', (tid, 'unnamed')]),
        (marks[2], [tid]), (marks[3], ['w', (tid, 'elsewhere')]),
    ])
    refs = FakeJar(jar.store).reader.get_state(record)['refs']
    assert refs[0]().v == refs[1]().v == refs[2]().v == 1
    assert refs[3]() is None           # a database we do not open


def test_weak_reference_into_another_database_is_written_back_unchanged():
    jar = FakeJar()
    mark = object()
    record = _record(Item, {'ref': mark}, [(mark, ['w', (p64(5), 'elsewhere')])])
    item = Item.__new__(Item)
    oid = jar.add(item)
    jar.store.records[oid] = record
    jar.setstate(item)
    assert persistent_ids(jar.writer.serialize(item)) == [['w', (p64(5), 'elsewhere')]]


@pytest.mark.parametrize('pid', [['m', ('other', p64(2), Item)],
                                 ['n', ('other', p64(2))]])
def test_cross_database_references_are_unsupported(pid):
    jar = FakeJar()
    mark = object()
    item = Item.__new__(Item)
    oid = jar.add(item)
    jar.store.records[oid] = _record(Item, {'ref': mark}, [(mark, pid)])
    with pytest.raises(errors.Unsupported) as info:
        jar.setstate(item)
    assert "database 'other'" in str(info.value)
    assert 'cross-database' in str(info.value)


def test_reference_whose_class_now_needs_newargs_loads_the_record():
    jar = FakeJar()
    sized = WithNewArgs(4)
    oid = jar.add(sized)
    jar.commit(sized)
    mark = object()
    # Written when the class had no __getnewargs__: (oid, class).
    record = _record(Item, {'ref': mark}, [(mark, (oid, WithNewArgs))])
    ref = FakeJar(jar.store).reader.get_state(record)['ref']
    assert type(ref) is WithNewArgs and ref.size == 4


def test_reader_takes_a_find_global_to_move_classes():
    from objstore.broken import find_global
    from objstore.pickler import ObjectReader
    moved = {('old.home', 'Item'): Item}
    jar = FakeJar()
    reader = ObjectReader(jar, lambda module, name: moved.get(
        (module, name)) or find_global(module, name))
    record = _record((('old.home', 'Item'), None), {'v': 1})
    assert reader.get_class(record) is Item
    global_form = b'\x80\x03cold.home\nItem\nq\x00.' + _record(None, {'v': 2})[4:]
    assert reader.get_class(global_form) is Item
    ghost = reader.new_ghost(p64(3), global_form)
    assert type(ghost) is Item
    assert reader.get_state(global_form) == {'v': 2}
    assert reader.get_class(_record(Plain, None)) is Plain


def test_class_forms_of_old_records_are_read():
    jar = FakeJar()
    for meta in [Item, (Item, None), (('test_pickler', 'Item'), None),
                 (('test_pickler', 'Item'), ())]:
        record = _record(meta, {'v': 1})
        assert jar.reader.get_class(record) is Item
        ghost = jar.reader.new_ghost(p64(9), record)
        assert type(ghost) is Item and ghost._p_oid == p64(9)


def test_corrupt_record_names_the_oid():
    jar = FakeJar()
    item = Item.__new__(Item)
    oid = jar.add(item)
    jar.store.records[oid] = _record(Item, {'v': 1})[:-5]
    with pytest.raises(errors.SerializationError, match='oid 0x01'):
        jar.setstate(item)
    for junk in [b'not a pickle', b'\x80\x03c\xff\xfe\nX\nq\x00.',
                 b'\x80\x03cno.such.module\nX\nY\nq\x00.']:
        with pytest.raises(errors.SerializationError, match='oid 0x07'):
            jar.reader.new_ghost(p64(7), junk)


class Fussy(Persistent):
    def __setstate__(self, state):
        raise ValueError('no, thanks')


class Secretive(Persistent):
    def __getstate__(self):
        raise ValueError('not telling')


def test_failing_setstate_names_the_oid_and_class():
    jar = FakeJar()
    obj = Fussy.__new__(Fussy)
    oid = jar.add(obj)
    jar.store.records[oid] = _record(Fussy, {'v': 1})
    with pytest.raises(errors.SerializationError) as info:
        jar.setstate(obj)
    assert 'oid 0x01' in str(info.value)
    assert 'test_pickler.Fussy' in str(info.value)
    assert 'no, thanks' in str(info.value)


def test_failing_getstate_names_the_object():
    jar = FakeJar()
    obj = Secretive()
    jar.add(obj)
    with pytest.raises(errors.SerializationError,
                       match=r'test_pickler.Secretive \(oid 0x01\).*not telling'):
        jar.writer.serialize(obj)


def test_unknown_reference_form_is_a_serialization_error():
    jar = FakeJar()
    mark = object()
    item = Item.__new__(Item)
    oid = jar.add(item)
    jar.store.records[oid] = _record(Item, {'r': mark}, [(mark, ['x', ()])])
    with pytest.raises(errors.SerializationError, match='oid 0x01'):
        jar.setstate(item)


def test_missing_referenced_record_says_who_refers_to_it():
    jar = FakeJar()
    mark = object()
    item = Item.__new__(Item)
    oid = jar.add(item)
    jar.store.records[oid] = _record(Item, {'ref': mark}, [(mark, p64(42))])
    with pytest.raises(errors.POSKeyError) as info:
        jar.setstate(item)
    assert str(info.value) == '0x2a (referenced by test_pickler.Item at oid 0x01)'


def test_reader_follows_a_replaced_cache():
    jar = FakeJar()
    target = Item()
    tid = jar.add(target)
    jar.commit(target)
    jar._cache = PickleCache(jar, 100)
    mark = object()
    state = jar.reader.get_state(_record(Item, {'r': mark}, [(mark, tid)]))
    assert state['r'] is jar._cache.get(tid)


# -- compatibility with ZODB ------------------------------------------------

zodb_serialize = pytest.importorskip('ZODB.serialize')


def _sample_graph(jar):
    from BTrees.OOBTree import OOBTree
    root = PersistentMapping()
    oid = jar.add(root)
    tree = root['tree'] = OOBTree()
    for i in range(300):
        tree[i] = Item(i=i, tags={'t%d' % i})
    root['list'] = PersistentList([root, WithNewArgs(3)])
    root['weak'] = WeakRef(root['list'])
    root['plain'] = [Plain(when=datetime.datetime(2026, 1, 1)), b'\xff', 1.5]
    jar.commit(root)
    return oid


def test_records_are_byte_identical_to_zodbs():
    jar = FakeJar()
    _sample_graph(jar)
    compared = 0
    for oid, obj in list(jar._cache.items()):
        ours = jar.writer.serialize(obj)
        theirs = zodb_serialize.ObjectWriter(obj).serialize(obj)
        assert ours == theirs, type(obj)
        compared += 1
    assert compared > 300


class ZodbJar(FakeJar):
    """A jar whose records are read by ZODB's ObjectReader."""

    def __init__(self, store):
        super().__init__(store)
        from ZODB.broken import find_global
        self.zodb_reader = zodb_serialize.ObjectReader(
            self, self._cache, lambda conn, module, name: find_global(module, name))

    def get_ghost(self, oid, klass):
        obj = self._cache.get(oid)
        if obj is None:
            obj = self.zodb_reader.getGhost(self.store.records[oid])
            self._cache.new_ghost(oid, obj)
        return obj

    def setstate(self, obj):
        self.zodb_reader.setGhostState(obj, self.store.records[obj._p_oid])


def test_instances_of_persistent_classes_are_written_as_zodb_writes_them():
    from ZODB.persistentclass import PersistentMetaClass
    cls = PersistentMetaClass('Dynamic', (Persistent,), {'__module__': __name__})
    globals()['Dynamic'] = cls
    try:
        jar = FakeJar()
        obj = cls()
        obj.x = 1
        holder = Item(obj=obj, cls=cls)
        oid = jar.add(holder)
        record = jar.writer.serialize(holder)
        assert record == zodb_serialize.ObjectWriter(holder).serialize(holder)
        assert jar.writer.new_objects == [obj, cls]
        assert jar.writer.serialize(obj) == \
            zodb_serialize.ObjectWriter(obj).serialize(obj)
        jar.commit(holder)
        assert reopen(jar, oid).obj.x == 1
    finally:
        del globals()['Dynamic']


def test_zodb_reads_our_records():
    jar = FakeJar()
    oid = _sample_graph(jar)
    root = ZodbJar(jar.store).get(oid)
    assert root['tree'][123].i == 123
    assert root['list'][0] is root
    assert root['list'][1].size == 3
    assert root['weak']() is root['list']
    assert root['plain'][0].when.year == 2026


def test_we_read_zodbs_records():
    jar = FakeJar()
    oid = _sample_graph(jar)
    zodb_records = {}
    for obj_oid, obj in list(jar._cache.items()):
        zodb_records[obj_oid] = zodb_serialize.ObjectWriter(obj).serialize(obj)
    store = Store()
    store.records = zodb_records
    root = FakeJar(store).get(oid)
    assert root['tree'][77].tags == {'t77'}
    assert root['list'][1].size == 3
    assert root['weak']() is root['list']


# -- property: plain data inside a persistent object ------------------------

_leaves = (st.none() | st.booleans() | st.integers() | st.text(max_size=8)
           | st.binary(max_size=8)
           | st.floats(allow_nan=False) | st.datetimes())
_keys = st.integers() | st.text(max_size=8) | st.binary(max_size=4)
_data = st.recursive(
    _leaves,
    lambda children: (st.lists(children, max_size=4)
                      | st.tuples(children, children)
                      | st.dictionaries(_keys, children, max_size=4)
                      | st.frozensets(_keys, max_size=4)
                      | st.builds(lambda d: Plain(**d),
                                  st.dictionaries(st.from_regex('[a-z]{1,5}', fullmatch=True),
                                                  children, max_size=3))),
    max_leaves=20)


@settings(max_examples=150, deadline=None)
@given(value=_data)
def test_plain_data_round_trips_and_matches_zodbs_bytes(value):
    jar = FakeJar()
    item = Item(value=value, child=Item(value=value))
    oid = jar.add(item)
    record = jar.writer.serialize(item)
    assert record == zodb_serialize.ObjectWriter(item).serialize(item)
    jar.commit(item)
    loaded = reopen(jar, oid)
    assert loaded.value == value
    assert loaded.child.value == value


# -- property: the error names the path of the one unpicklable value -------

def _unpicklable():
    return lambda: None


@st.composite
def _nested_with_one_bad_value(draw, depth=0):
    """(value, path): plain data holding one function, and where it is."""
    if depth >= 4 or draw(st.booleans()) and depth > 0:
        return _unpicklable(), ''
    child, below = draw(_nested_with_one_bad_value(depth + 1))
    others = draw(st.lists(_leaves, max_size=3))
    kind = draw(st.sampled_from(['dict', 'list', 'tuple', 'plain']))
    if kind in ('list', 'tuple'):
        at = draw(st.integers(0, len(others)))
        items = others[:at] + [child] + others[at:]
        value = items if kind == 'list' else tuple(items)
        return value, '[%d]%s' % (at, below)
    names = draw(st.lists(st.from_regex('[a-z]{1,6}', fullmatch=True),
                          min_size=len(others) + 1, max_size=len(others) + 1,
                          unique=True))
    mapping = dict(zip(names[1:], others))
    mapping[names[0]] = child
    if kind == 'dict':
        return mapping, '[%r]%s' % (names[0], below)
    return Plain(**mapping), '.%s%s' % (names[0], below)


@settings(max_examples=100, deadline=None)
@given(case=_nested_with_one_bad_value())
def test_error_names_the_path_of_the_unpicklable_value(case):
    value, path = case
    jar = FakeJar()
    folder = Folder()
    jar.add(folder)
    folder.value = value
    with pytest.raises(errors.SerializationError) as info:
        jar.writer.serialize(folder)
    assert ('cannot store test_pickler.Folder (oid 0x01): .value%s is a '
            'function, which cannot be pickled' % path) in str(info.value)
