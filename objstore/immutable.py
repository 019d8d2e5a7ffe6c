"""Immutable objects and collections, persistent (shoobx.immutable's API).

An immutable is built transient (inside :func:`create`), then locked for
good; :func:`update` yields a transient clone to change and locks it at the
end of the block. Each class is a ``persistent.Persistent``: immutables live
in any objstore database, load lazily, and their lock is part of their
stored state, so a locked object is still locked after it is loaded again.

Compared with shoobx.immutable, every way of writing to a locked object
raises (``del``, in-place operators, slice assignment, the internal storage,
``__im_state__``), values inside tuples are conformed too, and the guards
are exceptions, not ``assert``. The collections live in
:mod:`objstore.immutable_collections` and are re-exported here.

Structural sharing: a locked object never changes again, so a clone made
by :func:`update` shares its locked sub-objects instead of copying them.
Sub-objects reached through the clone are lent: the clone holds a
transient copy of each (made when the clone is made for attributes, when
an item is first read for collections), so writes through it work as in
shoobx.immutable. When the block ends, every lent copy that nothing wrote
to is dropped and the original put back, so the new object shares (in
memory and in storage) everything the block did not change.
"""
import contextlib
import functools

import persistent
from zope.interface import implementer

from objstore import errors
from objstore import interfaces

__all__ = [
    'create', 'update', 'failOnNonTransient', 'ImmutableBase', 'Immutable',
    'ImmutableDict', 'ImmutableList', 'ImmutableSet', 'ImmutableError',
    'ImmutableStateError',
]

MASTER = interfaces.IM_MODE_MASTER
SLAVE = interfaces.IM_MODE_SLAVE
LOCKED = interfaces.IM_STATE_LOCKED
TRANSIENT = interfaces.IM_STATE_TRANSIENT

#: The seed's messages, kept word for word: callers match on them.
LOCKED_MESSAGE = 'Cannot update locked immutable object.'
MASTER_ONLY_MESSAGE = 'update() is only available for master immutables.'

# Attributes of this prefix hold a collection's items; only this module
# writes them.
_STORAGE_PREFIX = '_im_'
_set_raw = persistent.Persistent.__setattr__
# Dunder names are bookkeeping, writable when locked, except these: they
# would replace the whole state, the class or the mode.
_GUARDED_DUNDERS = frozenset({'__im_mode__', '__dict__', '__class__'})


# Defined with the other errors; importable from here as well.
ImmutableError = errors.ImmutableError
ImmutableStateError = errors.ImmutableStateError


def create(cls, *args, **kw):
    """Return ``cls.__im_create__(*args, **kw)``: a context manager yielding
    a factory whose objects are locked when the block ends."""
    return cls.__im_create__(*args, **kw)


def update(im, *args, **kw):
    """Return ``im.__im_update__(*args, **kw)``: a context manager yielding
    a transient clone of ``im``, locked when the block ends."""
    return im.__im_update__(*args, **kw)


# shoobx.immutable's name, part of its public API.
def failOnNonTransient(func):
    """Decorate a method so it raises ImmutableError unless its object is
    transient."""

    @functools.wraps(func)
    def wrapper(inst, *args, **kwargs):
        if inst.__im_state__ != TRANSIENT:
            raise ImmutableError(LOCKED_MESSAGE)
        return func(inst, *args, **kwargs)

    return wrapper


# Exact types that are never IImmutable: most items are one of these, and
# asking zope.interface costs far more than a set lookup.
_PLAIN = frozenset({str, int, float, bool, bytes, type(None), tuple,
                    frozenset, dict, list, set})
# Of those, the ones that hold no other value.
_SCALARS = frozenset({str, int, float, bool, bytes, type(None)})


def _is_immutable(value):
    if type(value) in _PLAIN:
        return False
    if isinstance(value, ImmutableBase):
        return True
    return interfaces.IImmutable.providedBy(value)


def _check_transient(obj):
    if obj.__im_state__ != TRANSIENT:
        raise ImmutableError(LOCKED_MESSAGE)


def _adopt(owner, value, current=None):
    """``value`` conformed to become a sub-object of ``owner``.

    A slave already belongs to another immutable (or to this one): taking
    it would give it two parents, so it is refused, unless it is
    ``current``, the value being replaced (``d[k] += ...`` stores back the
    object it read).
    """
    if value is current and current is not None:
        return value
    if _is_immutable(value) and value.__im_mode__ != MASTER:
        raise errors.InvalidArgumentError(
            '%s is a sub-object of another immutable and cannot be added to'
            ' %s; add a copy of it instead'
            % (type(value).__name__, type(owner).__name__))
    return owner.__im_conform__(value)


def _rebuild_tuple(value, items):
    if all(a is b for a, b in zip(items, value)):
        return value
    if type(value) is tuple:
        return items
    # A named tuple keeps its class.
    make = getattr(type(value), '_make', None)
    if make is None:
        raise errors.InvalidArgumentError(
            'a %s holding mutable values cannot be made immutable'
            % type(value).__name__)
    return make(items)


def _shared_or_cloned(value):
    """``value`` for a new object derived from the one holding it.

    Locked slaves never change again, so the new object shares them; any
    other immutable is cloned, so that each slave keeps one parent.
    """
    if _is_immutable(value):
        if value.__im_state__ == LOCKED and value.__im_mode__ == SLAVE:
            return value
        clone = value.__im_clone__()
        _set_raw(clone, '__im_mode__', SLAVE)
        return clone
    if isinstance(value, tuple):
        return _rebuild_tuple(
            value, tuple(_shared_or_cloned(v) for v in value))
    return value


def _lend(value):
    """A transient copy of a held value whose immutables are lent clones:
    each remembers its original in ``_v_im_origin``, so that an unchanged
    one can be swapped back when its holder is locked."""
    if _is_immutable(value):
        if value.__im_state__ == TRANSIENT:
            return value
        clone = value.__im_clone__()
        _set_raw(clone, '__im_mode__', SLAVE)
        _set_raw(clone, '_v_im_origin', value)
        return clone
    if isinstance(value, tuple):
        return _rebuild_tuple(value, tuple(_lend(v) for v in value))
    return value


def _settle(value):
    """``value`` with every lent clone in it that nothing changed replaced
    by its original (which is then shared); changed clones stay."""
    if _is_immutable(value):
        origin = value.__dict__.get('_v_im_origin')
        if origin is None or value.__im_state__ != TRANSIENT:
            return value
        if value._im_settle():
            return value
        # Dropped; locked so that a reference kept to it cannot be
        # mistaken for a writable part of the new object.
        value.__im_set_state__(LOCKED)
        return origin
    if isinstance(value, tuple):
        return _rebuild_tuple(value, tuple(_settle(v) for v in value))
    return value


def _same(a, b):
    """Whether ``a`` holds exactly the objects ``b`` holds."""
    if a is b:
        return True
    return (type(a) is type(b) and isinstance(a, tuple) and len(a) == len(b)
            and all(_same(x, y) for x, y in zip(a, b)))


def _cloned(value):
    """A transient copy of a held value (items of the internal storage
    included), with every immutable inside it cloned."""
    if _is_immutable(value):
        return value.__im_clone__()
    if isinstance(value, tuple):
        return _rebuild_tuple(value, tuple(_cloned(v) for v in value))
    if isinstance(value, dict):
        return type(value)({k: _cloned(v) for k, v in value.items()})
    if isinstance(value, list):
        return type(value)([_cloned(v) for v in value])
    if isinstance(value, set):
        return type(value)({_cloned(v) for v in value})
    return value


def _immutables_in(value):
    """The immutables held in ``value`` (an attribute or internal storage)."""
    if _is_immutable(value):
        yield value
        return
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, (tuple, list, set, frozenset)):
        return
    for item in value:
        if type(item) not in _SCALARS:
            yield from _immutables_in(item)


@implementer(interfaces.IImmutable)
class ImmutableBase(persistent.Persistent):
    """What every immutable shares: states, modes, create and update.

    Meant as a base class; objects made directly (not through
    :func:`create`) are transient masters.
    """

    __im_mode__ = MASTER
    __im_state__ = TRANSIENT

    def __im_conform__(self, object):
        if isinstance(object, tuple):
            return _rebuild_tuple(
                object, tuple(_adopt(self, v) for v in object))
        if isinstance(object, frozenset):
            for item in object:
                if _adopt(self, item) is not item:
                    raise errors.InvalidArgumentError(
                        'a frozenset can hold only values immutable as they'
                        ' are; %r is not' % (item,))
            return object
        if isinstance(object, interfaces.IMMUTABLE_TYPES):
            return object
        if _is_immutable(object):
            if object.__im_state__ != TRANSIENT:
                object = object.__im_clone__()
            _set_raw(object, '__im_mode__', SLAVE)
            return object
        for kind, immutable_kind in _COLLECTIONS:
            if isinstance(object, kind):
                # What __im_create__(mode=SLAVE, finalize=False) does, without
                # a context manager per item: these classes add no hooks.
                new = immutable_kind(object)
                _set_raw(new, '__im_mode__', SLAVE)
                return new
        if hasattr(object, '__im_get__'):
            new = object.__im_get__(mode=SLAVE)
            if not (_is_immutable(new) and new.__im_state__ == TRANSIENT
                    and new.__im_mode__ == SLAVE):
                raise errors.InvalidArgumentError(
                    '%s.__im_get__() must return a new transient slave'
                    ' immutable' % type(object).__name__)
            return new
        raise errors.InvalidArgumentError(
            'Unable to conform object to immutable.', object)

    def __im_clone__(self):
        """A transient copy. Of a locked object it is shallow: locked
        sub-objects are shared, and the immutables held in attributes are
        lent (see the module docstring); of a transient one it is deep,
        since a transient object's slaves can still change."""
        self._p_activate()
        cls = type(self)
        clone = cls.__new__(cls)
        shallow = self.__im_state__ != TRANSIENT
        lent = {}
        for name, value in self.__dict__.items():
            if name == '__im_state__' or name.startswith('_v_'):
                continue
            if name.startswith(_STORAGE_PREFIX):
                value = self._im_clone_storage(clone, value, shallow)
            elif not shallow:
                value = _cloned(value)
            elif not self.__im_is_internal_attr__(name):
                new = _lend(value)
                if new is not value:
                    lent[name] = value
                value = new
            clone.__dict__[name] = value
        if lent:
            clone.__dict__['_v_im_lent_attrs'] = lent
        return clone

    def _im_clone_storage(self, clone, value, shallow):
        """The internal storage ``value`` for ``clone`` (collections)."""
        return value if shallow else _cloned(value)

    def _im_settle(self):
        """Put back the originals of unchanged lent sub-objects; return
        whether this object differs from the one it was cloned from."""
        changed = self.__dict__.get('_v_im_dirty', False)
        lent = self.__dict__.pop('_v_im_lent_attrs', None) or {}
        for name, original in lent.items():
            if name not in self.__dict__:
                continue
            current = self.__dict__[name]
            settled = _settle(current)
            if _same(settled, original):
                self.__dict__[name] = original
            else:
                changed = True
                self.__dict__[name] = settled
        return changed

    def _im_sub_immutables(self):
        """The immutables this object holds that may still be transient."""
        for name, value in self.__dict__.items():
            if not name.startswith('_v_'):
                yield from _immutables_in(value)

    def __im_set_state__(self, state):
        """Set the state. Locking locks the sub-objects too; retiring and
        deleting concern this object only: its locked sub-objects may be
        shared with later revisions and stay locked."""
        if state not in interfaces.IM_STATES_REVISIONED:
            raise errors.InvalidArgumentError(
                'unknown immutable state %r' % (state,))
        current = self.__im_state__
        if current == state:
            return
        if state == TRANSIENT:
            raise ImmutableStateError(
                'A %s immutable never becomes transient again; update()'
                ' gives a transient clone.' % current)
        _set_raw(self, '__im_state__', state)
        if current == TRANSIENT:
            for sub in list(self._im_sub_immutables()):
                sub.__im_set_state__(state)
            self.__dict__.pop('_v_im_dirty', None)

    def __im_finalize__(self):
        if self.__im_state__ != TRANSIENT:
            raise ImmutableStateError(
                'Cannot finalize an immutable in state: %s'
                % self.__im_state__)
        self._im_settle()
        self.__im_set_state__(LOCKED)

    def __im_after_create__(self, *args, **kw):
        pass

    def __im_before_update__(self, clone):
        pass

    def __im_after_update__(self, clone):
        pass

    @classmethod
    @contextlib.contextmanager
    def __im_create__(cls, mode=None, finalize=True,
                      *create_args, **create_kw):
        if mode is not None and mode not in interfaces.IM_MODES:
            raise errors.InvalidArgumentError(
                'unknown immutable mode %r' % (mode,))
        created = []

        def factory(*args, **kw):
            obj = cls(*args, **kw)
            obj.__im_after_create__(*create_args, **create_kw)
            created.append(obj)
            return obj

        factory.created = created
        yield factory
        for obj in created:
            if mode is not None:
                _set_raw(obj, '__im_mode__', mode)
            if finalize:
                obj.__im_finalize__()

    @contextlib.contextmanager
    def __im_update__(self, *args, **kw):
        if self.__im_state__ in interfaces.IM_STATES_OUTDATED:
            raise ImmutableStateError('Cannot update an outdated object.')
        if self.__im_mode__ != MASTER:
            raise ImmutableError(MASTER_ONLY_MESSAGE)
        if self.__im_state__ == TRANSIENT:
            yield self
            return
        clone = self.__im_clone__()
        self.__im_before_update__(clone, *args, **kw)
        yield clone
        clone.__im_finalize__()
        self.__im_after_update__(clone, *args, **kw)

    def __im_is_internal_attr__(self, name):
        return name.startswith('__') and name.endswith('__')

    def _im_check_write(self, name):
        """Raise unless ``name`` may be set or deleted now."""
        if name == '__im_state__':
            raise ImmutableError(
                '__im_state__ of %s cannot be set directly; use'
                ' __im_set_state__()' % type(self).__name__)
        if name.startswith(_STORAGE_PREFIX):
            raise ImmutableError(
                '%s is the internal storage of %s and cannot be set'
                % (name, type(self).__name__))
        if name in _GUARDED_DUNDERS or not self.__im_is_internal_attr__(name):
            _check_transient(self)

    def __setattr__(self, name, value):
        # The jar and the cache set _p_ attributes; _v_ ones are volatile.
        if name.startswith(('_p_', '_v_')):
            _set_raw(self, name, value)
            return
        self._im_check_write(name)
        if name == '__im_mode__':
            if value not in interfaces.IM_MODES:
                raise errors.InvalidArgumentError(
                    'unknown immutable mode %r' % (value,))
        elif not self.__im_is_internal_attr__(name):
            value = _adopt(self, value, self.__dict__.get(name))
        _set_raw(self, name, value)
        _set_raw(self, '_v_im_dirty', True)

    def __delattr__(self, name):
        if not name.startswith(('_p_', '_v_')):
            self._im_check_write(name)
            if name == '__im_mode__':
                raise ImmutableError('__im_mode__ cannot be deleted')
            _check_transient(self)
            _set_raw(self, '_v_im_dirty', True)
        persistent.Persistent.__delattr__(self, name)


@implementer(interfaces.IImmutableObject)
class Immutable(ImmutableBase):
    """Base class of application immutables: set attributes in __init__."""


# The collections subclass ImmutableBase, and __im_conform__ makes them, so
# they come last; objstore/__init__ imports this module first, so this
# import finds ImmutableBase defined whichever module a caller imports.
from objstore.immutable_collections import (  # noqa: E402
    ImmutableDict, ImmutableList, ImmutableSet)

_COLLECTIONS = ((dict, ImmutableDict), (list, ImmutableList),
                (set, ImmutableSet))
