"""objstore.broken: records whose class can no longer be imported."""
import itertools
import pickle
import sys
import types

import pytest
from persistent import Persistent, PickleCache

from objstore import errors
from objstore.serialize import dumps_record, loads_record

GONE = 'objstore_test_gone_module'


def p64(n):
    return n.to_bytes(8, 'big')


class FakeJar:
    """What the pickler uses of a connection, backed by a dict."""

    database_name = 'unnamed'
    xrefs = True
    databases = {}

    def __init__(self, records=None):
        from objstore.pickler import ObjectReader, ObjectWriter
        self.records = {} if records is None else records
        self._counter = itertools.count(100)
        self._cache = PickleCache(self, 1000)
        self.writer = ObjectWriter(self)
        self.reader = ObjectReader(self)

    def db(self):
        return self

    def new_oid(self):
        return p64(next(self._counter))

    def get_ghost(self, oid, klass):
        obj = self._cache.get(oid)
        if obj is None:
            obj = self.reader.new_ghost(oid, self.records[oid])
            self._cache[oid] = obj
        return obj

    def get(self, oid):
        return self.get_ghost(oid, None)

    def setstate(self, obj):
        self.reader.set_ghost_state(obj, self.records[obj._p_oid])

    def register(self, obj):
        pass


@pytest.fixture
def gone_module():
    """A module with classes, removed from sys.modules (and unimportable)
    when the test has written its records."""
    module = types.ModuleType(GONE)

    class Thing(Persistent):
        pass

    class Sized(Persistent):
        def __new__(cls, size):
            return Persistent.__new__(cls)

        def __init__(self, size):
            self.size = size

        def __getnewargs__(self):
            return (self.size,)

    class Value:
        def __init__(self, v):
            self.v = v

    for cls in (Thing, Sized, Value):
        cls.__module__ = GONE
        cls.__qualname__ = cls.__name__
        setattr(module, cls.__name__, cls)
    sys.modules[GONE] = module

    def remove():
        sys.modules.pop(GONE, None)
    module.remove = remove
    yield module
    remove()


def _write(jar, obj, oid):
    obj._p_oid = oid
    obj._p_jar = jar
    jar.records[oid] = jar.writer.serialize(obj)
    return jar.records[oid]


# -- find_global ------------------------------------------------------------

def test_find_global_returns_what_can_be_imported():
    from objstore.broken import find_global
    assert find_global('persistent.mapping', 'PersistentMapping').__name__ == \
        'PersistentMapping'
    assert find_global('collections', 'OrderedDict.fromkeys') is not None


def test_find_global_maps_python2_names():
    from objstore.broken import find_global
    assert find_global('__builtin__', 'set') is set
    assert find_global('copy_reg', '_reconstructor') is \
        sys.modules['copyreg']._reconstructor


@pytest.mark.parametrize('module, name', [
    ('no.such.module', 'Thing'), ('persistent.mapping', 'NoSuchClass')])
def test_missing_global_gives_a_broken_class_that_remembers_its_name(module, name):
    from objstore.broken import Broken, find_global
    cls = find_global(module, name)
    assert issubclass(cls, Broken)
    assert (cls.__module__, cls.__name__) == (module, name)
    assert find_global(module, name) is cls


def test_persistent_variant_of_a_broken_class_is_always_the_same():
    from objstore.broken import PersistentBroken, find_global, persistent_broken
    cls = find_global('no.such.module', 'Other')
    pcls = persistent_broken(cls)
    assert issubclass(pcls, PersistentBroken) and issubclass(pcls, cls)
    assert persistent_broken(cls) is pcls
    assert persistent_broken(pcls) is pcls
    assert (pcls.__module__, pcls.__name__) == ('no.such.module', 'Other')


def test_broken_instances_refuse_changes_with_an_objstore_type_error():
    from objstore.broken import BrokenModified, find_global
    cls = find_global('no.such.module', 'Thing')
    obj = cls.__new__(cls, 1, 2)
    obj.__setstate__({'x': 1})
    with pytest.raises(BrokenModified) as info:
        obj.x = 2
    assert isinstance(info.value, errors.ObjstoreError)
    assert isinstance(info.value, TypeError)
    assert 'no.such.module.Thing' in str(info.value)
    assert repr(obj) == '<broken no.such.module.Thing instance>'


# -- loading records of missing classes ---------------------------------------

def test_record_of_a_vanished_module_loads_as_persistent_broken(gone_module):
    from objstore.broken import BrokenModified, PersistentBroken
    jar = FakeJar()
    thing = gone_module.Thing()
    thing.title, thing.n = 'kept', 3
    _write(jar, thing, p64(1))
    gone_module.remove()

    other = FakeJar(jar.records)
    assert issubclass(other.reader.get_class(jar.records[p64(1)]), PersistentBroken)
    obj = other.get(p64(1))
    assert isinstance(obj, PersistentBroken)
    assert obj._p_status == 'ghost'
    assert (type(obj).__module__, type(obj).__name__) == (GONE, 'Thing')
    assert other.reader.get_state(jar.records[p64(1)]) == {'title': 'kept', 'n': 3}
    obj._p_activate()
    assert obj.__getstate__() == {'title': 'kept', 'n': 3}
    with pytest.raises(BrokenModified):
        obj.title = 'changed'
    obj._v_cache = 'volatile attributes are allowed'
    assert 'persistent broken %s.Thing instance 0x01' % GONE in repr(obj)


def test_broken_state_is_written_back_byte_for_byte(gone_module):
    jar = FakeJar()
    thing = gone_module.Thing()
    thing.items = {'a': [1, 2], 'value': gone_module.Value(5)}
    thing.sized = gone_module.Sized(4)
    thing.sized._p_oid = p64(2)
    thing.sized._p_jar = jar
    original = _write(jar, thing, p64(1))
    sized_original = _write(jar, thing.sized, p64(2))
    gone_module.remove()

    other = FakeJar(jar.records)
    obj = other.get(p64(1))
    obj._p_activate()
    assert other.writer.serialize(obj) == original
    sized = other.get(p64(2))
    sized._p_activate()
    assert other.writer.serialize(sized) == sized_original
    assert other.writer.new_objects == []


def test_class_comes_back_and_the_same_record_loads_normally(gone_module):
    jar = FakeJar()
    thing = gone_module.Thing()
    thing.x = 1
    record = _write(jar, thing, p64(1))
    module = sys.modules[GONE]
    gone_module.remove()
    other = FakeJar(jar.records)
    assert other.reader.get_class(record).__name__ == 'Thing'
    assert other.reader.get_class(record) is not gone_module.Thing
    sys.modules[GONE] = module
    assert other.reader.get_class(record) is gone_module.Thing


def test_persistent_broken_cannot_be_pickled_outside_the_database(gone_module):
    from objstore.broken import BrokenModified
    jar = FakeJar()
    _write(jar, gone_module.Thing(), p64(1))
    gone_module.remove()
    obj = FakeJar(jar.records).get(p64(1))
    with pytest.raises(BrokenModified, match='outside its database'):
        pickle.dumps(obj)


# -- ZODB -------------------------------------------------------------------

def test_zodb_record_of_a_missing_class_loads_like_zodb_loads_it(gone_module):
    zodb_serialize = pytest.importorskip('ZODB.serialize')
    from ZODB.broken import find_global as zodb_find_global
    from ZODB.broken import PersistentBroken as ZodbPersistentBroken
    from objstore.broken import PersistentBroken
    jar = FakeJar()
    thing = gone_module.Thing()
    thing.v = gone_module.Value(2)
    thing._p_oid, thing._p_jar = p64(1), jar
    jar.records[p64(1)] = zodb_serialize.ObjectWriter(thing).serialize(thing)
    gone_module.remove()

    ours = FakeJar(jar.records).get(p64(1))
    ours._p_activate()
    zodb_reader = zodb_serialize.ObjectReader(
        None, PickleCache(jar), lambda conn, m, n: zodb_find_global(m, n))
    theirs = zodb_reader.getGhost(jar.records[p64(1)])
    theirs.__setstate__(zodb_reader.getState(jar.records[p64(1)]))
    assert isinstance(ours, PersistentBroken)
    assert isinstance(theirs, ZodbPersistentBroken)
    assert type(ours).__name__ == type(theirs).__name__ == 'Thing'
    assert ours.__getstate__()['v'].__Broken_state__ == {'v': 2}
    assert theirs.__getstate__()['v'].__Broken_state__ == {'v': 2}


def test_zodb_rebuild_of_a_broken_value_loads_here(gone_module):
    pytest.importorskip('ZODB')
    from ZODB.broken import find_global as zodb_find_global
    from objstore.broken import Broken
    gone_module.remove()
    cls = zodb_find_global(GONE, 'Value')
    value = cls.__new__(cls)
    value.__setstate__({'v': 3})
    record = dumps_record(dict, {'value': value})
    assert b'ZODB.broken\nrebuild' in record
    state = FakeJar().reader.get_state(record)
    assert isinstance(state['value'], Broken)
    assert state['value'].__Broken_state__ == {'v': 3}


def test_zodb_reads_our_record_of_a_broken_object_as_broken(gone_module):
    zodb_serialize = pytest.importorskip('ZODB.serialize')
    from ZODB.broken import find_global as zodb_find_global
    from ZODB.broken import PersistentBroken as ZodbPersistentBroken
    jar = FakeJar()
    thing = gone_module.Thing()
    thing.x = 1
    _write(jar, thing, p64(1))
    gone_module.remove()
    other = FakeJar(jar.records)
    obj = other.get(p64(1))
    obj._p_activate()
    record = other.writer.serialize(obj)
    zodb_reader = zodb_serialize.ObjectReader(
        None, PickleCache(jar), lambda conn, m, n: zodb_find_global(m, n))
    ghost = zodb_reader.getGhost(record)
    assert isinstance(ghost, ZodbPersistentBroken)
    assert zodb_reader.getState(record) == {'x': 1}
    from objstore.broken import find_global
    assert loads_record(record, find_global=find_global)[1] == {'x': 1}
