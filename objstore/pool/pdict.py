"""PersistentDict: a dict kept in a pool.

It behaves as a ``dict`` does (insertion order, views, ``|``, equality
with dicts in both directions, ``__missing__`` in subclasses), with the
differences of :mod:`objstore.pool.plist`: :meth:`copy` and ``|`` return
plain dicts; a call that raises changes nothing (``update`` with a bad
element adds none of the elements before it, where ``dict`` keeps them);
keys and values must be values a pool can store once the dict is in a
pool. Its views (``keys()``, ``values()``, ``items()``) show the dict as
it was loaded: once the pool has dropped the object from memory (after an
abort or a gc) and loaded it again, take new views. Its record holds the
items as a plain dict.
"""
from objstore.pool.base import PoolPersistent

_MISSING = object()


def _items(other):
    if isinstance(other, PersistentDict):
        return other._data
    return other


class PersistentDict(PoolPersistent):
    """``PersistentDict([mapping_or_iterable], **kwarg)``: a dict kept in
    a pool."""

    __hash__ = None

    def __init__(self, *args, **kw):
        data = dict(*args, **kw)
        with self._pool_change(_keys_and_values(data)):
            self._data = data

    @classmethod
    def fromkeys(cls, iterable, value=None, /):
        """A new dict of this class (in no pool yet), as dict.fromkeys."""
        return cls(dict.fromkeys(iterable, value))

    # -- state (persistent's protocol) -------------------------------------

    def __getstate__(self):
        return self._data

    def __setstate__(self, state):
        # A copy: copy.copy() passes our own dict here.
        self._data = dict(state)

    def _pool_values(self):
        return _keys_and_values(self._data)

    # -- reading -----------------------------------------------------------

    def __len__(self):
        return len(self._data)

    def __getitem__(self, key):
        try:
            return self._data[key]
        except KeyError:
            missing = getattr(type(self), '__missing__', None)
            if missing is None:
                raise
        return missing(self, key)

    def __iter__(self):
        return iter(self._data)

    def __reversed__(self):
        return reversed(self._data)

    def __contains__(self, key):
        return key in self._data

    def get(self, key, default=None):
        return self._data.get(key, default)

    def keys(self):
        return self._data.keys()

    def values(self):
        return self._data.values()

    def items(self):
        return self._data.items()

    def copy(self):
        """A plain dict with the same items."""
        return self._data.copy()

    def __repr__(self):
        return '%s(%r)' % (type(self).__name__, self._data)

    def __eq__(self, other):
        other = _items(other)
        return self._data == other if isinstance(other, dict) \
            else NotImplemented

    def __ne__(self, other):
        other = _items(other)
        return self._data != other if isinstance(other, dict) \
            else NotImplemented

    def __or__(self, other):
        other = _items(other)
        if not isinstance(other, dict):
            return NotImplemented
        return self._data | other

    def __ror__(self, other):
        if not isinstance(other, dict):
            return NotImplemented
        return other | self._data

    # -- changing ----------------------------------------------------------

    def __setitem__(self, key, value):
        with self._pool_change((key, value)):
            self._data[key] = value
            self._p_changed = True

    def __delitem__(self, key):
        with self._pool_change():
            del self._data[key]
            self._p_changed = True

    def setdefault(self, key, default=None):
        if key in self._data:
            return self._data[key]
        with self._pool_change((key, default)):
            value = self._data.setdefault(key, default)
            self._p_changed = True
        return value

    def pop(self, key, default=_MISSING):
        if key not in self._data:
            if default is _MISSING:
                raise KeyError(key)
            return default
        with self._pool_change():
            value = self._data.pop(key)
            self._p_changed = True
        return value

    def popitem(self):
        with self._pool_change():
            item = self._data.popitem()
            self._p_changed = True
        return item

    def update(self, *args, **kw):
        # dict.update's own argument handling and messages, on a scratch
        # dict first, so a bad argument changes nothing.
        changes = {}
        changes.update(*args, **kw)
        if not changes:
            return
        with self._pool_change(_keys_and_values(changes)):
            self._data.update(changes)
            self._p_changed = True

    def __ior__(self, other):
        changes = {}
        changes.update(_items(other))
        self.update(changes)
        return self

    def clear(self):
        if not self._data:
            return
        with self._pool_change():
            self._data.clear()
            self._p_changed = True


def _keys_and_values(data):
    for key, value in data.items():
        yield key
        yield value
