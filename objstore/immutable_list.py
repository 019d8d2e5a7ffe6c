"""ImmutableList (see objstore.immutable and objstore.immutable_collections).

Small lists keep their items in a sealed list; big ones in a
:class:`~objstore.immutable_trees.TrieVector`, so that changing one item of
a committed list writes O(log n) bytes. In an update block an immutable
item read by index is lent (a transient copy takes its place, and the
original comes back when the block ends if nothing wrote to it and it is
still where it was).
"""
import collections.abc

from zope.interface import implementer

from objstore import interfaces
from objstore.immutable import (
    SLAVE, TRANSIENT, _adopt, _check_transient, _cloned, _is_immutable,
    _lend, _same, _set_raw, _settle, _shared_or_cloned, failOnNonTransient)
from objstore.immutable_collections import BIG, _Collection, _ItemList
from objstore.immutable_trees import TrieVector

__all__ = ['ImmutableList']


@implementer(interfaces.IImmutable)
class ImmutableList(_Collection, collections.abc.MutableSequence):
    """An immutable list: list's reads, order, equality and repr."""

    _im_storage_type = _ItemList

    def __init__(self, iterable=()):
        self._im_store([_adopt(self, value) for value in iterable])
        self._im_changed()

    def _im_tree_of(self, items):
        return TrieVector.from_iterable(items, self)

    def _im_list(self):
        """The items as a list (the small storage itself when small)."""
        data = self._im_data
        if isinstance(data, TrieVector):
            return list(data)
        return data

    def _im_replace(self, items):
        """Store ``items`` (a list) as the whole content."""
        if isinstance(self._im_data, TrieVector) and len(items) > BIG:
            _set_raw(self, '_im_data', TrieVector.from_iterable(items, self))
        else:
            self._im_store(items)
        self.__dict__.pop('_v_im_lent', None)
        self._im_changed()

    def _im_put_at(self, index, value):
        data = self._im_data
        if isinstance(data, TrieVector):
            data.set(index, value, self)
            # The vector is part of this record: a copied root changes it.
            self._p_changed = True
        else:
            list.__setitem__(data, index, value)

    def _im_copy_items(self, convert):
        return [convert(v) for v in self._im_items()]

    def _im_items(self):
        if self.__im_state__ == TRANSIENT:
            return [self[i] for i in range(len(self._im_data))]
        return self._im_data

    def _im_settle(self):
        changed = super()._im_settle()
        lent = self.__dict__.pop('_v_im_lent', None) or ()
        data = self._im_data
        for index, clone, original in lent:
            if index >= len(data) or data[index] is not clone:
                # Moved or replaced: the structural change made this list
                # differ already; the clone stays where it went.
                continue
            settled = _settle(clone)
            if _same(settled, original):
                self._im_put_at(index, original)
            else:
                self._im_put_at(index, settled)
                self._p_changed = True
                changed = True
        return changed

    def __getitem__(self, index):
        data = self._im_data
        if isinstance(index, slice):
            return self._im_derive(
                [_shared_or_cloned(v) for v in self._im_items()[index]])
        value = data[index]
        if self.__im_state__ != TRANSIENT:
            return value
        new = _lend(value)
        if new is not value:
            if index < 0:
                index += len(data)
            self._im_put_at(index, new)
            lent = self.__dict__.get('_v_im_lent')
            if lent is None:
                lent = []
                _set_raw(self, '_v_im_lent', lent)
            lent.append((index, new, value))
        return new

    def __setitem__(self, index, value):
        _check_transient(self)
        if isinstance(index, slice):
            items = list(self._im_list())
            items[index] = [_adopt(self, v) for v in value]
            self._im_replace(items)
            return
        self._im_put_at(index, _adopt(self, value, self._im_data[index]))
        self._im_changed()

    def __delitem__(self, index):
        _check_transient(self)
        data = self._im_data
        if isinstance(index, slice):
            items = list(self._im_list())
            del items[index]
            self._im_replace(items)
            return
        if isinstance(data, TrieVector):
            if index < 0:
                index += len(data)
            if not 0 <= index < len(data):
                raise IndexError('list assignment index out of range')
            data.delete(index, self)
        else:
            list.__delitem__(data, index)
        self._im_changed()

    def __repr__(self):
        return repr(self._im_list())

    def __reversed__(self):
        return reversed(self._im_data)

    def index(self, value, *args):
        return self._im_list().index(value, *args)

    def count(self, value):
        return self._im_list().count(value)

    def _im_plain(self, other):
        if isinstance(other, ImmutableList):
            return other._im_list()
        return other

    def __eq__(self, other):
        if isinstance(other, (list, ImmutableList)):
            if len(self) != len(other):
                return False
            return self._im_list() == self._im_plain(other)
        return NotImplemented

    def __lt__(self, other):
        if isinstance(other, (list, ImmutableList)):
            return self._im_list() < self._im_plain(other)
        return NotImplemented

    def __le__(self, other):
        if isinstance(other, (list, ImmutableList)):
            return self._im_list() <= self._im_plain(other)
        return NotImplemented

    def __gt__(self, other):
        if isinstance(other, (list, ImmutableList)):
            return self._im_list() > self._im_plain(other)
        return NotImplemented

    def __ge__(self, other):
        if isinstance(other, (list, ImmutableList)):
            return self._im_list() >= self._im_plain(other)
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
        items = list(self._im_list())
        # Each copy gets its own clones: a slave has one parent.
        for _ in range(n - 1):
            copy = self._im_copy_items(_cloned)
            for value in copy:
                if _is_immutable(value):
                    _set_raw(value, '__im_mode__', SLAVE)
            items.extend(copy)
        self._im_replace(items if n > 0 else [])
        return self

    @failOnNonTransient
    def append(self, value):
        data = self._im_data
        value = _adopt(self, value)
        if isinstance(data, TrieVector):
            data.append(value, self)
        else:
            list.append(data, value)
        self._im_changed()

    @failOnNonTransient
    def extend(self, values):
        if values is self:
            values = list(self._im_list())
        for value in values:
            self.append(value)

    @failOnNonTransient
    def insert(self, index, value):
        data = self._im_data
        value = _adopt(self, value)
        if isinstance(data, TrieVector):
            # list.insert's clamping: out-of-range indexes insert at an end.
            size = len(data)
            if index < 0:
                index = max(0, index + size)
            data.insert(min(index, size), value, self)
        else:
            list.insert(data, index, value)
        self._im_changed()

    @failOnNonTransient
    def pop(self, index=-1):
        data = self._im_data
        if not data:
            raise IndexError('pop from empty list')
        value = self[index]
        del self[index]
        return value

    @failOnNonTransient
    def remove(self, value):
        del self[self.index(value)]

    @failOnNonTransient
    def clear(self):
        self._im_replace([])

    @failOnNonTransient
    def reverse(self):
        self._im_replace(list(reversed(self._im_list())))

    @failOnNonTransient
    def sort(self, *, key=None, reverse=False):
        items = list(self._im_list())
        items.sort(key=key, reverse=reverse)
        self._im_replace(items)
