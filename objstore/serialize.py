"""ZODB's record format: how an object revision is laid out in bytes.

A record is two pickles back to back (protocol 3, as ZODB writes them):

1. the class metadata: the class itself, or ``(class, None)``, or
   ``(class, newargs)`` for classes that need ``__getnewargs__``;
2. the object's state (what ``__getstate__`` returned).

References to other persistent objects are pickled as persistent ids, in
the forms ZODB defines:

=============================  ==========================================
``oid``                        plain reference, class unknown to the reader
``(oid, class)``               reference carrying the class (no load needed
                               to make a ghost)
``['w', (oid,)]``              weak reference, same database
``['w', (oid, database)]``     weak reference into another database
``['m', (database, oid, cls)]``  reference into another database
``['n', (database, oid)]``     reference into another database, no class
=============================  ==========================================

Storages never need the classes: :func:`references` and
:func:`class_name_of` read records without importing anything the record
names.
"""
import io
import pickle

from objstore import errors

#: The pickle protocol of ZODB records.
PROTOCOL = 3

_EMPTY = b''


class _Stub:
    """Stands in for every global a scanned record names.

    It accepts whatever the pickle does to an object (call, ``__new__``
    arguments, state, items) so the C unpickler can walk any record without
    importing application classes.
    """

    def __new__(cls, *args, **kw):
        return object.__new__(cls)

    def __init__(self, *args, **kw):
        pass

    def __call__(self, *args, **kw):
        return _Stub()

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass

    def append(self, item):
        pass

    def extend(self, items):
        pass

    def add(self, item):
        pass


class _GlobalName:
    """What :func:`class_name_of` sees instead of a class: just its name."""

    __slots__ = ('name',)

    def __init__(self, module, name):
        self.name = '%s.%s' % (module, name)


class _ScanUnpickler(pickle.Unpickler):
    """Walks a record without importing anything; collects persistent ids."""

    def __init__(self, data, collect, stub=_Stub):
        super().__init__(io.BytesIO(data))
        self._collect = collect
        self._stub = stub

    def persistent_load(self, pid):
        self._collect(pid)
        return None

    def find_class(self, module, name):
        if self._stub is _GlobalName:
            return _GlobalName(module, name)
        return _Stub


def _oid_of_reference(reference):
    """The oid a strong same-database persistent id names, or None."""
    if isinstance(reference, tuple):
        oid = reference[0]
    elif isinstance(reference, bytes):
        oid = reference
    elif isinstance(reference, str):
        oid = reference.encode('latin-1')
    else:
        # Lists are weak (``'w'``) or cross-database (``'m'``, ``'n'``)
        # references: neither keeps an object of this database alive.
        return None
    if isinstance(oid, str):
        oid = oid.encode('latin-1')
    return oid


def persistent_ids(data):
    """Every persistent id in a record, in pickle order, in ZODB's forms."""
    pids = []
    unpickler = _ScanUnpickler(data, pids.append)
    try:
        unpickler.load()
        unpickler.load()
    except Exception as exc:
        raise errors.SerializationError(
            'cannot read record references: %s: %s'
            % (type(exc).__name__, exc)) from exc
    return pids


def references(data, oids=None):
    """The oids a record refers to strongly (ZODB's ``referencesf``).

    Appends to ``oids`` when given and returns it. Weak and cross-database
    references are not included: they do not keep an object alive.
    """
    if oids is None:
        oids = []
    # BINPERSID is b'Q' and PERSID b'P'; a record without either byte holds
    # no reference, which saves unpickling most leaf records during GC.
    if b'Q' not in data and b'P' not in data:
        return oids
    for pid in persistent_ids(data):
        oid = _oid_of_reference(pid)
        if oid is not None:
            oids.append(oid)
    return oids


def class_name_of(data):
    """The dotted class name a record's class pickle names, or ``''``."""
    unpickler = _ScanUnpickler(data, lambda pid: None, stub=_GlobalName)
    try:
        meta = unpickler.load()
    except Exception:
        return ''
    if isinstance(meta, tuple) and meta:
        meta = meta[0]
    if isinstance(meta, _GlobalName):
        return meta.name
    # Old form, still written by ZODB's test helpers: ((module, name), args).
    if (isinstance(meta, tuple) and len(meta) == 2
            and all(isinstance(part, str) for part in meta)):
        return '%s.%s' % meta
    return ''


def dumps_record(class_meta, state, persistent_id=None):
    """Build a record from class metadata and a state.

    ``persistent_id(obj)`` returns a persistent id in one of the forms above
    for objects stored separately, or None to pickle ``obj`` inline.
    """
    f = io.BytesIO()
    pickler = pickle.Pickler(f, PROTOCOL)
    if persistent_id is not None:
        pickler.persistent_id = persistent_id
    pickler.dump(class_meta)
    pickler.dump(state)
    return f.getvalue()


class RecordReader(pickle.Unpickler):
    """Reads the two pickles of a record.

    ``persistent_load(pid)`` turns each persistent id into an object;
    ``find_global(module, name)``, when given, replaces class lookup.
    """

    def __init__(self, data, persistent_load=None, find_global=None):
        super().__init__(io.BytesIO(data))
        self._persistent_load = persistent_load
        self._find_global = find_global

    def persistent_load(self, pid):
        if self._persistent_load is None:
            raise pickle.UnpicklingError(
                'record has a persistent reference but no loader was given')
        return self._persistent_load(pid)

    def find_class(self, module, name):
        if self._find_global is not None:
            return self._find_global(module, name)
        return super().find_class(module, name)

    def load_class_meta(self):
        return self.load()

    def load_state(self):
        return self.load()


def loads_record(data, persistent_load=None, find_global=None):
    """``(class_meta, state)`` of a record."""
    reader = RecordReader(data, persistent_load, find_global)
    try:
        return reader.load(), reader.load()
    except Exception as exc:
        raise errors.SerializationError(
            'cannot unpickle record: %s: %s' % (type(exc).__name__, exc)
        ) from exc


def pack_extension(extension):
    """Transaction extension dict as stored bytes (empty dict: ``b''``)."""
    if not extension:
        return _EMPTY
    return pickle.dumps(dict(extension), PROTOCOL)


def unpack_extension(data):
    """Stored extension bytes back as a dict."""
    if not data:
        return {}
    try:
        return pickle.loads(data)
    except Exception as exc:
        raise errors.SerializationError(
            'cannot unpickle transaction extension: %s' % exc) from exc
