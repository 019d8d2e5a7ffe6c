"""One connection's view of a PMemStorage (``new_instance()``).

An instance reads one :class:`.snapshot.Snapshot`, pinned so that nothing
it reaches is freed; ``poll_invalidations`` moves it to the newest commit
and reports what other instances changed meanwhile. Writes go to the
storage (one transaction at a time, under its commit lock); an instance's
own commits are not reported back to it. A historical instance
(``before_instance``) never moves and refuses writes.
"""
from zope.interface import implementer

from objstore import errors
from objstore import interfaces
from objstore.storages.base import p64, u64


def _writer(name):
    def method(self, *args):
        if self._historical:
            raise errors.ReadOnlyHistoryError(
                'cannot %s: this view of %s shows the database as of tid %s'
                ' and is read-only' % (name, self._storage.getName(),
                                       errors.oid_repr(self._snapshot.tid)))
        return getattr(self._storage, name)(*args)
    method.__name__ = name
    return method


def _reader(name):
    def method(self, *args, **kw):
        return getattr(self._storage, name)(*args, **kw)
    method.__name__ = name
    return method


class _Released:
    """The snapshot of a released instance: every read refuses."""

    def __init__(self, instance):
        self.tid = instance._snapshot.tid
        self._name = instance._storage.getName()

    def load(self, oid):
        raise errors.StorageClosedError(
            'this instance of %s was released' % self._name)


@implementer(interfaces.IMVCCStorage, interfaces.ReadVerifyingStorage,
             interfaces.IExternalGC)
class PMemInstance:
    """Reads the snapshot of the last ``poll_invalidations``; see the
    module docstring. Use it from one thread at a time."""

    _released = False

    def __init__(self, storage, snapshot, historical=False):
        self._storage = storage
        self._snapshot = snapshot
        self._historical = historical

    def __repr__(self):
        return '<PMemInstance of %s at %s>' % (
            self._storage.getName(), errors.oid_repr(self._snapshot.tid))

    # -- IMVCCStorage ----------------------------------------------------------

    def new_instance(self):
        return self._storage.new_instance()

    def poll_invalidations(self):
        """Move to the newest commit; return the oids other instances (or
        processes) changed since the last poll, a list (ZODB's connection
        hands it to its cache as is). A historical instance never moves:
        always empty."""
        if self._released:
            raise errors.StorageClosedError(
                'this instance of %s was released' % self._storage.getName())
        if self._historical:
            return []
        return self._storage._repin(self)

    def sync(self, force=True):
        """Let a read-only process see the writer's newest root at the
        next poll (the snapshot itself moves only there)."""
        if force and not self._historical:
            self._storage.sync()

    def release(self):
        """Unpin the snapshot; the instance is not used again."""
        if self._released:
            return
        self._released = True
        snapshot, self._snapshot = self._snapshot, _Released(self)
        self._storage._unpin(snapshot)

    close = release

    def load(self, oid):
        """``(data, tid)`` of ``oid`` in this instance's snapshot."""
        return self._snapshot.load(oid)

    def loadBefore(self, oid, tid):  # ZODB's protocol name
        """As the storage's, seen from this snapshot (``tid`` at most just
        after it)."""
        limit = p64(u64(self._snapshot.tid) + 1)
        return self._storage.loadBefore(oid, min(tid, limit))

    def lastTransaction(self):
        """The tid of the snapshot this instance reads."""
        return self._snapshot.tid

    def isReadOnly(self):
        return self._historical or self._storage.isReadOnly()

    def supportsUndo(self):
        return False

    # -- delegated to the storage ------------------------------------------------

    loadSerial = _reader('loadSerial')
    history = _reader('history')
    getName = _reader('getName')
    sortKey = _reader('sortKey')
    getSize = _reader('getSize')
    history_start = _reader('history_start')
    registerDB = _reader('registerDB')
    pack = _writer('pack')
    new_oid = _writer('new_oid')
    store = _writer('store')
    restore = _writer('restore')
    deleteObject = _writer('deleteObject')
    checkCurrentSerialInTransaction = _writer(
        'checkCurrentSerialInTransaction')
    tpc_vote = _writer('tpc_vote')

    def __len__(self):
        return len(self._storage)

    def __bool__(self):
        return True

    def tpc_begin(self, transaction, tid=None, status=' '):
        if self._historical:
            _writer('tpc_begin')(self, transaction)
        self._storage.tpc_begin(transaction, tid, status)
        # The commit lock is ours now: the storage reports this commit to
        # every instance but this one.
        self._storage._committer = self

    def tpc_finish(self, transaction, func=lambda tid: None):
        if self._historical:
            _writer('tpc_finish')(self, transaction)
        return self._storage.tpc_finish(transaction, func)

    def tpc_abort(self, transaction):
        if not self._historical:
            self._storage.tpc_abort(transaction)
