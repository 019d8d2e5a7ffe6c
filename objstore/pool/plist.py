"""PersistentList: a list kept in a pool, slices included.

It behaves as a ``list`` does (same methods, results, exceptions and
messages, comparisons with lists in both directions), with three
deliberate differences: slicing, ``+``, ``*`` and :meth:`copy` return
plain lists (new in-memory values, not new pool objects); a call that
raises changes nothing (``extend`` from a generator that fails half way
adds nothing, where ``list`` keeps the first items); and only values a
pool can store are accepted once the list is in a pool (``TypeError``
otherwise). Its record holds the items as a plain list.
"""
from objstore.pool.base import PoolPersistent


def _items(other):
    if isinstance(other, PersistentList):
        return other._data
    return other


class PersistentList(PoolPersistent):
    """``PersistentList([iterable])``: a list kept in a pool."""

    __hash__ = None

    def __init__(self, iterable=(), /):
        values = list(iterable)
        with self._pool_change(values):
            self._data = values

    # -- state (persistent's protocol) -------------------------------------

    def __getstate__(self):
        return self._data

    def __setstate__(self, state):
        # A copy: copy.copy() passes our own list here.
        self._data = list(state)

    def _pool_values(self):
        return self._data

    # -- reading -----------------------------------------------------------

    def __len__(self):
        return len(self._data)

    def __getitem__(self, index):
        return self._data[index]

    def __iter__(self):
        return iter(self._data)

    def __reversed__(self):
        return reversed(self._data)

    def __contains__(self, value):
        return value in self._data

    def index(self, *args):
        return self._data.index(*args)

    def count(self, value):
        return self._data.count(value)

    def copy(self):
        """A plain list with the same items."""
        return self._data.copy()

    def __repr__(self):
        return '%s(%r)' % (type(self).__name__, self._data)

    def __eq__(self, other):
        other = _items(other)
        return self._data == other if isinstance(other, list) \
            else NotImplemented

    def __ne__(self, other):
        other = _items(other)
        return self._data != other if isinstance(other, list) \
            else NotImplemented

    def __lt__(self, other):
        other = _items(other)
        return self._data < other if isinstance(other, list) \
            else NotImplemented

    def __le__(self, other):
        other = _items(other)
        return self._data <= other if isinstance(other, list) \
            else NotImplemented

    def __gt__(self, other):
        other = _items(other)
        return self._data > other if isinstance(other, list) \
            else NotImplemented

    def __ge__(self, other):
        other = _items(other)
        return self._data >= other if isinstance(other, list) \
            else NotImplemented

    def __add__(self, other):
        other = _items(other)
        if not isinstance(other, list):
            return NotImplemented
        return self._data + other

    def __radd__(self, other):
        if not isinstance(other, list):
            return NotImplemented
        return other + self._data

    def __mul__(self, n):
        return self._data * n

    __rmul__ = __mul__

    # -- changing ----------------------------------------------------------

    def __setitem__(self, index, value):
        if isinstance(index, slice):
            values = list(value)
            with self._pool_change(values):
                self._data[index] = values
                self._p_changed = True
            return
        with self._pool_change((value,)):
            self._data[index] = value
            self._p_changed = True

    def __delitem__(self, index):
        with self._pool_change():
            del self._data[index]
            self._p_changed = True

    def append(self, value):
        with self._pool_change((value,)):
            self._data.append(value)
            self._p_changed = True

    def extend(self, iterable):
        values = list(iterable)
        with self._pool_change(values):
            self._data.extend(values)
            self._p_changed = True

    def __iadd__(self, iterable):
        self.extend(iterable)
        return self

    def __imul__(self, n):
        with self._pool_change():
            self._data *= n
            self._p_changed = True
        return self

    def insert(self, index, value):
        with self._pool_change((value,)):
            self._data.insert(index, value)
            self._p_changed = True

    def pop(self, *args):
        with self._pool_change():
            value = self._data.pop(*args)
            self._p_changed = True
        return value

    def remove(self, value):
        with self._pool_change():
            self._data.remove(value)
            self._p_changed = True

    def clear(self):
        with self._pool_change():
            self._data.clear()
            self._p_changed = True

    def reverse(self):
        with self._pool_change():
            self._data.reverse()
            self._p_changed = True

    def sort(self, *, key=None, reverse=False):
        with self._pool_change():
            # Sort a copy: a key or comparison that raises leaves the list
            # as it was (list.sort may leave it half sorted).
            items = self._data.copy()
            items.sort(key=key, reverse=reverse)
            self._data[:] = items
            self._p_changed = True
