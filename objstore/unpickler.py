"""Records -> objects, for one connection (the *jar*): the reading half of
:mod:`objstore.pickler` (which describes the record format).

One ``pickle.Unpickler`` per record, as in ZODB; classes that cannot be
imported give broken classes (:mod:`objstore.broken`), never errors.
"""
import io
import pickle

from persistent.wref import WeakRef
from transaction.interfaces import TransientError

from objstore import broken
from objstore import errors
from objstore.unpicklable import describe

__all__ = ['ObjectReader']

# Errors that mean something other than "this value cannot be pickled" and
# must reach the caller unchanged (a conflict while loading, a closed storage).
_PASS_THROUGH = (errors.ObjstoreError, TransientError)


def _as_oid(oid):
    # Records written by Python 2 hold oids as str when every byte < 0x80.
    if isinstance(oid, str):
        return oid.encode('latin-1')
    return oid


def _database_name(jar):
    db = getattr(jar, 'db', None)
    if db is None:
        return None
    try:
        return getattr(db(), 'database_name', None)
    except Exception:
        return None


class ObjectReader:
    """Turns the records of one jar back into objects.

    References are resolved through the jar: the cached object when
    ``jar._cache`` has the oid, else ``jar.get_ghost(oid, cls)`` (``cls``
    None when the reference does not carry it). Classes that cannot be
    imported give broken classes (:mod:`objstore.broken`), never errors.
    Any other failure to unpickle raises :class:`errors.SerializationError`
    naming the oid; errors of objstore (a missing record, a conflict) pass
    through unchanged.
    """

    def __init__(self, jar, find_global=broken.find_global):
        # find_global(module, name): ZODB's DB.classFactory hook, for
        # applications that move or alias classes; it should answer a
        # missing global with a broken class, as the default does.
        self._jar = jar
        self._find_global = find_global
        self._classes = {}
        self._classes_by_key = {}
        self._database_name = None
        self._loading = None
        # A class per reader so the C unpickler calls our bound methods
        # directly, without a Python-level trampoline.
        self._unpickler = type('RecordUnpickler', (pickle.Unpickler,), {
            'find_class': staticmethod(self.find_class),
            'persistent_load': staticmethod(self.persistent_load),
        })

    def find_class(self, module, name):
        """The global ``module.name``; a broken class when it is missing.

        Found globals are cached by name for the reader's life; missing
        ones are looked up again, so code that comes back is seen.
        """
        key = (module, name)
        try:
            return self._classes[key]
        except KeyError:
            pass
        value = self._find_global(module, name)
        if not broken.is_broken(value):
            self._classes[key] = value
        return value

    # -- class metadata ---------------------------------------------------

    def _class_and_args(self, meta):
        if meta.__class__ is tuple:
            cls, args = meta
            if isinstance(cls, tuple):
                cls = self.find_class(*cls)
            if args is None:
                args = ()
        else:
            cls, args = meta, ()
        if isinstance(cls, type) and issubclass(cls, broken.Broken):
            cls = broken.persistent_broken(cls)
        return cls, args

    def _load_meta(self, record, oid):
        try:
            return self._unpickler(io.BytesIO(record)).load()
        except _PASS_THROUGH:
            raise
        except Exception as exc:
            raise _load_error(oid, 'its class', exc) from exc

    def _plain_class(self, record):
        # Most records start with the class alone: PROTO 3, GLOBAL
        # "module\nname\n", BINPUT 0, STOP. Reading that form directly
        # saves an unpickler per ghost; anything else takes the long way.
        if record[:3] != b'\x80\x03c':
            return None
        end = record.find(b'\n', record.find(b'\n', 3) + 1)
        if end < 0 or record[end + 1:end + 4] != b'q\x00.':
            return None
        key = record[3:end]
        cls = self._classes_by_key.get(key)
        if cls is None:
            try:
                module, name = key.decode('utf-8').split('\n')
                cls = self.find_class(module, name)
            except Exception:
                # Let the long way report it, with the oid.
                return None
            if not isinstance(cls, type):
                return None
            if issubclass(cls, broken.Broken):
                return broken.persistent_broken(cls)
            self._classes_by_key[key] = cls
        return cls

    def get_class(self, record, oid=None):
        """The class of the object a record holds (``oid`` for messages)."""
        cls = self._plain_class(record)
        if cls is not None:
            return cls
        return self._class_and_args(self._load_meta(record, oid))[0]

    def new_ghost(self, oid, record):
        """A ghost of the record's class: ``__init__`` not called,
        ``_p_oid``/``_p_jar`` set, not added to the cache."""
        cls = self._plain_class(record)
        if cls is None:
            cls, args = self._class_and_args(self._load_meta(record, oid))
        else:
            args = ()
        try:
            obj = cls.__new__(cls, *args)
            obj._p_oid = oid
            obj._p_jar = self._jar
        except _PASS_THROUGH:
            raise
        except Exception as exc:
            raise _load_error(oid, 'a ghost of %s.%s' % (
                cls.__module__, cls.__qualname__), exc) from exc
        obj._p_deactivate()
        return obj

    # -- state --------------------------------------------------------------

    def _load(self, record, oid):
        outer = self._loading
        self._loading = oid
        try:
            unpickler = self._unpickler(io.BytesIO(record))
            meta = unpickler.load()
            state = unpickler.load()
        except _PASS_THROUGH:
            raise
        except Exception as exc:
            raise _load_error(oid, 'its state', exc) from exc
        finally:
            self._loading = outer
        return meta, state

    def get_state(self, record, oid=None):
        """The state a record holds, references resolved through the jar."""
        return self._load(record, oid)[1]

    def set_ghost_state(self, obj, record):
        """Unpickle the record's state into ``obj`` (``obj.__setstate__``)."""
        oid = obj._p_oid
        meta, state = self._load(record, oid)
        try:
            obj.__setstate__(state)
        except _PASS_THROUGH:
            raise
        except Exception as exc:
            raise _load_error(oid, 'its state into %s' % describe(obj),
                              exc) from exc
        if isinstance(obj, broken.PersistentBroken):
            # Ghosting dropped the __new__ arguments; keep them (None for
            # the plain class form) so the record is written back as read.
            obj.__dict__['__Broken_newargs__'] = (
                meta[1] if meta.__class__ is tuple else None)

    # -- references ---------------------------------------------------------

    def persistent_load(self, reference):
        """The object a persistent id names (every form ZODB writes)."""
        if reference.__class__ is tuple:
            oid, cls = reference
            oid = _as_oid(oid)
            obj = self._jar._cache.get(oid)
            if obj is not None:
                return obj
            return self._ghost(oid, cls)
        if isinstance(reference, (bytes, str)):
            oid = _as_oid(reference)
            obj = self._jar._cache.get(oid)
            if obj is not None:
                return obj
            return self._ghost(oid, None)
        if isinstance(reference, list):
            if len(reference) == 1:
                # The oldest weak reference form: [oid].
                return self._weak(reference[0])
            kind, args = reference
            if kind == 'w':
                return self._weak(*args)
            if kind == 'm':
                return self._other_database(args[0], args[1], args[2])
            if kind == 'n':
                return self._other_database(args[0], args[1], None)
        raise pickle.UnpicklingError(
            'unknown persistent reference %r' % (reference,))

    def _ghost(self, oid, cls):
        if cls is not None:
            if isinstance(cls, tuple):
                cls = self.find_class(*cls)
            if isinstance(cls, type) and issubclass(cls, broken.Broken):
                cls = broken.persistent_broken(cls)
        get_ghost = self._jar.get_ghost
        try:
            try:
                return get_ghost(oid, cls)
            except TypeError as exc:
                if cls is None or isinstance(exc, errors.ObjstoreError):
                    raise
                # The class now wants __new__ arguments this reference
                # does not carry; the record has them (ZODB does the same).
                return get_ghost(oid, None)
        except errors.POSKeyError as exc:
            if exc.referenced_by is None and self._loading is not None:
                exc.referenced_by = self._describe_loading()
            raise

    def _describe_loading(self):
        obj = self._jar._cache.get(self._loading)
        if obj is None:
            return 'oid %s' % errors.oid_repr(self._loading)
        cls = type(obj)
        return '%s.%s at oid %s' % (cls.__module__, cls.__qualname__,
                                    errors.oid_repr(self._loading))

    def _own_database_name(self):
        if self._database_name is None:
            self._database_name = _database_name(self._jar)
        return self._database_name

    def _weak(self, oid, database_name=None):
        ref = WeakRef.__new__(WeakRef)
        ref.oid = _as_oid(oid)
        if database_name is None or database_name == self._own_database_name():
            ref.dm = self._jar
        else:
            # A weak reference into a database we do not open: calling it
            # gives None (the target is "gone"), writing it keeps it.
            ref.database_name = database_name
        return ref

    def _other_database(self, database_name, oid, cls):
        oid = _as_oid(oid)
        if database_name == self._own_database_name():
            obj = self._jar._cache.get(oid)
            if obj is not None:
                return obj
            return self._ghost(oid, cls)
        raise errors.Unsupported(
            '%s refers to oid %s in database %r: cross-database references '
            'are not supported by objstore yet'
            % (self._describe_loading() if self._loading is not None
               else 'a record', errors.oid_repr(oid), database_name))


def _load_error(oid, what, exc):
    where = 'oid %s' % errors.oid_repr(oid) if oid is not None else 'a record'
    return errors.SerializationError(
        'cannot load %s of %s: %s: %s' % (what, where, type(exc).__name__, exc))
