"""The connection: one thread's view of the database, one transaction at a time.

A :class:`Connection` is the ``_p_jar`` of the objects it loads (persistent's
data-manager protocol: ``setstate``, ``register``, ``oldstate``), a
savepoint-capable data manager of the ``transaction`` package, and a
synchronizer of its transaction manager: at every transaction start it polls
its storage instance for what other connections committed and ghosts those
objects, so each transaction reads one snapshot. Objects are read and written
through an :class:`objstore.interfaces.IMVCCStorage` instance the database
hands out, and turned into records by :mod:`objstore.pickler`. The writing
half (two-phase commit, savepoints) is :mod:`objstore.commit`.

Method names such as ``setstate``, ``tpc_begin``, ``sortKey``,
``cacheMinimize`` or ``readCurrent`` are fixed by the protocols of
persistent, transaction and ZODB, so they do not follow snake_case.
"""
import transaction as transaction_package
from persistent import PickleCache
from persistent.interfaces import IPersistentDataManager
from transaction.interfaces import ISavepointDataManager, ISynchronizer
from zope.interface import implementer

from objstore import errors
from objstore.commit import DataManager, class_path, describe_tid
from objstore.interfaces import IConnection
from objstore.unpickler import ObjectReader
from objstore.storages.base import z64

oid_repr = errors.oid_repr


class Root:
    """``conn.root``: call it for the root mapping, or use its attributes.

    ``conn.root()['users']`` and ``conn.root.users`` are the same object;
    ``conn.root.users = x`` stores ``x`` under ``'users'``.
    """

    def __init__(self, mapping):
        self.__dict__['_mapping'] = mapping

    def __call__(self):
        return self._mapping

    def __getattr__(self, name):
        try:
            return self._mapping[name]
        except KeyError:
            raise AttributeError(
                'the root has no %r (its keys: %s)'
                % (name, ', '.join(sorted(map(str, self._mapping)))
                   or 'none')) from None

    def __setattr__(self, name, value):
        self._mapping[name] = value

    def __delattr__(self, name):
        try:
            del self._mapping[name]
        except KeyError:
            raise AttributeError(name) from None

    def __dir__(self):
        return sorted(str(k) for k in self._mapping)

    def __repr__(self):
        return '<root: %s>' % ' '.join(sorted(map(str, self._mapping)))


@implementer(IConnection, IPersistentDataManager, ISavepointDataManager,
             ISynchronizer)
class Connection(DataManager):
    """A view of the database for one thread; see ``IConnection``.

    Made by :meth:`objstore.db.DB.open`, not directly. ``before`` set means
    a historical, read-only connection showing the database just before
    that tid.
    """

    transaction_manager = None
    explicit_transactions = False

    def __init__(self, db, storage, cache_size=400, cache_size_bytes=0,
                 before=None):
        self._db = db
        self._storage = storage         # an IMVCCStorage instance
        self.before = before
        self._cache = PickleCache(self, cache_size, cache_size_bytes)
        self._reader = ObjectReader(self)
        self.opened = False
        self._needs_to_join = True
        self._registered = []           # objects changed since the last store
        self._added = {}                # oid -> object given to add()
        self._creating = {}             # oid -> new object being stored
        self._modified = []             # oids stored by the current commit
        self._read_current = {}         # oid -> serial readCurrent saw
        self._resolved = []             # oids the last commit merged
        self._poll_missed = False       # a poll failed after a commit
        self._prefetched = None         # (oid, (data, serial)) get() read
        self._savepoints = None         # SavepointStore while there are some
        self._loading = None            # the object setstate is filling
        self._referrers = {}            # ghost oid -> (holder oid, class)

    def __repr__(self):
        state = 'open' if self.opened else 'closed'
        if self.before is not None:
            state += ', before %s' % oid_repr(self.before)
        return '<Connection %s at 0x%x>' % (state, id(self))

    # -- life cycle (called by the DB) ------------------------------------

    def _open(self, transaction_manager=None):
        if transaction_manager is None:
            # The thread's own manager, not the thread-local proxy, so
            # close() from another thread unregisters from the right one.
            transaction_manager = transaction_package.manager.manager
        self.transaction_manager = transaction_manager
        self.explicit_transactions = getattr(
            transaction_manager, 'explicit', False)
        self.opened = True
        self.newTransaction(None, False)
        transaction_manager.registerSynch(self)
        self._cache.incrgc()

    def close(self):
        """Return the connection to its database's pool.

        Raises ``ConnectionStateError`` while it has changes in the current
        transaction (commit or abort first, as in ZODB). Closing again does
        nothing.
        """
        if not self.opened:
            return
        if not self._needs_to_join:
            raise errors.ConnectionStateError(
                'cannot close a connection with uncommitted changes in its'
                ' transaction; commit or abort first')
        self._cache.incrgc()
        if self.transaction_manager is not None:
            self.transaction_manager.unregisterSynch(self)
        self.transaction_manager = None
        self.opened = False
        self._db._return_connection(self)

    def _release(self):
        """Give the storage instance back; the connection is not reused."""
        self.opened = False
        if self.transaction_manager is not None:
            self.transaction_manager.unregisterSynch(self)
            self.transaction_manager = None
        if self._storage is not None:
            self._storage.release()
            self._storage = None
        self._cache = PickleCache(self, 0, 0)
        self._reader = ObjectReader(self)
        self._referrers = {}

    def _check_open(self, doing='use'):
        if not self.opened:
            raise errors.ConnectionStateError(
                'cannot %s: the connection is closed' % doing)

    def _check_writable(self, doing):
        if self.before is not None:
            raise errors.ReadOnlyHistoryError(
                'cannot %s: this connection shows the database as it was'
                ' before tid %s and is read-only'
                % (doing, describe_tid(self.before)))

    # -- IConnection --------------------------------------------------------

    def db(self):
        """The database this connection belongs to."""
        return self._db

    @property
    def root(self):
        """The root: ``conn.root()`` is the mapping, ``conn.root.x`` an item."""
        return Root(self.get(z64))

    def get(self, oid):
        """The object with ``oid``, a ghost until used; POSKeyError if the
        snapshot has no such object."""
        if not self.opened:
            self._check_open('get %s' % oid_repr(oid))
        obj = self._cache.get(oid)
        if obj is not None:
            return obj
        obj = self._added.get(oid)
        if obj is not None:
            return obj
        loaded = self._load(oid)
        obj = self._cache_ghost(oid, self._reader.new_ghost(oid, loaded[0]))
        # Read for the class; the object's first use reads the same record
        # from the same snapshot: keep it for setstate (not with savepoints,
        # whose rollback can change what a load returns).
        if self._savepoints is None:
            self._prefetched = (oid, loaded)
        return obj

    __getitem__ = get

    def get_ghost(self, oid, klass):
        """The cached object for ``oid``, else a ghost of ``klass`` (of the
        stored class when ``klass`` is None), cached, not loaded."""
        obj = self._cache.get(oid)
        if obj is None:
            obj = self._added.get(oid)
        if obj is not None:
            return obj
        holder = self._loading
        try:
            if klass is None:
                obj = self._reader.new_ghost(oid, self._load(oid)[0])
            else:
                obj = klass.__new__(klass)
        except errors.POSKeyError as exc:
            if holder is not None and exc.referenced_by is None:
                exc.referenced_by = 'oid %s (%s)' % (
                    oid_repr(holder._p_oid), class_path(holder))
            raise
        if holder is not None:
            # The class, not its name: formatting waits for an error.
            self._referrers[oid] = (holder._p_oid, type(holder))
        return self._cache_ghost(oid, obj)

    def _cache_ghost(self, oid, obj):
        if obj._p_oid is None:
            self._cache.new_ghost(oid, obj)
        else:
            if obj._p_changed is False:
                obj._p_deactivate()
            self._cache[oid] = obj
        return obj

    def new_oid(self):
        """A new oid from the storage."""
        if self.before is not None:
            self._check_writable('create objects')
        return self._storage.new_oid()

    def add(self, obj):
        """Give ``obj`` an oid and this jar now; it is stored at commit."""
        self._check_open('add an object')
        self._check_writable('add an object')
        if not hasattr(obj, '_p_oid'):
            raise TypeError(
                'only persistent objects can be added to a connection, not %s'
                % class_path(obj))
        if obj._p_jar is self:
            return
        if obj._p_jar is not None:
            raise errors.InvalidObjectReference(
                '%s %s belongs to another connection'
                % (class_path(obj), oid_repr(obj._p_oid)))
        if obj._p_oid is not None:
            raise errors.InvalidObjectReference(
                '%s has oid %s but no connection; it cannot be added'
                % (class_path(obj), oid_repr(obj._p_oid)))
        oid = obj._p_oid = self.new_oid()
        obj._p_jar = self
        self._register(obj)
        self._added[oid] = obj

    def cacheMinimize(self):
        """Ghost every unchanged cached object."""
        self._cache.minimize()

    def cacheGC(self):
        """Shrink the cache towards its target size."""
        self._cache.incrgc()

    def cacheSize(self):
        """The number of non-ghost objects in the cache."""
        return self._cache.cache_non_ghost_count

    def isReadOnly(self):
        """True for historical connections and read-only storages."""
        self._check_open()
        return self.before is not None or self._storage.isReadOnly()

    def sync(self):
        """Start a new transaction to see the latest committed state."""
        self._check_open()
        self.transaction_manager.begin()

    def readCurrent(self, obj):
        """Make this transaction's commit fail with ReadConflictError if
        ``obj`` changed since it was loaded."""
        serial = obj._p_serial
        if obj._p_oid is not None and serial != z64 and self.before is None:
            self._read_current[obj._p_oid] = serial

    # -- IPersistentDataManager --------------------------------------------

    def setstate(self, obj):
        """Load the state of the ghost ``obj``."""
        oid = obj._p_oid
        if not self.opened:
            raise errors.ConnectionStateError(
                'cannot load %s %s: the connection is closed'
                % (class_path(obj), oid_repr(oid)))
        holder, self._loading = self._loading, obj
        try:
            prefetched, self._prefetched = self._prefetched, None
            if (prefetched is not None and prefetched[0] == oid
                    and self._savepoints is None):
                data, serial = prefetched[1]
            else:
                data, serial = self._load(oid)
            self._reader.set_ghost_state(obj, data)
        except errors.POSKeyError as exc:
            if exc.referenced_by is None and exc.args and exc.args[0] == oid:
                referrer = self._referrers.get(oid)
                if referrer is not None:
                    exc.referenced_by = 'oid %s (%s.%s)' % (
                        oid_repr(referrer[0]), referrer[1].__module__,
                        referrer[1].__qualname__)
            raise
        finally:
            self._loading = holder
        obj._p_serial = serial
        self._cache.update_object_size_estimation(oid, len(data))
        obj._p_estimated_size = len(data)
        if self._referrers:
            self._referrers.pop(oid, None)

    def register(self, obj):
        """Note that ``obj`` changed; joins the transaction on the first."""
        if not self.opened:
            raise errors.ConnectionStateError(
                'cannot change %s %s: its connection is closed'
                % (class_path(obj), oid_repr(obj._p_oid)))
        if self.before is not None:
            self._check_writable('change %s %s' % (class_path(obj),
                                                    oid_repr(obj._p_oid)))
        if obj._p_oid in self._added:
            return
        # _register, inlined: persistent calls this for every changed object.
        if self._needs_to_join:
            self.transaction_manager.get().join(self)
            self._needs_to_join = False
        self._registered.append(obj)

    def _register(self, obj):
        # Join first: joining after a savepoint makes the transaction
        # record one for us, which must not include this change.
        if self._needs_to_join:
            self.transaction_manager.get().join(self)
            self._needs_to_join = False
        self._registered.append(obj)

    def oldstate(self, obj, tid):
        """The state ``obj`` had as written by transaction ``tid``."""
        return self._reader.get_state(
            self._storage.loadSerial(obj._p_oid, tid))

    def _load(self, oid):
        if self._savepoints is not None and oid in self._savepoints:
            return self._savepoints.load(oid)
        try:
            return self._storage.load(oid)
        except errors.POSKeyError:
            raise
        except KeyError as exc:
            # A ZODB storage's POSKeyError: callers catch objstore's.
            raise errors.POSKeyError(oid) from exc

    # -- ISynchronizer -------------------------------------------------------

    def beforeCompletion(self, transaction):
        pass

    def newTransaction(self, transaction, sync=True):
        """Move to the latest snapshot; ghost what others changed."""
        self._read_current.clear()
        self._prefetched = None
        storage = self._storage
        if storage is None:
            return
        sync_storage = getattr(storage, 'sync', None)
        if sync_storage is not None:
            sync_storage(sync)
        invalidated = self._poll(storage)
        if invalidated is None or self._poll_missed:
            # Unknown changes: everything cached may be stale.
            invalidated = list(self._cache.cache_data)
            self._poll_missed = False
        if invalidated:
            # PickleCache.invalidate takes a list, tuple or dict, not a set.
            self._cache.invalidate(list(invalidated))
        if self._resolved:
            self._cache.invalidate(self._resolved)
            self._resolved = []
        if len(self._referrers) > 2 * self._cache.cache_size + 100:
            self._prune_referrers()

    def _poll(self, storage):
        """The oids others changed since the last poll (None: unknown)."""
        poll = getattr(storage, 'poll_invalidations', None)
        if poll is None:
            return ()
        try:
            return poll()
        except errors.DisconnectedError:
            # A server storage reconnects on its next use, and a poll
            # starts a new snapshot anyway: asking again loses nothing.
            return poll()

    def afterCompletion(self, transaction):
        if not self.explicit_transactions:
            try:
                self.newTransaction(transaction, False)
            except errors.DisconnectedError:
                # The transaction is over (committed or aborted): losing
                # the server while moving on must not be reported as its
                # failure, or a retry would apply a committed transaction
                # twice. The next transaction start polls again and drops
                # the whole cache.
                self._poll_missed = True
        self._cache.incrgc()

    def _prune_referrers(self):
        # Keep what we know only about ghosts still in the cache.
        cache = self._cache
        self._referrers = {
            oid: ref for oid, ref in self._referrers.items()
            if getattr(cache.get(oid), '_p_changed', False) is None}

