"""The connection: one thread's view of the database, one transaction at a time.

A :class:`Connection` is the ``_p_jar`` of the objects it loads (persistent's
data-manager protocol: ``setstate``, ``register``, ``oldstate``), a
savepoint-capable data manager of the ``transaction`` package, and a
synchronizer of its transaction manager: at every transaction start it polls
its storage instance for what other connections committed and ghosts those
objects, so each transaction reads one snapshot. Objects are read and written
through an :class:`objstore.interfaces.IMVCCStorage` instance the database
hands out, and turned into records by :mod:`objstore.pickler`.

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
from objstore.interfaces import IConnection
from objstore.pickler import ObjectReader, ObjectWriter
from objstore.savepoint import Savepoint, SavepointStore
from objstore.serialize import pack_extension
from objstore.storages.base import z64

oid_repr = errors.oid_repr


def class_path(obj):
    """``module.Class`` of an object, for messages."""
    klass = type(obj)
    return '%s.%s' % (klass.__module__, klass.__qualname__)


def _to_bytes(text):
    if isinstance(text, str):
        return text.encode('utf-8')
    return bytes(text or b'')


class TransactionMeta:
    """What a storage's ``tpc_begin`` reads off a transaction.

    ``user`` and ``description`` as bytes, ``extension`` as a dict and
    ``extension_bytes`` pickled: the attributes of ZODB's
    ``TransactionMetaData``, so objstore and ZODB storages both accept it.
    """

    def __init__(self, user=b'', description=b'', extension=None):
        self.user = _to_bytes(user)
        self.description = _to_bytes(description)
        self.extension = dict(extension or {})
        self.extension_bytes = pack_extension(self.extension)
        self._data = {}

    @classmethod
    def of(cls, txn):
        return cls(txn.user, txn.description, txn.extension)

    # ZODB storages (ZEO, RelStorage) keep per-transaction data this way.
    def data(self, ob):
        return self._data[id(ob)]

    def set_data(self, ob, data):
        self._data[id(ob)] = data


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
class Connection:
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
                % (doing, oid_repr(self.before)))

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
        self._check_open('get %s' % oid_repr(oid))
        obj = self._cache.get(oid)
        if obj is not None:
            return obj
        obj = self._added.get(oid)
        if obj is not None:
            return obj
        data = self._load(oid)[0]
        return self._cache_ghost(oid, self._reader.new_ghost(oid, data))

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
            self._referrers[oid] = (holder._p_oid, class_path(holder))
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
            data, serial = self._load(oid)
            self._reader.set_ghost_state(obj, data)
        except errors.POSKeyError as exc:
            if exc.referenced_by is None and exc.args and exc.args[0] == oid:
                referrer = self._referrers.get(oid)
                if referrer is not None:
                    exc.referenced_by = 'oid %s (%s)' % (
                        oid_repr(referrer[0]), referrer[1])
            raise
        finally:
            self._loading = holder
        obj._p_serial = serial
        self._cache.update_object_size_estimation(oid, len(data))
        obj._p_estimated_size = len(data)
        self._referrers.pop(oid, None)

    def register(self, obj):
        """Note that ``obj`` changed; joins the transaction on the first."""
        if not self.opened:
            raise errors.ConnectionStateError(
                'cannot change %s %s: its connection is closed'
                % (class_path(obj), oid_repr(obj._p_oid)))
        self._check_writable('change %s %s' % (class_path(obj),
                                                oid_repr(obj._p_oid)))
        if obj._p_oid in self._added:
            return
        self._register(obj)

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

    # -- storing objects -------------------------------------------------

    def _store_registered(self, target, meta):
        """Write every changed object, and the new objects they reach, to
        ``target`` (the storage instance, or the savepoint store)."""
        self._check_writable('commit changes')
        writer = ObjectWriter(self)
        done = set()
        index = 0
        # The list can grow while we store: __getstate__ may add objects.
        while index < len(self._registered):
            obj = self._registered[index]
            index += 1
            if obj._p_jar is not self:
                raise errors.InvalidObjectReference(
                    '%s %s was registered with a connection it does not'
                    ' belong to' % (class_path(obj), oid_repr(obj._p_oid)))
            oid = obj._p_oid
            if oid not in self._added and (oid in done or not obj._p_changed):
                continue
            self._store_object(obj, writer, target, meta, done)

    def _store_object(self, obj, writer, target, meta, done):
        pending = [obj]
        while pending:
            obj = pending.pop()
            oid = obj._p_oid
            if oid in done:
                continue
            seen = len(writer.new_objects)
            data = writer.serialize(obj)
            for new in writer.new_objects[seen:]:
                self._creating[new._p_oid] = new
                pending.append(new)
            added = self._added.pop(oid, None)
            if added is not None:
                self._creating[oid] = added
            elif oid not in self._creating:
                self._modified.append(oid)
            target.store(oid, obj._p_serial, data, '', meta)
            done.add(oid)
            if self._cache.get(oid) is None:
                self._cache[oid] = obj
            self._cache.update_object_size_estimation(oid, len(data))
            obj._p_estimated_size = len(data)
            self._read_current.pop(oid, None)
            if target is self._savepoints:
                # Its state is safe in the savepoint: a further change
                # must register it again.
                obj._p_changed = False

    # -- ISavepointDataManager ---------------------------------------------

    def sortKey(self):
        return '%s:%d' % (self._storage.sortKey(), id(self))

    def abort(self, transaction):
        """Forget this transaction's changes."""
        self._disown(self._creating)
        if self._savepoints is not None:
            self._abort_savepoints()
        self._abort_registered()
        self._cleanup()

    def _abort_registered(self):
        for obj in self._registered:
            oid = obj._p_oid
            if oid is None or obj._p_jar is not self:
                continue
            if oid in self._added:
                self._disown({oid: self._added.pop(oid)})
            else:
                self._cache.invalidate(oid)
        self._registered = []

    def _disown(self, objects):
        """Make new objects of an aborted transaction plain objects again."""
        for oid, obj in list(objects.items()):
            if self._cache.get(oid) is obj:
                del self._cache[oid]
            if obj._p_changed:
                obj._p_changed = False
            if obj._p_jar is self:
                del obj._p_jar
                del obj._p_oid
        objects.clear()

    def _cleanup(self):
        self._needs_to_join = True
        self._registered = []
        self._creating = {}
        self._modified = []

    def tpc_begin(self, transaction):
        """Begin the two-phase commit of ``transaction`` in the storage."""
        self._check_writable('commit changes')
        self._modified = []
        self._creating = {}
        meta = TransactionMeta.of(transaction)
        transaction.set_data(self, meta)
        self._storage.tpc_begin(meta)

    def commit(self, transaction):
        """Store the transaction's changes (still undecided)."""
        meta = transaction.data(self)
        if self._savepoints is not None:
            self.savepoint()
            self._commit_savepoints(meta)
        else:
            self._store_registered(self._storage, meta)
        check = getattr(self._storage, 'checkCurrentSerialInTransaction',
                        None)
        if check is None:
            return
        for oid, serial in self._read_current.items():
            try:
                check(oid, serial, meta)
            except errors.ConflictError:
                self._cache.invalidate(oid)
                raise

    def tpc_vote(self, transaction):
        """Let the storage check the transaction; ghost resolved objects."""
        try:
            resolved = self._storage.tpc_vote(transaction.data(self))
        except errors.ReadConflictError as exc:
            if exc.oid is not None:
                self._cache.invalidate(exc.oid)
            raise
        for oid in resolved or ():
            obj = self._cache.get(oid)
            if obj is not None:
                # The storage merged our state with a concurrent one: the
                # next access loads what was really committed.
                del obj._p_changed

    def tpc_finish(self, transaction):
        """Make the transaction permanent; the stored objects are current."""
        tid = self._storage.tpc_finish(transaction.data(self), _no_callback)
        for oids in (self._modified, self._creating):
            for oid in oids:
                obj = self._cache.get(oid)
                if obj is not None and obj._p_changed is not None:
                    obj._p_changed = False
                    obj._p_serial = tid
        self._cleanup()

    def tpc_abort(self, transaction):
        """Discard whatever the two-phase commit did."""
        try:
            meta = transaction.data(self)
        except KeyError:
            meta = None
        if self._savepoints is not None:
            self._abort_savepoints()
        if meta is not None:
            self._storage.tpc_abort(meta)
        self._cache.invalidate(self._modified)
        self._disown(self._creating)
        self._disown(self._added)
        self._cleanup()

    def savepoint(self):
        """Keep the current changes aside; see :mod:`objstore.savepoint`."""
        if self._savepoints is None:
            self._savepoints = SavepointStore()
        self._creating = {}
        self._store_registered(self._savepoints, None)
        self._savepoints.creating.update(self._creating)
        self._creating = {}
        self._registered = []
        result = Savepoint(self, self._savepoints.mark())
        self.cacheGC()
        return result

    def _rollback_savepoint(self, mark):
        self._abort_registered()
        store = self._savepoints
        self._disown({oid: obj for oid, obj in store.creating.items()
                      if oid not in mark[1]})
        changed = list(store.records)
        store.reset(mark)
        self._cache.invalidate(changed)

    def _commit_savepoints(self, meta):
        store, self._savepoints = self._savepoints, None
        self._creating.update(store.creating)
        for oid in sorted(store.records):
            data, serial = store.load(oid)
            if oid not in self._creating:
                self._modified.append(oid)
            self._storage.store(oid, serial, data, '', meta)
            self._read_current.pop(oid, None)

    def _abort_savepoints(self):
        store, self._savepoints = self._savepoints, None
        self._disown(store.creating)
        self._cache.invalidate(list(store.records))

    # -- ISynchronizer -------------------------------------------------------

    def beforeCompletion(self, transaction):
        pass

    def newTransaction(self, transaction, sync=True):
        """Move to the latest snapshot; ghost what others changed."""
        self._read_current.clear()
        storage = self._storage
        if storage is None:
            return
        sync_storage = getattr(storage, 'sync', None)
        if sync_storage is not None:
            sync_storage(sync)
        poll = getattr(storage, 'poll_invalidations', None)
        invalidated = poll() if poll is not None else ()
        if invalidated is None:
            invalidated = list(self._cache.cache_data)
        if invalidated:
            # PickleCache.invalidate takes a list, tuple or dict, not a set.
            self._cache.invalidate(list(invalidated))
        if len(self._referrers) > 2 * self._cache.cache_size + 100:
            self._prune_referrers()

    def afterCompletion(self, transaction):
        if not self.explicit_transactions:
            self.newTransaction(transaction, False)
        self._cache.incrgc()

    def _prune_referrers(self):
        # Keep what we know only about ghosts still in the cache.
        cache = self._cache
        self._referrers = {
            oid: ref for oid, ref in self._referrers.items()
            if getattr(cache.get(oid), '_p_changed', False) is None}


def _no_callback(tid):
    """tpc_finish's callback: the storage instance already told the others."""
