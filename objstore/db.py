"""The database: one storage, a pool of connections, time travel, undo, pack.

A :class:`DB` drives two kinds of storage. One that provides
``IMVCCStorage`` (its own snapshots, as a relational database has) is used
directly: each connection gets its own ``new_instance()``. Any other storage
is wrapped in :class:`objstore.mvcc.MVCCAdapter`, which gives each
connection a snapshot read through ``loadBefore`` and relays what other
connections committed. Either way a connection polls its instance at every
transaction start, so the DB itself passes no invalidations around.

Method names (``lastTransaction``, ``undoLog``, ``cacheMinimize`` ...) are
ZODB ``DB``'s, kept so code written for ZODB runs unchanged.
"""
import contextlib
import datetime
import logging
import os
import threading
import time
import weakref

import transaction as transaction_package
from persistent.mapping import PersistentMapping
from persistent.TimeStamp import TimeStamp
from zope.interface import implementer

from objstore import errors, mvcc
from objstore.commit import TransactionMeta, claim_commit, describe_tid
from objstore.connection import Connection
from objstore.interfaces import IDatabase
from objstore.serialize import dumps_record, references
from objstore.storages.base import maxtid, p64, u64, z64

logger = logging.getLogger(__name__)


def tid_of(moment):
    """The tid of ``moment``: 8 bytes as they are, or a ``datetime``
    (naive ones are UTC, as in ZODB)."""
    if isinstance(moment, datetime.datetime):
        if moment.tzinfo is not None:
            moment = moment.astimezone(datetime.timezone.utc)
        seconds = moment.second + moment.microsecond / 1e6
        return TimeStamp(moment.year, moment.month, moment.day, moment.hour,
                         moment.minute, seconds).raw()
    if isinstance(moment, bytes) and len(moment) == 8:
        return moment
    raise TypeError('a moment is a tid (8 bytes) or a datetime, not %r'
                    % (moment,))


def _as_text(entries):
    """History or undo entries with ``user_name`` and ``description`` as
    text, as ZODB's DB returns them (storages keep bytes)."""
    result = []
    for entry in entries:
        entry = dict(entry)
        for name in ('user_name', 'description'):
            value = entry.get(name)
            if isinstance(value, bytes):
                entry[name] = value.decode('utf-8', 'replace')
        result.append(entry)
    return result


@implementer(IDatabase)
class DB:
    """An object database over one storage; see ``IDatabase``.

    ``storage_or_path``: a storage, or a path for an objstore FileStorage
    (created when missing, never truncated), or None for a new in-memory
    database (a ``MemoryStorage``, as ZODB's ``DB(None)``). ``pool_size`` is how many
    closed connections are kept for reuse; opening more at once works but
    logs a warning. ``cache_size`` (objects) and ``cache_size_bytes`` (0: no
    limit) are each connection's cache targets.
    """

    def __init__(self, storage_or_path, pool_size=7, cache_size=400,
                 cache_size_bytes=0, database_name='unnamed'):
        if storage_or_path is None:
            from objstore.storages.memory import MemoryStorage
            storage_or_path = MemoryStorage()
        elif isinstance(storage_or_path, (str, os.PathLike)):
            from objstore.storages.file import FileStorage
            storage_or_path = FileStorage(storage_or_path)
        self.storage = storage_or_path
        self.database_name = database_name
        self.pool_size = pool_size
        self.cache_size = cache_size
        self.cache_size_bytes = cache_size_bytes
        self._lock = threading.RLock()
        self._closed = False
        self._available = []                    # closed, reusable, newest last
        self._connections = weakref.WeakSet()   # every connection not released
        if mvcc.is_mvcc(self.storage):
            self._mvcc = mvcc.translating(self.storage)
            register = getattr(self.storage, 'registerDB', None)
            if register is not None:
                register(self)
        else:
            self._mvcc = mvcc.MVCCAdapter(self.storage)
        self._ensure_root()

    def __repr__(self):
        return '<DB %s on %s>' % (self.database_name, self.getName())

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _ensure_root(self):
        """Write the root mapping in a first transaction if it is missing."""
        instance = self._mvcc.new_instance()
        try:
            instance.poll_invalidations()
            try:
                instance.load(z64)
                return
            except KeyError:
                if instance.isReadOnly():
                    return
            meta = TransactionMeta(description='initial database creation')
            record = dumps_record(PersistentMapping,
                                  PersistentMapping().__getstate__())
            instance.tpc_begin(meta)
            try:
                instance.store(z64, z64, record, '', meta)
                instance.tpc_vote(meta)
                instance.tpc_finish(meta, lambda tid: None)
            except BaseException:
                instance.tpc_abort(meta)
                raise
        finally:
            instance.release()

    def _check_open(self):
        if self._closed:
            raise errors.ConnectionStateError(
                'the database %s is closed' % self.database_name)

    # -- connections ------------------------------------------------------

    def open(self, transaction_manager=None, at=None, before=None):
        """A connection, from the pool when one is free; see ``IDatabase``.

        ``at`` (inclusive) or ``before`` (exclusive), a tid or a datetime,
        opens a read-only connection showing that past moment;
        ``HistoryUnavailable`` when the storage no longer holds it.
        """
        if at is not None and before is not None:
            raise ValueError('give at or before, not both')
        if at is not None:
            # The last tid has no successor: "at" it is "before" it.
            before = p64(min(u64(tid_of(at)) + 1, u64(maxtid)))
        elif before is not None:
            before = tid_of(before)
        with self._lock:
            self._check_open()
            if before is not None:
                self._check_history(before)
                connection = Connection(
                    self, self._historical_instance(before),
                    self.cache_size, self.cache_size_bytes, before)
                self._connections.add(connection)
            elif self._available:
                connection = self._available.pop()
            else:
                connection = Connection(
                    self, self._mvcc.new_instance(), self.cache_size,
                    self.cache_size_bytes)
                self._connections.add(connection)
                # Historical connections are not pooled: not counted.
                in_use = sum(1 for c in self._connections
                             if c.before is None) - len(self._available)
                if in_use > self.pool_size:
                    logger.warning(
                        'DB.open() has %d open connections with a pool_size'
                        ' of %d', in_use, self.pool_size)
        connection._open(transaction_manager)
        return connection

    def _historical_instance(self, before):
        before_instance = getattr(self._mvcc, 'before_instance', None)
        if before_instance is not None:
            return before_instance(before)
        # A natively MVCC storage: pin one of its own instances.
        instance = self._mvcc.new_instance()
        instance.poll_invalidations()
        return mvcc.historical(instance, before)

    def _check_history(self, before):
        history_start = getattr(self.storage, 'history_start', None)
        if history_start is None:
            return
        oldest = history_start()
        at = u64(before) - 1
        if at < u64(oldest):
            raise errors.HistoryUnavailable(
                '%s cannot show the database as of %s: the oldest moment it'
                ' still holds is %s'
                % (self.getName(), describe_tid(p64(max(at, 0))),
                   describe_tid(oldest)), oldest=oldest)

    def _return_connection(self, connection):
        """Called by ``Connection.close``: keep it for reuse, or release it."""
        with self._lock:
            if self._closed or connection.before is not None:
                connection._release()
                self._connections.discard(connection)
                return
            self._available.append(connection)
            while len(self._available) > self.pool_size:
                oldest = self._available.pop(0)
                oldest._release()
                self._connections.discard(oldest)

    @contextlib.contextmanager
    def transaction(self, note=None):
        """``with db.transaction() as conn:`` commits at the end of the
        block, aborts if it raised; the connection has its own transaction
        manager and is closed afterwards."""
        manager = transaction_package.TransactionManager()
        connection = self.open(manager)
        try:
            txn = manager.begin()
            if note:
                txn.note(note)
            try:
                yield connection
            except BaseException:
                manager.abort()
                raise
            try:
                manager.commit()
            except BaseException:
                manager.abort()
                raise
        finally:
            connection.close()

    def cacheMinimize(self):
        """Ghost every unchanged object in every connection's cache."""
        for connection in self._all_connections():
            connection._cache.minimize()

    def cacheGC(self):
        """Shrink every connection's cache towards its target size."""
        for connection in self._all_connections():
            connection._cache.incrgc()

    def cacheSize(self):
        """Non-ghost objects in all connection caches."""
        return sum(c._cache.cache_non_ghost_count
                   for c in self._all_connections())

    def _all_connections(self):
        with self._lock:
            return list(self._connections)

    def close(self):
        """Release every connection and close the storage; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            connections = list(self._connections)
            self._available = []
            self._connections = weakref.WeakSet()
        for connection in connections:
            connection._release()
        self._mvcc.close()

    # -- the storage --------------------------------------------------------

    def getName(self):
        return self.storage.getName()

    def getSize(self):
        return self.storage.getSize()

    def objectCount(self):
        return len(self.storage)

    def lastTransaction(self):
        """The tid of the last committed transaction (``z64``: none)."""
        return self.storage.lastTransaction()

    def history(self, oid_or_obj, size=1):
        """Up to ``size`` revisions of an object (or oid), newest first,
        each a dict with ``tid``, ``time``, ``user_name``, ``description``,
        ``size`` and the transaction's extension items. As in ZODB's DB,
        ``user_name`` and ``description`` are text here (bytes in the
        storage)."""
        oid = getattr(oid_or_obj, '_p_oid', oid_or_obj)
        if not isinstance(oid, bytes) or len(oid) != 8:
            raise errors.InvalidArgumentError(
                'history() takes a stored object or an 8-byte oid, not %r%s'
                % (oid_or_obj, ' (it has no oid until a commit stores it)'
                   if oid is None else ''))
        return _as_text(self.storage.history(oid, size))

    def pack(self, t=None, days=0):
        """Drop history older than ``t`` (default now) minus ``days`` days
        and the objects no longer reachable from the root."""
        self._check_open()
        if t is None:
            t = time.time()
        # Through the adapter, which also makes every connection drop its
        # cache: pack may have removed states they hold.
        self._mvcc.pack(t - days * 86400, references)

    # ZODB's IStorageWrapper, for storages that call back into the DB.
    def references(self, record, oids=None):
        return references(record, oids)

    def invalidateCache(self):
        """Every connection drops its cached state at its next transaction
        start; changes of a running transaction are kept until then."""
        invalidate_cache = getattr(self._mvcc, 'invalidateCache', None)
        if invalidate_cache is not None:
            invalidate_cache()
            return
        # A natively MVCC storage polls its own instances; the views of
        # ZODB's (objstore.foreign) can be told to report "everything".
        for connection in self._all_connections():
            drop = getattr(connection._storage, 'drop_cache_at_next_poll',
                           None)
            if drop is not None:
                drop()

    def invalidate(self, tid, oids):
        """Storages that call this are polled anyway; nothing to do here."""

    # ZODB's storages (RelStorage among them) ask their wrapper for these
    # in registerDB: hooks for wrappers that compress or encrypt records.
    # Records stay as they are.
    def transform_record_data(self, data):
        return data

    untransform_record_data = transform_record_data

    # -- undo -------------------------------------------------------------

    def supportsUndo(self):
        supports = getattr(self.storage, 'supportsUndo', None)
        return bool(supports and supports())

    def undoLog(self, first=0, last=-20, filter=None):
        """Undoable transactions, newest first (the storage's undoLog)."""
        if not self.supportsUndo():
            return []
        return _as_text(self.storage.undoLog(first, last, filter))

    def undoInfo(self, first=0, last=-20, specification=None):
        """Undoable transactions matching ``specification``, newest first."""
        if not self.supportsUndo():
            return []
        if specification:
            # Storages compare with the bytes they keep.
            specification = {
                k: v.encode('utf-8') if isinstance(v, str)
                and k in ('user_name', 'description') else v
                for k, v in specification.items()}
        return _as_text(self.storage.undoInfo(first, last, specification))

    def undo(self, transaction_id, txn=None):
        """Undo ``transaction_id`` (an ``id`` from ``undoLog``) when ``txn``
        (default: the current transaction) commits."""
        self._check_open()
        if not self.supportsUndo():
            raise errors.Unsupported('storage %s cannot undo' % self.getName())
        if txn is None:
            txn = transaction_package.get()
        txn.join(UndoDataManager(self, [transaction_id]))


class UndoDataManager:
    """Joins a transaction to undo earlier ones when it commits.

    It commits through its own storage instance, so the connections of
    this database see the undone objects change at their next transaction.
    """

    transaction_manager = None

    def __init__(self, db, transaction_ids):
        self._db = db
        self._ids = list(transaction_ids)
        self._instance = None

    def sortKey(self):
        return 'undo:%s:%d' % (self._db.storage.sortKey(), id(self))

    def abort(self, txn):
        pass

    def tpc_begin(self, txn):
        claim_commit(txn, self._db, self)
        meta = TransactionMeta.of(txn)
        txn.set_data(self, meta)
        self._instance = self._db._mvcc.new_instance()
        self._instance.poll_invalidations()
        self._instance.tpc_begin(meta)

    def commit(self, txn):
        meta = txn.data(self)
        for transaction_id in self._ids:
            self._instance.undo(transaction_id, meta)

    def tpc_vote(self, txn):
        self._instance.tpc_vote(txn.data(self))

    def tpc_finish(self, txn):
        try:
            self._instance.tpc_finish(txn.data(self), lambda tid: None)
        finally:
            self._release()

    def tpc_abort(self, txn):
        if self._instance is None:
            return
        try:
            self._instance.tpc_abort(txn.data(self))
        finally:
            self._release()

    def _release(self):
        instance, self._instance = self._instance, None
        if instance is not None:
            instance.release()
