"""Objects <-> records, for one connection (the *jar*).

Records are ZODB's, byte for byte: a class pickle, then a state pickle, both
protocol :data:`objstore.serialize.PROTOCOL`, from one pickler memo (so the
state may refer back to the class). The class pickle is

- ``cls`` for ordinary persistent classes,
- ``(cls, obj.__getnewargs__())`` when the object defines ``__getnewargs__``,
- ``((module, name), None)`` or ``((module, name), newargs)`` for instances of
  persistent classes (``persistent.persistentclass``), so the class is found
  by name and not through a reference.

Persistent sub-objects are persistent ids, exactly as ZODB writes them:
``(oid, cls)``, a bare ``oid`` when the class defines ``__getnewargs__`` (its
``__new__`` needs arguments only the record has), ``['w', (oid,)]`` for a
``persistent.wref.WeakRef``. Reading accepts every form ZODB ever wrote
(see :mod:`objstore.serialize`); references into other databases raise
:class:`objstore.errors.Unsupported`.

The C pickler does the work, as in ZODB: one ``pickle.Pickler`` on a reused
``BytesIO`` per writer, one ``pickle.Unpickler`` per record read. The slow
paths (a class that cannot be imported, finding where an unpicklable value
sits) run only after the fast path failed.
"""
import functools
import io
import pickle

from persistent.wref import WeakRefMarker

from objstore import broken
from objstore import errors
from objstore.serialize import PROTOCOL
from objstore.unpicklable import REF_TYPES as _REF_TYPES
from objstore.unpicklable import describe
from objstore.unpicklable import dump_slow
from objstore.unpicklable import foreign_reference_error
from objstore.unpicklable import unpicklable_error
# The reading half lives in objstore.unpickler; ObjectReader is part of
# this module's API too.
from objstore.unpickler import ObjectReader
from objstore.unpickler import _PASS_THROUGH, _database_name

__all__ = ['ObjectWriter', 'ObjectReader']

# Records bigger than this (bytes) leave a big pickle memo behind; see
# ObjectWriter.serialize.
_BIG_RECORD = 64 * 1024

class _ForeignReference(Exception):
    """Raised inside the pickler; serialize() turns it into a clear error."""

    def __init__(self, target, why):
        super().__init__(target, why)
        self.target = target
        self.why = why


@functools.lru_cache(maxsize=None)
def _is_blob_class(cls):
    """Whether ``cls`` is ZODB's ``Blob`` or a subclass (known by name, so
    the core never imports ZODB): its data lives outside the record, which
    objstore's storages do not keep yet."""
    return any(base.__module__ == 'ZODB.blob' and base.__name__ == 'Blob'
               for base in cls.__mro__)


class ObjectWriter:
    """Serializes the objects of one jar into records.

    ``new_objects`` collects, in discovery order, every persistent object
    that had no oid when a record referred to it; it now has an oid from
    ``jar.new_oid()`` and ``_p_jar`` set to the jar, and must be stored in
    the same commit. The caller may clear the list. A ``serialize()`` that
    raises leaves it, and the objects it found, as they were before.
    """

    def __init__(self, jar):
        self._jar = jar
        self.new_objects = []
        self._file = io.BytesIO()
        self._pickler = pickle.Pickler(self._file, PROTOCOL)
        self._pickler.persistent_id = self.persistent_id
        self._database_name = None
        # WeakRefs given an oid during the current serialize() call.
        self._weak_assigned = []
        # Per class, found once per writer, as a getattr or hasattr that
        # misses costs 0.2-0.35 us: the class pickle, for the classes that
        # write the same one for every instance (no __getnewargs__, not
        # broken); whether references are bare oids (__getnewargs__).
        self._fixed_metas = {}
        self._bare_refs = {}

    # -- references -----------------------------------------------------

    def persistent_id(self, obj):
        """The persistent id of ``obj``, or None to pickle it inline.

        Called by the pickler for every object it meets, so the common
        case (not persistent) is decided by one isinstance check.
        """
        if not isinstance(obj, _REF_TYPES):
            return None
        try:
            oid = obj._p_oid
        except AttributeError:
            return None
        jar = self._jar
        if oid is None:
            oid = jar.new_oid()
            obj._p_oid = oid
            obj._p_jar = jar
            self.new_objects.append(obj)
        elif not isinstance(oid, bytes):
            if oid is WeakRefMarker:
                return self._weak_id(obj)
            # A descriptor: obj is an ordinary class of persistent objects.
            return None
        elif obj._p_jar is not jar:
            raise _ForeignReference(obj, None)
        cls = type(obj)
        bare = self._bare_refs.get(cls)
        if bare is None:
            bare = self._bare_refs[cls] = hasattr(cls, '__getnewargs__')
        if bare:
            return oid
        return oid, cls

    def _weak_id(self, ref):
        jar = self._jar
        oid = ref.oid
        if oid is None:
            target = ref()
            oid = target._p_oid
            if oid is None:
                # As in ZODB, a weak reference to a new object adds it: it
                # is assumed that the object will be reachable eventually.
                oid = jar.new_oid()
                target._p_oid = oid
                target._p_jar = jar
                self.new_objects.append(target)
            self._weak_assigned.append(ref)
            ref.oid = oid
            ref.dm = target._p_jar
            own = self._own_database_name()
            if own is not None and ref.dm is jar:
                ref.database_name = own
        dm = getattr(ref, 'dm', None)
        if dm is jar:
            return ['w', (oid,)]
        if dm is None:
            # Read from a record that pointed into a database we do not
            # open: write it back as it was.
            name = getattr(ref, 'database_name', None)
            if name is None or name == self._own_database_name():
                return ['w', (oid,)]
            return ['w', (oid, name)]
        if _same_database(dm, jar):
            return ['w', (oid,)]
        raise _ForeignReference(ref(), 'weak')

    def _own_database_name(self):
        if self._database_name is None:
            self._database_name = _database_name(self._jar)
        return self._database_name

    # -- records ----------------------------------------------------------

    def serialize(self, obj):
        """The record of ``obj`` (bytes), in ZODB's format.

        Raises :class:`errors.InvalidObjectReference` when ``obj`` refers to
        an object of another connection or database, and
        :class:`errors.SerializationError` naming ``obj``'s class, oid and
        the attribute path of a value that cannot be pickled.
        """
        meta = self._class_meta(obj)
        try:
            state = obj.__getstate__()
        except _PASS_THROUGH:
            raise
        except Exception as exc:
            raise errors.SerializationError(
                'cannot store %s: its __getstate__() raised %s: %s'
                % (describe(obj), type(exc).__name__, exc)) from exc
        f = self._file
        pickler = self._pickler
        mark = len(self.new_objects)
        if self._weak_assigned:
            del self._weak_assigned[:]
        # Reuse the buffer and pickler: rewind, write, cut off leftovers.
        f.seek(0)
        pickler.clear_memo()
        try:
            pickler.dump(meta)
            pickler.dump(state)
        except BaseException as exc:
            return self._serialize_slowly(obj, meta, state, exc, mark)
        f.truncate()
        if f.tell() > _BIG_RECORD:
            # clear_memo() costs what the biggest memo ever held: after one
            # big record every later clear would pay for it. A new memo
            # starts small again.
            pickler.memo = {}
        return f.getvalue()

    def _class_meta(self, obj):
        cls = type(obj)
        meta = self._fixed_metas.get(cls)
        if meta is not None:
            return meta
        if _is_blob_class(cls):
            raise errors.Unsupported(
                'cannot store %s: ZODB blobs are not supported by objstore'
                ' yet; keep the bytes in an attribute or a BTree instead'
                % describe(obj))
        newargs = getattr(obj, '__getnewargs__', None)
        if isinstance(obj, broken.PersistentBroken):
            # Write the class pickle in the form the record was read with.
            args = obj.__dict__.get('__Broken_newargs__')
            return cls if args is None else (cls, tuple(args))
        if (isinstance(getattr(cls, '_p_oid', 0), (bytes, type(None)))
                and cls.__module__):
            # A persistent class: named, so copying data between databases
            # does not drag the class object along by reference.
            name = (cls.__module__, cls.__name__)
            if newargs is None:
                meta = self._fixed_metas[cls] = name, None
                return meta
            return name, newargs()
        if newargs is None:
            self._fixed_metas[cls] = cls
            return cls
        return cls, newargs()

    def _serialize_slowly(self, obj, meta, state, error, mark):
        """Retry what the C pickler could not write, else raise a clear
        error and forget the oids given out during this call."""
        stop = _PASS_THROUGH + (_ForeignReference,)
        try:
            if isinstance(error, Exception) and not isinstance(error, stop):
                # The C pickler refuses classes it cannot import: broken
                # objects, or states holding broken instances.
                try:
                    return dump_slow(meta, state, self.persistent_id)
                except stop as exc:
                    error = exc
                except Exception:
                    pass
            if isinstance(error, _ForeignReference):
                raise foreign_reference_error(
                    obj, state, error.target, error.why) from None
            if not isinstance(error, Exception) or isinstance(error, stop):
                raise error
            raise unpicklable_error(obj, meta, state, error) from error
        except BaseException:
            self._forget_new_objects(mark)
            raise

    def _forget_new_objects(self, mark):
        # A failed serialize must leave the objects it found as they were:
        # the transaction aborts, and an object keeping an oid nobody
        # stored would later be taken for an existing one.
        for ref in self._weak_assigned:
            ref.oid = None
            ref.dm = None
            ref.__dict__.pop('database_name', None)
        del self._weak_assigned[:]
        for new in self.new_objects[mark:]:
            new._p_jar = None
            new._p_oid = None
        del self.new_objects[mark:]


def _same_database(jar_a, jar_b):
    try:
        return jar_a.db() is jar_b.db()
    except Exception:
        return False
