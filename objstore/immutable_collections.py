"""ImmutableDict and ImmutableSet (see objstore.immutable); ImmutableList
lives in :mod:`objstore.immutable_list`.

A collection keeps its items in ``_im_data``, in one of two forms:

* small (up to :data:`BIG` items): a sealed builtin, a dict, list or set
  subclass whose mutating methods raise, so the storage cannot be changed
  behind the guards; this module changes it through the builtin's own
  methods, after them. Reads cost what they cost on dict, list and set, and
  the items are stored inline in the collection's record.
* big: a persistent path-copying tree (:mod:`objstore.immutable_trees`),
  whose nodes are records of their own. Changing one item of a committed
  collection writes the collection's small record and the nodes on one
  path, O(log n) bytes; a clone shares every node.

A collection grows from the first form into the second when it passes
:data:`BIG` items and stays there. Both keep dict, list and set semantics:
order, equality and repr. Operations that derive a new collection from a
locked one (slices, ``+``, ``*``, ``|``, ``copy()``) give a locked one
sharing the locked sub-objects; from a transient one, a transient one
holding clones.
"""
import collections.abc

from zope.interface import implementer

from objstore import interfaces
from objstore.immutable import (
    ImmutableBase, ImmutableError, SLAVE, TRANSIENT, _adopt,
    _check_transient, _cloned, _immutables_in, _is_immutable, _lend,
    _same, _set_raw, _settle, _shared_or_cloned, failOnNonTransient)
from objstore.immutable_trees import TrieMap, TrieVector

__all__ = ['ImmutableDict', 'ImmutableSet', 'BIG']

#: Items beyond which a collection is stored as a tree of records.
BIG = 64

STORAGE_MESSAGE = ('The internal storage of an immutable cannot be changed'
                   ' directly.')
_MISSING = object()
_TREES = (TrieMap, TrieVector)


def _refuse(self, *args, **kw):
    raise ImmutableError(STORAGE_MESSAGE)


class _Items(dict):
    """A small ImmutableDict's items. Its mutating methods raise: only this
    module changes it, through dict's own methods, after its guards."""

    __slots__ = ()

    def __reduce__(self):
        # Unpickling a dict subclass would call the refusing __setitem__.
        return type(self), (dict(self),)


class _ItemList(list):
    """A small ImmutableList's items; see _Items."""

    __slots__ = ()

    def __reduce__(self):
        return type(self), (list(self),)


class _ItemSet(set):
    """A small ImmutableSet's items; see _Items."""

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
    """A collection keeping its items in ``_im_data`` (small or big)."""

    def _im_store(self, data):
        """Store ``data`` (an iterable of items) in the small form; it
        grows into a tree when it is locked (see __im_finalize__)."""
        _set_raw(self, '_im_data', self._im_storage_type(data))

    def __im_finalize__(self):
        # A transient collection that started small stays small until it
        # is locked, then becomes a tree in one go if it passed BIG: cheaper
        # than growing the tree item by item, and only the locked form is
        # ever shared.
        super().__im_finalize__()
        data = self._im_data
        if not isinstance(data, _TREES) and len(data) > BIG:
            _set_raw(self, '_im_data', self._im_tree_of(data))

    def _im_big(self):
        return isinstance(self._im_data, _TREES)

    def _im_changed(self):
        # In-place changes of the storage do not pass through __setattr__.
        self._p_changed = True
        _set_raw(self, '_v_im_dirty', True)

    def _im_clone_storage(self, clone, value, shallow):
        if shallow:
            # Locked items are shared; a tree shares its nodes.
            return value.copy() if isinstance(value, _TREES) else \
                type(value)(value)
        if isinstance(value, _TREES):
            return clone._im_tree_of(self._im_copy_items(_cloned))
        return _cloned(value)

    def _im_sub_immutables(self):
        for name, value in self.__dict__.items():
            if name.startswith('_v_'):
                continue
            if isinstance(value, _TREES):
                # Transient items can only be in nodes made under this
                # object: every shared node comes from a locked source.
                for item in value.changed_values(self):
                    yield from _immutables_in(item)
            else:
                yield from _immutables_in(value)

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
        if self.__im_state__ != TRANSIENT:
            cls = type(self)
            new = cls.__new__(cls)
            _set_raw(new, '_im_data',
                     self._im_clone_storage(new, self._im_data, True))
            new.__im_finalize__()
            return new
        return self._im_derive(self._im_copy_items(_shared_or_cloned))

    def __len__(self):
        return len(self._im_data)

    def __iter__(self):
        return iter(self._im_data)

    def __contains__(self, value):
        return value in self._im_data


@implementer(interfaces.IImmutable)
class ImmutableDict(_Collection, collections.abc.MutableMapping):
    """An immutable dict: dict's reads, order, equality and repr.

    In an update block, an immutable value read from the dict is lent: the
    block gets a transient copy to write to, and the original comes back
    when the block ends if nothing wrote to it.
    """

    _im_storage_type = _Items

    def __init__(self, *args, **kw):
        # What setting each item does, in one pass: a new dict has no
        # current values and nothing lent.
        self._im_store({key: _adopt(self, value)
                        for key, value in dict(*args, **kw).items()})
        self._im_changed()

    def _im_tree_of(self, items):
        tree = TrieMap()
        tree.update(dict(items).items(), self)
        return tree

    def _im_put(self, key, value):
        data = self._im_data
        if isinstance(data, TrieMap):
            data.set(key, value, self)
        else:
            dict.__setitem__(data, key, value)

    def _im_remove(self, key):
        data = self._im_data
        if isinstance(data, TrieMap):
            data.delete(key, self)
        else:
            dict.__delitem__(data, key)

    def _im_lent(self):
        lent = self.__dict__.get('_v_im_lent')
        if lent is None:
            lent = {}
            _set_raw(self, '_v_im_lent', lent)
        return lent

    def _im_lend(self, key):
        lent = self.__dict__.get('_v_im_lent')
        if lent:
            value = lent.get(key, _MISSING)
            if value is not _MISSING:
                return value
        value = self._im_data[key]
        new = _lend(value)
        if new is not value:
            self._im_lent()[key] = new
        return new

    def _im_settle(self):
        changed = super()._im_settle()
        lent = self.__dict__.pop('_v_im_lent', None) or {}
        for key, clone in lent.items():
            settled = _settle(clone)
            if not _same(settled, self._im_data[key]):
                self._im_put(key, settled)
                self._p_changed = True
                changed = True
        return changed

    def _im_items(self):
        """(key, value) pairs; in a transient dict values are lent."""
        if self.__im_state__ == TRANSIENT:
            return [(key, self._im_lend(key)) for key in self._im_data]
        return self._im_data.items()

    def _im_copy_items(self, convert):
        return {k: convert(v) for k, v in self._im_items()}

    def __getitem__(self, key):
        if self.__im_state__ == TRANSIENT:
            return self._im_lend(key)
        return self._im_data[key]

    def __setitem__(self, key, value):
        _check_transient(self)
        lent = self.__dict__.get('_v_im_lent')
        current = lent.pop(key, _MISSING) if lent else _MISSING
        if current is _MISSING:
            current = self._im_data.get(key)
        self._im_put(key, _adopt(self, value, current))
        self._im_changed()

    def __delitem__(self, key):
        _check_transient(self)
        self._im_remove(key)
        lent = self.__dict__.get('_v_im_lent')
        if lent:
            lent.pop(key, None)
        self._im_changed()

    def get(self, key, default=None):
        if self.__im_state__ == TRANSIENT:
            return self[key] if key in self._im_data else default
        return self._im_data.get(key, default)

    # Read-only views, with dict's reprs for the small form.
    def keys(self):
        return self._im_data.keys()

    def values(self):
        if self.__im_state__ == TRANSIENT:
            return collections.abc.ValuesView(self)
        return self._im_data.values()

    def items(self):
        if self.__im_state__ == TRANSIENT:
            return collections.abc.ItemsView(self)
        return self._im_data.items()

    def __repr__(self):
        data = self._im_data
        if not isinstance(data, TrieMap):
            return repr(data)
        return '{%s}' % ', '.join(
            '%r: %r' % item for item in data.items())

    def _im_taken(self, other):
        """Items of another mapping, made fit for a derived dict."""
        return {k: _shared_or_cloned(v) if _is_immutable(v)
                else _adopt(self, v) for k, v in other.items()}

    def __reversed__(self):
        data = self._im_data
        if isinstance(data, TrieMap):
            return reversed(list(data))
        return reversed(data)

    def __eq__(self, other):
        if isinstance(other, collections.abc.Mapping):
            if len(self) != len(other):
                return False
            data = self._im_data
            if isinstance(data, TrieMap):
                data = dict(data.items())
            return data == dict(other.items())
        return NotImplemented

    __hash__ = None

    @failOnNonTransient
    def clear(self):
        self._im_store(())
        self.__dict__.pop('_v_im_lent', None)
        self._im_changed()

    @failOnNonTransient
    def update(self, *args, **kw):
        for key, value in dict(*args, **kw).items():
            self[key] = value

    @failOnNonTransient
    def setdefault(self, key, default=None):
        if key not in self._im_data:
            self[key] = default
        return self[key]

    @failOnNonTransient
    def pop(self, key, *default):
        if key not in self._im_data:
            if default:
                return default[0]
            raise KeyError(key)
        value = self[key]
        del self[key]
        return value

    @failOnNonTransient
    def popitem(self):
        if not self._im_data:
            raise KeyError('popitem(): dictionary is empty')
        key = next(reversed(self))
        return key, self.pop(key)

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
class ImmutableSet(_Collection, collections.abc.MutableSet):
    """An immutable set: set's reads, operators, equality and repr.

    Items are shared as they are, never lent: an item of a set is found by
    its hash, which a change could break.
    """

    _im_storage_type = _ItemSet

    def __init__(self, iterable=()):
        self._im_store(_adopt(self, value) for value in iterable)
        self._im_changed()

    def _im_tree_of(self, items):
        tree = TrieMap()
        # Each item is its own value, so changed_values() finds the items.
        tree.update(((value, value) for value in items), self)
        return tree

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
        data = self._im_data
        if isinstance(data, TrieMap):
            if value not in data:
                value = _adopt(self, value)
                data.set(value, value, self)
        else:
            set.add(data, _adopt(self, value))
        self._im_changed()

    @failOnNonTransient
    def discard(self, value):
        data = self._im_data
        if isinstance(data, TrieMap):
            if value in data:
                data.delete(value, self)
        else:
            set.discard(data, value)
        self._im_changed()

    @failOnNonTransient
    def remove(self, value):
        if value not in self._im_data:
            raise KeyError(value)
        self.discard(value)

    @failOnNonTransient
    def pop(self):
        for value in self._im_data:
            break
        else:
            raise KeyError('pop from an empty set')
        self.discard(value)
        return value

    @failOnNonTransient
    def clear(self):
        self._im_store(())
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


# ImmutableList subclasses _Collection, so it comes last.
from objstore.immutable_list import ImmutableList  # noqa: E402
