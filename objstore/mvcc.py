"""One way for the database to drive every storage: as an IMVCCStorage.

A natively MVCC storage (ZODB's ``MVCCMappingStorage``, PostgreSQL later)
hands out instances itself. A plain storage (objstore's MemoryStorage and
FileStorage, ZODB's FileStorage and MappingStorage) is wrapped in an
:class:`MVCCAdapter`, which gives each connection an instance with its own
snapshot and relays invalidations between the instances:

* ``new_instance()``: reads as of the snapshot taken at its last
  ``poll_invalidations()``, through ``loadBefore``; writes pass through to
  the storage, and its commits are reported to every other instance.
* ``before_instance(before)`` and :func:`historical`: read-only views
  pinned at a past moment (``db.open(at=...)``).

Against ZODB's own adapter: the same design, plus ZODB's exceptions turned
into objstore's. The storage protocol names (``loadBefore``,
``tpc_begin``...) are ZODB's and keep their camelCase. This module never
imports ZODB: it recognises ZODB's interfaces and exceptions by name.
"""
import threading

from zope.interface import implementer

from objstore import errors
from objstore.interfaces import IMVCCStorage, IStorage, IStorageWrapper
# is_mvcc, translating, HistoricalInstance and historical are part of this
# module's API (the DB uses them).
from objstore.foreign import is_mvcc, passing_errors, translating
from objstore.historical import HistoricalInstance, historical
from objstore.serialize import references as _references
from objstore.views import (
    Delegating, load_before_start, maxtid, p64, pass_through, raise_ours, u64,
    z64)

__all__ = ['MVCCAdapter', 'MVCCInstance', 'HistoricalInstance',
           'historical', 'is_mvcc', 'translating']


class _Writing(Delegating):
    """Two-phase commit through a view, remembering the oids it writes.

    Subclasses say, in ``_committed``, whom those oids are reported to.
    """

    _txn = None         # the transaction this view began
    _written = None     # oids stored or deleted: reported to the others
    _undone = None      # oids undo rewrote: reported to everyone

    checkCurrentSerialInTransaction = pass_through('checkCurrentSerialInTransaction')

    def __init__(self, storage):
        super().__init__(storage)
        # new_oid and store are called once per object. Their bound methods
        # are looked up once (ZODB's MappingStorage makes a new one at each
        # lookup), and ZODB's errors are translated without the frame of
        # a wrapper (a try costs nothing until it catches); objstore's
        # storages raise objstore's errors, so their new_oid is used as is.
        self._new_oid = getattr(storage, 'new_oid', None)
        self._store = getattr(storage, 'store', None)
        if IStorage.providedBy(storage):
            self.new_oid = storage.new_oid

    def new_oid(self):
        try:
            return self._new_oid()
        except Exception as exc:
            raise_ours(exc)

    @passing_errors
    def tpc_begin(self, transaction, tid=None):
        """As the storage's. ZODB's storages need transaction metadata
        (``extension_bytes``...), not a ``transaction.Transaction``."""
        if tid is None:
            self._storage.tpc_begin(transaction)
        else:
            self._storage.tpc_begin(transaction, tid)
        # Only now: tpc_begin held us until the commit lock was ours, so
        # these belong to this transaction alone until it ends.
        self._txn = transaction
        self._written, self._undone = set(), set()

    def store(self, oid, serial, data, version, transaction):
        try:
            self._store(oid, serial, data, version, transaction)
        except Exception as exc:
            raise_ours(exc)
        self._written.add(oid)

    @passing_errors
    def deleteObject(self, oid, serial, transaction):
        self._storage.deleteObject(oid, serial, transaction)
        self._written.add(oid)

    @passing_errors
    def undo(self, transaction_id, transaction):
        """Undo through the storage; the oids it rewrites are reported to
        every instance, this one too (its cached copies are stale)."""
        result = self._storage.undo(transaction_id, transaction)
        if result:
            self._undone.update(result[1])
        return result

    @passing_errors
    def tpc_vote(self, transaction):
        """Returns the list of oids whose conflicts the storage resolved."""
        return list(self._storage.tpc_vote(transaction) or ())

    @passing_errors
    def tpc_finish(self, transaction, func=lambda tid: None):
        """Commit and return the tid; ``func(tid)`` is called after every
        other instance was told what changed."""
        mine = transaction is self._txn
        written, undone = self._written or set(), self._undone or set()
        committed = []

        def finish(tid):
            committed.append(tid)
            # Before the storage reports tid in lastTransaction: an
            # instance whose snapshot covers tid must know what it changed.
            self._committed(tid, written | undone, undone)
            func(tid)

        tid = self._storage.tpc_finish(transaction, finish)
        if mine:
            self._end()
        return tid if tid is not None else committed[0]

    def tpc_abort(self, transaction):
        mine = transaction is self._txn
        self._storage.tpc_abort(transaction)
        # Another transaction's abort must not clear the state of the one
        # committing (the storage ignores it too).
        if mine:
            self._end()

    def _end(self):
        self._txn = self._written = self._undone = None


@implementer(IMVCCStorage, IStorageWrapper)
class MVCCAdapter(_Writing):
    """Drives a plain storage as an IMVCCStorage; its IStorageWrapper.

    ``MVCCAdapter(storage)`` calls ``storage.registerDB(self)``. Connections
    use ``new_instance()`` (own snapshot) or ``before_instance(before)``
    (read-only, pinned). The adapter itself has no snapshot: its ``load``
    reads the newest revision and ``poll_invalidations()`` returns None.
    Commits made through the adapter are reported to every instance. It
    declares the capability interfaces (iteration, undo, external GC, read
    verification) its storage declares. Thread-safe.
    """

    _closed = False

    def __init__(self, storage):
        super().__init__(storage)
        # Guards the instance set and every instance's invalidations and
        # snapshot bookkeeping; never held while calling into the storage,
        # which calls back into us with its own lock held.
        self._lock = threading.Lock()
        self._instances = set()
        self._declare_capabilities()
        register = getattr(storage, 'registerDB', None)
        if register is not None:
            register(self)

    # -- IMVCCStorage -----------------------------------------------------

    def new_instance(self):
        """An instance with its own snapshot, of the newest commit."""
        if self._closed:
            raise errors.StorageClosedError(
                'storage %s is closed' % self._storage.getName())
        instance = MVCCInstance(self)
        with self._lock:
            self._instances.add(instance)
        # Registered first, so no commit falls between the snapshot and
        # the invalidations the instance collects.
        instance.poll_invalidations()
        return instance

    def before_instance(self, before):
        """A read-only instance showing the database just before ``before``
        (an exclusive tid); what it shows never changes."""
        return HistoricalInstance(self._storage, before)

    def load(self, oid):
        """``(data, serial)`` of the newest revision; POSKeyError if none."""
        return self._load_before(oid, maxtid)

    def poll_invalidations(self):
        """Always None: the adapter has no snapshot to report against."""
        return None

    def sync(self, force=True):
        """Let the storage catch up with other processes' commits."""
        sync = getattr(self._storage, 'sync', None)
        if sync is not None:
            sync()

    def release(self):
        """Nothing to free: ``close()`` ends the adapter and its storage."""

    def close(self):
        """Close the storage; instances are unusable afterwards."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            self._instances.clear()
        self._storage.close()

    @passing_errors
    def pack(self, t, referencesf=None, gc=None):
        """Pack the storage (GC through ``referencesf``, by default
        objstore.serialize.references); the next poll of every instance
        returns None, as pack may have removed states caches hold."""
        if gc is None:
            self._storage.pack(t, referencesf or _references)
        else:
            self._storage.pack(t, referencesf or _references, gc)
        self.invalidateCache()

    def _committed(self, tid, oids, undone):
        self._report(tid, oids, None)

    # -- IStorageWrapper --------------------------------------------------

    def invalidate(self, tid, oids):
        """The storage reports a commit made elsewhere (another process);
        every instance's next poll returns ``oids``."""
        self._report(tid, oids, None)

    def invalidateCache(self):
        """The storage cannot say what changed: every instance's next poll
        returns None."""
        with self._lock:
            for instance in self._instances:
                instance._changed = None

    def references(self, record, oids=None):
        return _references(record, oids)

    # ZODB's storages ask their wrapper for these in registerDB (hooks for
    # wrappers that compress or encrypt records); records stay as they are.
    def transform_record_data(self, data):
        return data

    untransform_record_data = transform_record_data

    # -- relaying ---------------------------------------------------------

    def _report(self, tid, oids, committer, own=()):
        oids = tuple(oids)
        with self._lock:
            for instance in self._instances:
                instance._note(tid, own if instance is committer else oids)

    def _release(self, instance):
        with self._lock:
            self._instances.discard(instance)


@implementer(IMVCCStorage)
class MVCCInstance(_Writing):
    """One connection's view of an adapted storage (``new_instance()``).

    ``load`` reads the snapshot taken at the last ``poll_invalidations()``;
    the instance's own commits are visible from the next poll on and never
    reported by it. Use it from one thread at a time; other instances may
    run in other threads.
    """

    _released = False

    def __init__(self, adapter):
        super().__init__(adapter._storage)
        self._adapter = adapter
        self._sync = getattr(adapter._storage, 'sync', None)
        # Guarded by the adapter's lock: the oids changed by others since
        # the last poll (None: unknown) and the newest tid reported here.
        self._changed = set()
        self._seen = z64
        self._start = p64(1)     # loads read the revisions before it
        self._declare_capabilities()

    def _note(self, tid, oids):
        # Called with the adapter's lock held.
        if self._changed is not None:
            self._changed.update(oids)
        if tid > self._seen:
            self._seen = tid

    def new_instance(self):
        return self._adapter.new_instance()

    load = load_before_start

    def poll_invalidations(self):
        """Move the snapshot to the newest commit; return the set of oids
        other instances (or other processes) changed since the last poll,
        or None when that is unknown (drop the whole cache)."""
        if self._released:
            raise errors.StorageClosedError(
                'this instance of %s was released' % self.getName())
        if self._sync is not None:
            # Other processes' commits reach invalidate() only here.
            self._sync()
        last = self._storage.lastTransaction()
        with self._adapter._lock:
            # A commit may have reported to us after lastTransaction was
            # read; its oids are in the set, so the snapshot includes it.
            if self._seen > last:
                last = self._seen
            self._start = p64(u64(last) + 1)
            changed, self._changed = self._changed, set()
        return changed

    def sync(self, force=True):
        """Let the storage catch up with other processes' commits (with
        ``force`` false, leave it to the next poll, which always does).

        The snapshot itself moves only at ``poll_invalidations``: moving
        it here, without handing out what changed, would mix new states
        with stale cached ones.
        """
        if force and self._sync is not None:
            self._sync()

    def release(self):
        """Stop receiving invalidations; the instance is not used again."""
        self._released = True
        self._adapter._release(self)

    close = release

    def pack(self, t, referencesf=None, gc=None):
        self._adapter.pack(t, referencesf, gc)

    def _committed(self, tid, oids, undone):
        self._adapter._report(tid, oids, self, undone)
