"""Why a record could not be written: the slow, explaining paths.

:mod:`objstore.pickler` writes records with the C pickler and comes here
only after it failed: to retry with a pickler that can write broken classes
(:class:`SlowPickler`), or to find where in the state the value that cannot
be pickled, or the reference to another jar's object, sits, so the error
names it (``.items['x'].callback``). Nothing here runs on the fast path.
"""
import io
import pickle

from persistent import Persistent
from persistent.wref import WeakRef

from objstore import broken
from objstore import errors
from objstore.serialize import PROTOCOL

# What may be a persistent reference rather than data.
REF_TYPES = (Persistent, type, WeakRef)

_MAX_DEPTH = 100


def describe(obj):
    """``module.Class (oid 0x03)`` for messages about a persistent object."""
    cls = type(obj)
    name = '%s.%s' % (cls.__module__, cls.__qualname__)
    oid = getattr(obj, '_p_oid', None)
    if isinstance(oid, bytes):
        return '%s (oid %s)' % (name, errors.oid_repr(oid))
    return '%s (new object)' % name


class SlowPickler(pickle._Pickler):
    """The pure-Python pickler, able to write classes that cannot be imported.

    Broken classes (see :mod:`objstore.broken`) are written as the GLOBAL
    their record named, which the C pickler refuses because the import
    check fails. The opcodes are the ones the C pickler writes for a class.
    """

    def save_global(self, obj, name=None):
        if isinstance(obj, type) and issubclass(obj, broken.Broken):
            self.write(pickle.GLOBAL + obj.__module__.encode('utf-8') + b'\n'
                       + obj.__name__.encode('utf-8') + b'\n')
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def dump_slow(meta, state, persistent_id):
    """A record written by :class:`SlowPickler` (same bytes as the C one)."""
    f = io.BytesIO()
    pickler = SlowPickler(f, PROTOCOL)
    pickler.persistent_id = persistent_id
    pickler.dump(meta)
    pickler.dump(state)
    return f.getvalue()


def is_reference(value):
    """True when pickling ``value`` writes a persistent id, not the value."""
    if isinstance(value, WeakRef):
        return True
    if isinstance(value, REF_TYPES):
        oid = getattr(value, '_p_oid', 0)
        return oid is None or isinstance(oid, bytes)
    return False


def _probe_id(value):
    # Never assigns oids: the probe only asks "does this pickle?".
    return 'ref' if is_reference(value) else None


def _probe(value):
    """None when ``value`` pickles on its own, else the exception."""
    try:
        dump_slow(None, value, _probe_id)
    except Exception as exc:
        return exc
    return None


def _short_repr(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + '...'


def _attributes(state):
    """Children of an instance state, as ``.name`` paths."""
    if isinstance(state, dict):
        return [('.%s' % key if isinstance(key, str) else '[%s]'
                 % _short_repr(key), value) for key, value in state.items()]
    if (isinstance(state, tuple) and len(state) == 2
            and all(part is None or isinstance(part, dict) for part in state)):
        # (instance dict, slot values), as objects with __slots__ give.
        return _attributes(state[0] or {}) + _attributes(state[1] or {})
    if state is None:
        return []
    return [('.__getstate__()', state)]


def _children(value):
    """(path suffix, child) pairs of what pickling ``value`` pickles."""
    if isinstance(value, dict):
        found = []
        for key, item in value.items():
            suffix = '[%s]' % _short_repr(key)
            found.append((suffix + ' (a dict key)', key))
            found.append((suffix, item))
        return found
    if isinstance(value, (list, tuple)):
        return [('[%d]' % i, item) for i, item in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return [('{%s}' % _short_repr(item), item) for item in value]
    try:
        reduced = value.__reduce_ex__(PROTOCOL)
    except Exception:
        return []
    if not isinstance(reduced, tuple):
        return []
    found = []
    if len(reduced) > 1 and isinstance(reduced[1], tuple):
        found.extend(('.__reduce__()[1][%d]' % i, arg)
                     for i, arg in enumerate(reduced[1]))
    if len(reduced) > 2:
        found.extend(_attributes(reduced[2]))
    if len(reduced) > 3 and reduced[3] is not None:
        found.extend(('[%d]' % i, item) for i, item in enumerate(reduced[3]))
    if len(reduced) > 4 and reduced[4] is not None:
        found.extend(('[%s]' % _short_repr(key), item)
                     for key, item in reduced[4])
    return found


def _find_unpicklable(value, path, depth, seen):
    """(path, value, error) of the innermost value that cannot be pickled."""
    if is_reference(value):
        return None
    error = _probe(value)
    if error is None:
        return None
    if depth < _MAX_DEPTH and id(value) not in seen:
        seen.add(id(value))
        for suffix, child in _children(value):
            found = _find_unpicklable(child, path + suffix, depth + 1, seen)
            if found is not None:
                return found
    return path, value, error


def find_path(state, test):
    """The attribute path to the first value of ``state`` passing ``test``."""
    seen = set()
    pending = [(suffix, child) for suffix, child in _attributes(state)]
    pending.reverse()
    while pending:
        path, value = pending.pop()
        if test(value):
            return path
        if is_reference(value) or id(value) in seen:
            continue
        seen.add(id(value))
        children = _children(value)
        for suffix, child in reversed(children):
            pending.append((path + suffix, child))
    return ''


def _what(value):
    cls = type(value)
    if cls.__module__ == 'builtins':
        name = cls.__name__
    else:
        name = '%s.%s' % (cls.__module__, cls.__qualname__)
    article = 'an' if name[:1].lower() in 'aeiou' else 'a'
    return '%s %s' % (article, name)


def unpicklable_error(obj, meta, state, first_error):
    """The SerializationError naming where in ``obj``'s state the value
    that cannot be pickled sits (``first_error``: what the pickler raised)."""
    if _probe(meta) is not None:
        return errors.SerializationError(
            'cannot store %s: its class cannot be pickled by reference (%s)'
            % (describe(obj), first_error))
    found = None
    seen = set()
    for suffix, child in _attributes(state):
        found = _find_unpicklable(child, suffix, 1, seen)
        if found is not None:
            break
    if found is None:
        return errors.SerializationError(
            'cannot store %s: %s: %s'
            % (describe(obj), type(first_error).__name__, first_error))
    path, value, error = found
    return errors.SerializationError(
        'cannot store %s: %s is %s, which cannot be pickled (%s)'
        % (describe(obj), path, _what(value), error))


def foreign_reference_error(obj, state, target, why):
    """The InvalidObjectReference for ``obj`` referring to ``target`` of
    another jar (``why`` is 'weak' for a weak reference)."""
    path = find_path(state, lambda value: value is target or (
        isinstance(value, WeakRef)
        and getattr(value, '_v_ob', None) is target))
    where = ('%s refers' % path) if path else 'it refers'
    if why == 'weak':
        where += ' weakly'
    if getattr(target, '_p_jar', None) is None:
        whose = 'which has an oid but no connection (was it removed ' \
                'from its database?)'
    else:
        whose = ('which belongs to another connection or database; '
                 'objects may refer only to objects of their own '
                 'connection')
    return errors.InvalidObjectReference(
        'cannot store %s: %s to %s, %s'
        % (describe(obj), where, describe(target), whose))
