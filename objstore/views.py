"""What every view of a storage the database reads through has in common.

A view (:mod:`objstore.mvcc`'s adapter and instances, :mod:`objstore.historical`'s
pinned views) passes reads and descriptions straight to its storage and
turns a ZODB storage's exceptions into objstore's.
"""
from zope.interface import alsoProvides

from objstore import errors
from objstore.foreign import passing_errors, provides, translate
from objstore.interfaces import (
    IExternalGC, IStorageIteration, IStorageUndoable, ReadVerifyingStorage)

# Not imported from objstore.storages: that package loads every storage
# (and BTrees, which loads ZODB when installed); the core needs neither.
z64 = b'\0' * 8
maxtid = b'\x7f\xff\xff\xff\xff\xff\xff\xff'


def p64(n):
    return n.to_bytes(8, 'big')


def u64(b):
    return int.from_bytes(b, 'big')


def raise_ours(exc):
    """Raise what a ZODB storage raised as objstore's exception (``exc``
    itself when it has no objstore counterpart); call it in ``except``."""
    ours = translate(exc)
    if ours is None:
        raise exc
    raise ours from exc


def pass_through(name):
    """A method calling the storage's method ``name`` with its arguments."""
    def method(self, *args):
        return getattr(self._storage, name)(*args)
    method.__name__ = name
    return passing_errors(method)


class Delegating:
    """Reads and descriptions every view passes straight to the storage."""

    # Methods a storage may or may not have (capabilities, ZODB extras):
    # a view has one exactly when its storage has it, so callers can
    # keep testing for them with getattr/hasattr.
    _optional = ('history_start', 'iterator', 'record_iternext', 'getTid',
                 'supportsUndo', 'undoLog', 'undoInfo')

    def __init__(self, storage):
        self._storage = storage
        self._loadBefore = storage.loadBefore

    def __getattr__(self, name):
        if name in self._optional:
            return getattr(self._storage, name)
        raise AttributeError(name)

    def _declare_capabilities(self):
        for iface in (IStorageIteration, IStorageUndoable, IExternalGC,
                      ReadVerifyingStorage):
            if provides(self._storage, iface):
                alsoProvides(self, iface)

    def __len__(self):
        return len(self._storage)

    def __bool__(self):
        # An empty storage is still a storage: ``if storage:`` must not
        # fall back on __len__.
        return True

    def loadBefore(self, oid, tid):
        """As the storage's, with ZODB's POSKeyError made objstore's."""
        try:
            return self._loadBefore(oid, tid)
        except errors.POSKeyError:
            raise
        except KeyError as exc:
            raise errors.POSKeyError(oid) from exc

    def _load_before(self, oid, tid):
        """``(data, serial)`` current before ``tid``; POSKeyError if none."""
        result = self.loadBefore(oid, tid)
        if result is None:
            raise errors.POSKeyError(oid)
        return result[0], result[1]

    getName = pass_through('getName')
    sortKey = pass_through('sortKey')
    getSize = pass_through('getSize')
    lastTransaction = pass_through('lastTransaction')
    isReadOnly = pass_through('isReadOnly')
    loadSerial = pass_through('loadSerial')
    history = pass_through('history')

    def registerDB(self, wrapper):
        """Does nothing: the adapter is the storage's wrapper and tells
        the views what they need."""


def load_before_start(self, oid):
    """``load`` of the views that read as of a moment (``self._start``, an
    exclusive tid): ``(data, serial)`` of the revision of ``oid`` current
    just before it; POSKeyError if the object did not exist then (or was
    deleted). Bound as a method, so a load is one call into the storage."""
    try:
        result = self._loadBefore(oid, self._start)
    except errors.POSKeyError:
        raise
    except KeyError as exc:
        raise errors.POSKeyError(oid) from exc
    if result is None:
        raise errors.POSKeyError(oid)
    return result[0], result[1]
