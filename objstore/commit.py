"""How a connection writes: the ``transaction`` package's data-manager side.

:class:`DataManager` is the part of :class:`objstore.connection.Connection`
that stores changes: the two-phase commit (``tpc_begin``, ``commit``,
``tpc_vote``, then ``tpc_finish`` or ``tpc_abort``; ``abort`` outside it)
and savepoints (:mod:`objstore.savepoint`). It is kept apart from
``connection.py``, which reads objects and follows transaction boundaries,
so each module stays short; it is not used on its own.

Commit stores every registered object and every new object the
:class:`objstore.pickler.ObjectWriter` finds reachable from them, in one
storage transaction. Objects created by an aborted transaction lose their
oid and jar again, as in ZODB. Method names are the transaction package's.
"""
import datetime

from objstore import errors
from objstore.pickler import ObjectWriter
from objstore.savepoint import Savepoint, SavepointStore
from objstore.serialize import pack_extension
from objstore.storages.base import tid_time

oid_repr = errors.oid_repr


def class_path(obj):
    """``module.Class`` of an object, for messages."""
    klass = type(obj)
    return '%s.%s' % (klass.__module__, klass.__qualname__)


def describe_tid(tid):
    """``0x03e4... (2026-12-01 04:05:06.123456 UTC)``, for messages."""
    when = datetime.datetime.fromtimestamp(tid_time(tid),
                                           datetime.timezone.utc)
    return '%s (%s UTC)' % (errors.oid_repr(tid),
                            when.strftime('%Y-%m-%d %H:%M:%S.%f'))


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


def claim_commit(transaction, db, data_manager):
    """Note that ``data_manager`` begins a storage transaction of ``db``.

    A second one in the same transaction (a second connection of the same
    database and transaction manager, or an undo next to changes) would
    wait forever for the storage's commit lock, which the first holds until
    the end: refuse it with StorageTransactionError instead.
    """
    try:
        first = transaction.data(db)
    except KeyError:
        transaction.set_data(db, data_manager)
        return
    if first is not data_manager:
        raise errors.StorageTransactionError(
            'one transaction cannot commit through two data managers of the'
            ' same database (%r and %r): use one connection per transaction'
            ' manager, and commit undo in a transaction of its own'
            % (first, data_manager))


class DataManager:
    """The writing half of a connection (see the module docstring)."""

    # -- storing objects -------------------------------------------------

    def _store_registered(self, target, meta):
        """Write every changed object, and the new objects they reach, to
        ``target`` (the storage instance, or the savepoint store).

        Each registered object is stored, then the new objects its record
        refers to, depth first, before the next registered one. This is
        the commit loop of every object: names are bound locally.
        """
        self._check_writable('commit changes')
        writer = ObjectWriter(self)
        serialize = writer.serialize
        new_objects = writer.new_objects
        store = target.store
        to_savepoint = target is self._savepoints
        cache = self._cache
        cache_get = cache.get
        estimate = cache.update_object_size_estimation
        registered = self._registered
        added = self._added
        creating = self._creating
        modified = self._modified
        read_current = self._read_current
        done = set()
        pending = []        # new objects found, not stored yet
        index = 0
        while True:
            if pending:
                obj = pending.pop()
                oid = obj._p_oid
                if oid in done:
                    continue
            elif index < len(registered):
                # The list can grow while we store: __getstate__ may
                # change (and so register) other objects.
                obj = registered[index]
                index += 1
                if obj._p_jar is not self:
                    raise errors.InvalidObjectReference(
                        '%s %s was registered with a connection it does not'
                        ' belong to' % (class_path(obj),
                                        oid_repr(obj._p_oid)))
                oid = obj._p_oid
                if oid not in added and (oid in done or not obj._p_changed):
                    continue
            else:
                break
            data = serialize(obj)
            if new_objects:
                for new in new_objects:
                    creating[new._p_oid] = new
                pending.extend(new_objects)
                del new_objects[:]
            if oid in added:
                creating[oid] = added.pop(oid)
            elif oid not in creating:
                modified.append(oid)
            store(oid, obj._p_serial, data, '', meta)
            done.add(oid)
            if cache_get(oid) is None:
                cache[oid] = obj
            size = len(data)
            estimate(oid, size)
            obj._p_estimated_size = size
            if read_current:
                read_current.pop(oid, None)
            if to_savepoint:
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
        if self._modified:
            # Stored by a commit that failed: their in-memory state is
            # not what the database holds.
            self._cache.invalidate(self._modified)
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
        claim_commit(transaction, self._db, self)
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
            except errors.ConflictError as exc:
                self._name_class(exc)
                self._cache.invalidate(oid)
                raise

    def _name_class(self, exc):
        """Fill in the class of a conflict the storage could not name (it
        only has the oid) from the object this connection read."""
        if exc.class_name is None and exc.oid is not None:
            obj = self._cache.get(exc.oid)
            if obj is not None:
                klass = type(obj)
                exc.class_name = '%s.%s' % (klass.__module__,
                                            klass.__qualname__)

    def tpc_vote(self, transaction):
        """Let the storage check the transaction; ghost resolved objects."""
        try:
            resolved = self._storage.tpc_vote(transaction.data(self))
        except errors.ReadConflictError as exc:
            if exc.oid is not None:
                self._name_class(exc)
                self._cache.invalidate(exc.oid)
            raise
        for oid in resolved or ():
            obj = self._cache.get(oid)
            if obj is not None:
                # The storage merged our state with a concurrent one: the
                # next access loads what was really committed.
                del obj._p_changed
        if resolved:
            # Loaded before the snapshot moves past this commit, they would
            # show the state before the merge: the next snapshot ghosts
            # them again (polls report only other connections' commits).
            self._resolved.extend(resolved)

    def tpc_finish(self, transaction):
        """Make the transaction permanent; the stored objects are current."""
        tid = self._storage.tpc_finish(transaction.data(self), _no_callback)
        cache_get = self._cache.get
        for oids in (self._modified, self._creating):
            for oid in oids:
                obj = cache_get(oid)
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
        # Disown first: new objects must keep their state, not be ghosted.
        self._disown(self._creating)
        self._disown(self._added)
        self._cache.invalidate(self._modified)
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
        oids = sorted(store.records)
        # All of them before storing any: if a store fails, abort must
        # ghost every object whose state only the savepoints held.
        self._modified.extend(oid for oid in oids
                              if oid not in self._creating)
        for oid in oids:
            data, serial = store.load(oid)
            self._storage.store(oid, serial, data, '', meta)
            self._read_current.pop(oid, None)

    def _abort_savepoints(self):
        store, self._savepoints = self._savepoints, None
        self._disown(store.creating)
        self._cache.invalidate(list(store.records))


def _no_callback(tid):
    """tpc_finish's callback: the storage instance already told the others."""
