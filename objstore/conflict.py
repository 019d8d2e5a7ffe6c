"""The one conflict resolver every objstore storage uses.

When a transaction stores an object whose committed serial moved on since the
transaction read it, the storage calls :func:`resolve`. Like ZODB's storages,
it loads the state the transaction started from (``old``), the committed
state and the new state, and asks the object's class to merge them through
``_p_resolveConflict(old, committed, new)``; BTrees, ``BTrees.Length`` and
application classes implement it. References to other persistent objects
appear in those states as :class:`PersistentReference` objects, so resolution
never loads other objects and needs no database connection.
"""
import importlib
import io
import pickle

from objstore import errors
from objstore.serialize import PROTOCOL, RecordReader, class_name_of

_class_cache = {}


def _find_class(module, name):
    key = (module, name)
    klass = _class_cache.get(key)
    if klass is None:
        klass = getattr(importlib.import_module(module), name)
        _class_cache[key] = klass
    return klass


class PersistentReference:
    """A persistent reference seen during conflict resolution.

    Equal to another reference to the same object of the same database;
    comparing references to different objects raises ``ValueError`` (see
    :meth:`_same`). ``data`` is the persistent id as it was read, written back
    unchanged when the resolved state is pickled.
    """

    __slots__ = ('data', 'oid', 'database_name', 'klass', 'weak')

    def __init__(self, data):
        self.data = data
        self.database_name = None
        self.klass = None
        self.weak = False
        if isinstance(data, bytes):
            self.oid = data
        elif isinstance(data, tuple):
            self.oid, self.klass = data[0], data[1]
        elif isinstance(data, list) and len(data) == 2:
            kind, args = data
            if kind == 'w':
                self.weak = True
                self.oid = args[0]
                if len(args) > 1:
                    self.database_name = args[1]
            elif kind == 'm':
                self.database_name, self.oid, self.klass = args
            elif kind == 'n':
                self.database_name, self.oid = args
            else:
                raise errors.SerializationError(
                    'unknown persistent reference kind %r' % (kind,))
        else:
            raise errors.SerializationError(
                'unknown persistent reference %r' % (data,))

    def _key(self):
        return (self.database_name, self.oid)

    def _same(self, other):
        """True when both name the same object; ValueError otherwise.

        As in ZODB: two references are only known to be equal when they
        name the same object (weak references only when they are the same
        reference); anything else cannot be compared without loading the
        objects, whose classes may define their own comparison. Resolution
        then fails with a ConflictError, as ZODB's does, rather than merge
        on a guess.
        """
        if self is other or (
                isinstance(other, PersistentReference)
                and not self.weak and not other.weak
                and self._key() == other._key()):
            return True
        raise ValueError('cannot compare references to different persistent'
                         ' objects during conflict resolution (%r, %r)'
                         % (self, other))

    def __eq__(self, other):
        return self._same(other)

    def __ne__(self, other):
        return not self._same(other)

    def __lt__(self, other):
        return not self._same(other)

    def __gt__(self, other):
        return not self._same(other)

    def __le__(self, other):
        return self._same(other)

    def __ge__(self, other):
        return self._same(other)

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return 'PersistentReference(%r)' % (self.data,)


def _persistent_id(obj):
    if isinstance(obj, PersistentReference):
        return obj.data
    return None


def _reference_factory():
    """A persistent_load giving one :class:`PersistentReference` object per
    referenced object, shared by the three states of one resolution: BTrees'
    C code compares a bucket's next-bucket references by identity."""
    seen = {}

    def load(data):
        ref = PersistentReference(data)
        return seen.setdefault((ref.weak,) + ref._key(), ref)
    return load


def _read_state(data, load_reference):
    reader = RecordReader(data, load_reference, _find_class)
    meta = reader.load()
    return meta, reader.load()


def _class_of_meta(meta):
    if isinstance(meta, tuple):
        klass, args = meta[0], meta[1] if len(meta) > 1 else None
        if isinstance(klass, tuple):
            klass = _find_class(*klass)
        return klass, args or ()
    return meta, ()


def resolve(oid, committed_serial, old_serial, new_data, load_serial,
            committed_data=None):
    """Merge a conflicting store; return the resolved record.

    ``old_serial`` is the revision the transaction started from,
    ``committed_serial`` the one committed since; ``load_serial(oid, tid)``
    reads a revision (the storage's own ``loadSerial``). Raises
    :class:`objstore.errors.ConflictError` naming the oid and class when the
    class cannot resolve the conflict.
    """
    class_name = class_name_of(new_data)
    serials = (committed_serial, old_serial)

    def fail(why):
        return errors.ConflictError(
            'database conflict error: %s' % why, oid=oid, serials=serials,
            class_name=class_name)

    if old_serial == b'\0' * 8:
        raise fail('the object was created concurrently')
    load_reference = _reference_factory()
    try:
        meta, new_state = _read_state(new_data, load_reference)
        klass, args = _class_of_meta(meta)
    except (ImportError, AttributeError, errors.SerializationError,
            pickle.UnpicklingError) as exc:
        raise fail('class cannot be loaded (%s)' % exc) from exc
    if getattr(klass, '_p_resolveConflict', None) is None:
        raise fail('%s does not resolve conflicts' % class_name)
    try:
        old_data = load_serial(oid, old_serial)
    except KeyError as exc:
        raise fail('the revision the transaction started from is gone') from exc
    if committed_data is None:
        committed_data = load_serial(oid, committed_serial)
    try:
        old_state = _read_state(old_data, load_reference)[1]
        committed_state = _read_state(committed_data, load_reference)[1]
        inst = klass.__new__(klass, *args)
        resolved = inst._p_resolveConflict(old_state, committed_state,
                                           new_state)
    except errors.ConflictError:
        raise
    except Exception as exc:
        # BTrees raise their own BTreesConflictError; applications raise
        # whatever they like. All of them mean "cannot merge".
        raise fail('%s: %s' % (type(exc).__name__, exc)) from exc
    f = io.BytesIO()
    pickler = pickle.Pickler(f, PROTOCOL)
    pickler.persistent_id = _persistent_id
    pickler.dump(meta)
    pickler.dump(resolved)
    return f.getvalue()
