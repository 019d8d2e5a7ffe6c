"""ImmutableDict, ImmutableList and ImmutableSet (see objstore.immutable).

Each keeps its items in a sealed builtin (``_im_data``): a dict, list or
set subclass whose mutating methods raise, so the storage cannot be changed
behind the guards; this module changes it through the builtin's own
methods, after them. The items are the builtin's, so reads cost what they
cost on dict, list and set. Operations that derive a new collection from a
locked one (slices, ``+``, ``*``, ``|``, ``copy()``) give a locked one
sharing the locked sub-objects; from a transient one, a transient one
holding clones.
"""
import collections.abc

from zope.interface import implementer

from objstore import interfaces
from objstore.immutable import (
    ImmutableBase, ImmutableError, SLAVE, TRANSIENT, _adopt,
    _check_transient, _cloned, _is_immutable, _set_raw, _shared_or_cloned,
    failOnNonTransient)

__all__ = ['ImmutableDict', 'ImmutableList', 'ImmutableSet']

STORAGE_MESSAGE = ('The internal storage of an immutable cannot be changed'
                   ' directly.')


def _refuse(self, *args, **kw):
    raise ImmutableError(STORAGE_MESSAGE)


class _Items(dict):
    """An ImmutableDict's items. Its mutating methods raise: only this
    module changes it, through dict's own methods, after its guards."""

    __slots__ = ()

    def __reduce__(self):
        # Unpickling a dict subclass would call the refusing __setitem__.
        return type(self), (dict(self),)


class _ItemList(list):
    """An ImmutableList's items; see _Items."""

    __slots__ = ()

    def __reduce__(self):
        return type(self), (list(self),)


class _ItemSet(set):
    """An ImmutableSet's items; see _Items."""

    __slots__ = ()

    def __reduce__(self):
        return type(self), (list(self),)


for _type, _names in [
        (_Items, ('__setitem__', '__delitem__', '__ior__', 'clear', 'pop',
                  'popitem', 'setdefault', 'update')),
        (_ItemList, ('__setitem__', '__delitem__', '__iadd__', '__imul__',
                     'append', 'extend', 'insert', 'pop', 'remove', 'clear',
                     'reverse', 'sort')),
        (_ItemSet, ('__ior__', '__iand__', '__isub__', '__ixor__', 'add',
                    'discard', 'remove', 'pop', 'clear', 'update',
                    'difference_update', 'intersection_update',
                    'symmetric_difference_update'))]:
    for _name in _names:
        setattr(_type, _name, _refuse)
del _type, _names, _name


class _Collection(ImmutableBase):
    """A collection keeping its items in ``_im_data``."""

    def _im_store(self, data):
        _set_raw(self, '_im_data', self._im_storage_type(data))

    def _im_changed(self):
        # In-place changes of the storage do not pass through __setattr__.
        self._p_changed = True

    def _im_derive(self, data):
        """A new master of this class holding ``data`` (items already made
        shared or cloned), locked unless this object is transient."""
        cls = type(self)
        new = cls.__new__(cls)
        new._im_store(data)
        if self.__im_state__ != TRANSIENT:
            new.__im_finalize__()
        return new

    def copy(self):
        """A new object with equal items, in this object's state."""
        return self._im_derive(self._im_copy_items(_shared_or_cloned))

    def __repr__(self):
        return repr(self._im_data)

    def __len__(self):
        return len(self._im_data)

    def __iter__(self):
        return iter(self._im_data)

    def __contains__(self, value):
        return value in self._im_data


@implementer(interfaces.IImmutable)
class ImmutableDict(_Collection, collections.abc.MutableMapping):
    """An immutable dict: dict's reads, order, equality and repr."""

    _im_storage_type = _Items

    def __init__(self, *args, **kw):
        self._im_store(())
        for key, value in dict(*args, **kw).items():
            self[key] = value

    def _im_copy_items(self, convert):
        return {k: convert(v) for k, v in self._im_data.items()}

    def __getitem__(self, key):
        return self._im_data[key]

    def __setitem__(self, key, value):
        _check_transient(self)
        dict.__setitem__(self._im_data, key,
                         _adopt(self, value, self._im_data.get(key)))
        self._im_changed()

    def __delitem__(self, key):
        _check_transient(self)
        dict.__delitem__(self._im_data, key)
        self._im_changed()

    def get(self, key, default=None):
        return self._im_data.get(key, default)

    # dict's own views: read-only, with dict's reprs.
    def keys(self):
        return self._im_data.keys()

    def values(self):
        return self._im_data.values()

    def items(self):
        return self._im_data.items()

    def _im_taken(self, other):
        """Items of another mapping, made fit for a derived dict."""
        return {k: _shared_or_cloned(v) if _is_immutable(v)
                else _adopt(self, v) for k, v in other.items()}

    def __reversed__(self):
        return reversed(self._im_data)

    def __eq__(self, other):
        if isinstance(other, collections.abc.Mapping):
            return self._im_data == dict(other.items())
        return NotImplemented

    __hash__ = None

    @failOnNonTransient
    def clear(self):
        dict.clear(self._im_data)
        self._im_changed()

    @failOnNonTransient
    def update(self, *args, **kw):
        for key, value in dict(*args, **kw).items():
            self[key] = value

    @failOnNonTransient
    def setdefault(self, key, default=None):
        if key not in self._im_data:
            self[key] = default
        return self._im_data[key]

    @failOnNonTransient
    def pop(self, key, *default):
        value = dict.pop(self._im_data, key, *default)
        self._im_changed()
        return value

    @failOnNonTransient
    def popitem(self):
        item = dict.popitem(self._im_data)
        self._im_changed()
        return item

    @classmethod
    def fromkeys(cls, iterable, value=None):
        """A locked dict mapping each key of ``iterable`` to ``value``."""
        with cls.__im_create__() as factory:
            new = factory()
            for key in iterable:
                new[key] = value
        return new

    def __or__(self, other):
        if not isinstance(other, collections.abc.Mapping):
            return NotImplemented
        data = self._im_copy_items(_shared_or_cloned)
        data.update(self._im_taken(other))
        return self._im_derive(data)

    def __ror__(self, other):
        if not isinstance(other, collections.abc.Mapping):
            return NotImplemented
        data = self._im_taken(other)
        data.update(self._im_copy_items(_shared_or_cloned))
        return self._im_derive(data)

    @failOnNonTransient
    def __ior__(self, other):
        self.update(other)
        return self


@implementer(interfaces.IImmutable)
class ImmutableList(_Collection, collections.abc.MutableSequence):
    """An immutable list: list's reads, order, equality and repr."""

    _im_storage_type = _ItemList

    def __init__(self, iterable=()):
        self._im_store(())
        for value in iterable:
            self.append(value)

    def _im_copy_items(self, convert):
        return [convert(v) for v in self._im_data]

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self._im_derive(
                [_shared_or_cloned(v) for v in self._im_data[index]])
        return self._im_data[index]

    def __setitem__(self, index, value):
        _check_transient(self)
        if isinstance(index, slice):
            value = [_adopt(self, v) for v in value]
        else:
            value = _adopt(self, value, self._im_data[index])
        list.__setitem__(self._im_data, index, value)
        self._im_changed()

    def __delitem__(self, index):
        _check_transient(self)
        list.__delitem__(self._im_data, index)
        self._im_changed()

    def __reversed__(self):
        return reversed(self._im_data)

    def index(self, value, *args):
        return self._im_data.index(value, *args)

    def count(self, value):
        return self._im_data.count(value)

    @staticmethod
    def _im_plain(other):
        if isinstance(other, ImmutableList):
            return other._im_data
        return other

    def __eq__(self, other):
        if isinstance(other, (list, ImmutableList)):
            return self._im_data == self._im_plain(other)
        return NotImplemented

    def __lt__(self, other):
        if isinstance(other, (list, ImmutableList)):
            return self._im_data < self._im_plain(other)
        return NotImplemented

    def __le__(self, other):
        if isinstance(other, (list, ImmutableList)):
            return self._im_data <= self._im_plain(other)
        return NotImplemented

    def __gt__(self, other):
        if isinstance(other, (list, ImmutableList)):
            return self._im_data > self._im_plain(other)
        return NotImplemented

    def __ge__(self, other):
        if isinstance(other, (list, ImmutableList)):
            return self._im_data >= self._im_plain(other)
        return NotImplemented

    __hash__ = None

    def _im_taken(self, values):
        """Items of another iterable, made fit for a derived list."""
        return [_shared_or_cloned(v) if _is_immutable(v) else _adopt(self, v)
                for v in values]

    def __add__(self, other):
        if not isinstance(other, (list, tuple, ImmutableList)):
            return NotImplemented
        return self._im_derive(
            self._im_copy_items(_shared_or_cloned) + self._im_taken(other))

    def __radd__(self, other):
        if not isinstance(other, (list, tuple)):
            return NotImplemented
        return self._im_derive(
            self._im_taken(other) + self._im_copy_items(_shared_or_cloned))

    def __mul__(self, n):
        if not isinstance(n, int):
            return NotImplemented
        data = []
        for _ in range(n):
            data.extend(self._im_copy_items(_shared_or_cloned))
        return self._im_derive(data)

    __rmul__ = __mul__

    @failOnNonTransient
    def __iadd__(self, other):
        self.extend(other)
        return self

    @failOnNonTransient
    def __imul__(self, n):
        # Each copy gets its own clones: a slave has one parent.
        copies = [self._im_copy_items(_cloned) for _ in range(n - 1)]
        if n <= 0:
            list.clear(self._im_data)
        for items in copies:
            for value in items:
                if _is_immutable(value):
                    _set_raw(value, '__im_mode__', SLAVE)
            list.extend(self._im_data, items)
        self._im_changed()
        return self

    @failOnNonTransient
    def append(self, value):
        list.append(self._im_data, _adopt(self, value))
        self._im_changed()

    @failOnNonTransient
    def extend(self, values):
        if values is self:
            values = list(self._im_data)
        for value in values:
            self.append(value)

    @failOnNonTransient
    def insert(self, index, value):
        list.insert(self._im_data, index, _adopt(self, value))
        self._im_changed()

    @failOnNonTransient
    def pop(self, index=-1):
        value = list.pop(self._im_data, index)
        self._im_changed()
        return value

    @failOnNonTransient
    def remove(self, value):
        list.remove(self._im_data, value)
        self._im_changed()

    @failOnNonTransient
    def clear(self):
        list.clear(self._im_data)
        self._im_changed()

    @failOnNonTransient
    def reverse(self):
        list.reverse(self._im_data)
        self._im_changed()

    @failOnNonTransient
    def sort(self, *, key=None, reverse=False):
        list.sort(self._im_data, key=key, reverse=reverse)
        self._im_changed()


@implementer(interfaces.IImmutable)
class ImmutableSet(_Collection, collections.abc.MutableSet):
    """An immutable set: set's reads, operators, equality and repr."""

    _im_storage_type = _ItemSet

    def __init__(self, iterable=()):
        self._im_store(())
        for value in iterable:
            self.add(value)

    def _im_copy_items(self, convert):
        return {convert(v) for v in self._im_data}

    def _from_iterable(self, values):
        # collections.abc.Set builds operator results with this; results
        # derive from this set, sharing its locked items.
        return self._im_derive(
            {_shared_or_cloned(v) if _is_immutable(v) else _adopt(self, v)
             for v in values})

    def __repr__(self):
        # set's repr names a subclass; the storage is one.
        if not self._im_data:
            return 'set()'
        return '{%s}' % ', '.join(map(repr, self._im_data))

    def __hash__(self):
        return hash(frozenset(self._im_data))

    @failOnNonTransient
    def add(self, value):
        set.add(self._im_data, _adopt(self, value))
        self._im_changed()

    @failOnNonTransient
    def discard(self, value):
        set.discard(self._im_data, value)
        self._im_changed()

    @failOnNonTransient
    def remove(self, value):
        set.remove(self._im_data, value)
        self._im_changed()

    @failOnNonTransient
    def pop(self):
        value = set.pop(self._im_data)
        self._im_changed()
        return value

    @failOnNonTransient
    def clear(self):
        set.clear(self._im_data)
        self._im_changed()

    @failOnNonTransient
    def __ior__(self, other):
        for value in other:
            self.add(value)
        return self

    @failOnNonTransient
    def __iand__(self, other):
        other = set(other)
        for value in [v for v in self._im_data if v not in other]:
            self.discard(value)
        return self

    @failOnNonTransient
    def __isub__(self, other):
        for value in list(other):
            self.discard(value)
        return self

    @failOnNonTransient
    def __ixor__(self, other):
        for value in set(other):
            if value in self._im_data:
                self.discard(value)
            else:
                self.add(value)
        return self
