"""PostgreSQLStorage: the storage object, its instances, reading, polling.

How the pieces fit (the RelStorage model):

* The object the application makes is the storage and also a usable
  instance of it: it reads the newest committed data (each read its own
  statement) and commits. ``new_instance()`` gives one instance per
  database connection: its own psycopg connections and its own snapshot.
* An instance's snapshot is a REPEATABLE READ transaction on its load
  connection, begun by ``poll_invalidations()``, which in the same round
  trip reads the newest tid and the objects other commits changed since
  the previous poll. Loads read that snapshot until the next poll.
* Commits use a second connection (commit.py); the commit lock is taken
  at ``tpc_vote`` and released by COMMIT or ROLLBACK.
* Instances share a cache of current records (cache.py), checked before
  the server; polls keep it valid.
* New oids come in blocks from a sequence, shared by the storage and its
  instances in the process (a block is drawn on the store connection of
  the one that runs out).
"""
import threading
import time

import psycopg
from psycopg.conninfo import conninfo_to_dict
from zope.interface import alsoProvides, implementer

from objstore import errors
from objstore.interfaces import (
    IExternalGC, IHistoryWindow, IMVCCStorage, IStorage,
    IStorageCurrentRecordIteration, IStorageIteration, IStorageRestoreable, IStorageUndoable,
    ReadVerifyingStorage)
from objstore.storages.base import BaseStorage, TransactionMeta, maxtid, z64
from objstore.storages.postgresql import queries as q
from objstore.storages.postgresql.cache import RecordCache
from objstore.storages.postgresql.commit import Committing
from objstore.storages.postgresql.connections import Link, describe_dsn
from objstore.storages.postgresql.history import Histories
from objstore.storages.postgresql.listener import Listener
from objstore.storages.postgresql.schema import OID_BLOCK, open_schema


#: Seconds to wait for a connection when the DSN and options name none.
CONNECT_TIMEOUT = 10

#: Bytes of records the instances of a storage share in a cache (as
#: RelStorage's default local cache).
CACHE_SIZE_BYTES = 10 * 1024 * 1024


class _Shared:
    """What a storage and all its instances share in one process."""

    def __init__(self, dsn, name, keep_history, read_only, poll_interval,
                 connect_options, cache_size_bytes):
        self.dsn = dsn
        self.name = name
        self.read_only = read_only
        self.poll_interval = poll_interval
        self.connect_options = connect_options
        self.queries = q.Queries(keep_history)
        self.cache = RecordCache(cache_size_bytes)
        self.lock = threading.Lock()
        self.oid_next = self.oid_limit = 0     # the block being handed out
        self.latest = 0     # the newest tid known committed (own, notified)
        self.listener = None
        self.schema = None

    def open(self, conn, create):
        self.schema = open_schema(conn, self.name, self.queries.keep_history,
                                  create)
        if self.poll_interval:
            self.listener = Listener(self.dsn, self.connect_options,
                                     self.schema.channel, self)

    def new_oid(self, link):
        """The next oid (an int); a new block is drawn through ``link``
        (the caller's store connection: oids are wanted by writers)."""
        with self.lock:
            if self.oid_next > self.oid_limit or not self.oid_next:
                with link.using('allocating oids') as conn:
                    block = conn.execute(q.NEXT_OID_BLOCK).fetchone()[0]
                self.oid_next = (block - 1) * OID_BLOCK + 1
                self.oid_limit = block * OID_BLOCK
            oid = self.oid_next
            self.oid_next += 1
            return oid

    def note_stored_oid(self, n):
        """An explicit oid ``n`` was committed: never hand it out."""
        with self.lock:
            if self.oid_next <= n <= self.oid_limit:
                self.oid_next = n + 1

    def note_commit(self, tid):
        if tid > self.latest:
            self.latest = tid

    def close(self):
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.close()


@implementer(IStorage, IMVCCStorage, IStorageIteration,
             IStorageCurrentRecordIteration,
             ReadVerifyingStorage, IExternalGC, IStorageRestoreable,
             IHistoryWindow)
class PostgreSQLStorage(Committing, Histories, BaseStorage):
    """A storage in a PostgreSQL database, shared by many processes.

    ``PostgreSQLStorage(dsn, keep_history=True, create_schema=True,
    read_only=False, poll_interval=0, name=None,
    cache_size_bytes=CACHE_SIZE_BYTES, **options)``: ``dsn`` is
    a libpq connection string or URI; ``options`` go to
    ``psycopg.connect`` (``application_name``..., and ``connect_timeout``,
    10 seconds unless the DSN or the options say otherwise); ``name`` is
    what ``getName()`` says (default: the DSN without its password).
    ``keep_history=False`` keeps only current revisions: no undo, no time
    travel before the newest commit, iteration of current records. The
    tables are created on first use (``create_schema``) and carry a
    version; tables of a newer objstore raise ``UnsupportedVersionError``.

    ``cache_size_bytes``: the size of the cache of records that the
    instances (``new_instance``, one per DB connection) share: a load it
    answers costs no round trip. It holds current records only, each
    checked against the instance's snapshot (polls tell which objects
    changed), so no load returns a record its snapshot does not show
    (cache.py). 0 disables it; ``clear_cache()`` empties it.

    ``poll_interval`` (seconds): 0 makes every transaction start ask the
    server what changed (one round trip), so it sees every commit that
    finished before it began. Above 0, a background connection LISTENs
    for commits and an instance asks only when one was announced since
    its snapshot or ``poll_interval`` has passed: a transaction may then
    start from a snapshot that lacks commits of other processes finished
    just before (by the time their notification takes to arrive, at most
    ``poll_interval``); it is still a consistent snapshot, and committing
    over it gets ConflictError as usual.

    Durability: that of the server. ``tpc_finish`` returns once
    PostgreSQL acknowledged the COMMIT (with the server's default
    ``synchronous_commit=on``, the transaction is in its WAL on disk, so a
    crash of either machine loses nothing acknowledged). A connection lost
    during COMMIT is resolved before ``tpc_finish`` returns: the storage
    looks for the tid, under the commit lock, and reports success or
    raises ``DisconnectedError`` (nothing was committed; retry). Atomic,
    consistent and isolated: each transaction is one PostgreSQL
    transaction, commits are serialized by an advisory lock held from
    vote to finish, and readers read REPEATABLE READ snapshots.

    Thread-safe: the storage object may be used from many threads (one
    transaction at a time); each instance from one thread at a time.
    """

    def __init__(self, dsn, keep_history=True, create_schema=True,
                 read_only=False, poll_interval=0, name=None,
                 cache_size_bytes=CACHE_SIZE_BYTES, **options):
        if poll_interval < 0:
            raise errors.InvalidArgumentError(
                'poll_interval must be 0 or more seconds, not %r'
                % (poll_interval,))
        if cache_size_bytes < 0:
            raise errors.InvalidArgumentError(
                'cache_size_bytes must be 0 or more, not %r'
                % (cache_size_bytes,))
        name = name or describe_dsn(dsn)
        if 'connect_timeout' not in options and \
                'connect_timeout' not in conninfo_to_dict(dsn):
            # Without one, libpq waits forever for an unreachable server.
            options['connect_timeout'] = CONNECT_TIMEOUT
        super().__init__(name, read_only)
        shared = _Shared(dsn, name, bool(keep_history), bool(read_only),
                         poll_interval, options, cache_size_bytes)
        self._setup(shared, snapshot=False)
        try:
            with self._load.using('opening the storage') as conn:
                shared.open(conn, create_schema and not read_only)
                self._ltid = q.to_bytes(
                    conn.execute(q.LAST_TID).fetchone()[0])
        except BaseException:
            self._load.close()
            shared.close()
            raise

    def _setup(self, shared, snapshot):
        self._shared = shared
        self._q = shared.queries
        self._cache = shared.cache
        #: Whether the storage keeps every revision (False: current only).
        self.keep_history = shared.queries.keep_history
        self._snapshot = snapshot
        self._load = Link(shared.dsn, shared.connect_options, shared.name,
                          'load')
        self._store_link = Link(shared.dsn, shared.connect_options,
                                shared.name, 'store')
        self._polled_tid = None     # the tid the snapshot shows (int)
        self._polled_at = 0.0
        self._polled_lost = 0       # self._load.lost when the snapshot began
        self._own_tids = []         # own commits since the last poll
        self._force_poll = True
        # The thread in tpc_finish, from COMMIT until func returned: other
        # threads' reads through the storage object wait for it, so none
        # sees the commit before lastTransaction() may report it.
        self._finisher = None
        self._finish_gate = threading.Condition(threading.Lock())
        self._setup_commit()
        if shared.queries.keep_history:
            alsoProvides(self, IStorageUndoable)

    # -- IMVCCStorage -----------------------------------------------------

    def new_instance(self):
        """An instance with its own connections and snapshot (the newest)."""
        self._check_open()
        instance = object.__new__(type(self))
        BaseStorage.__init__(instance, self.__name__, self._read_only)
        instance._setup(self._shared, snapshot=True)
        instance._main = self
        instance.poll_invalidations()
        return instance

    _main = None

    def release(self):
        """An instance closes its connections; on the storage object
        itself, nothing (``close`` ends it)."""
        if self._main is not None:
            self.close()

    def poll_invalidations(self):
        """Move to the newest snapshot; return the oids other commits
        created or changed since the previous poll (a list, each oid once;
        empty at the first poll: ZODB's Connection hands it to
        ``PickleCache.invalidate``, which takes no set), or None after
        ``drop_cache_at_next_poll()``."""
        self._check_open()
        drop, self._drop_cache = self._drop_cache, False
        if self._can_skip_poll():
            return None if drop else []
        prev, own = self._polled_tid, self._own_tids
        # Before the round trip: a listener that was listening by then
        # has seen every commit the new snapshot lacks.
        started = time.monotonic()
        since = prev
        if since is None and self._snapshot and len(self._cache):
            # The first poll: what changed since the shared cache was
            # last brought up to date, so it stays valid here.
            since = self._cache.tid or None
        try:
            rows, lost = self._poll(since)
        except errors.DisconnectedError:
            # The session died between transactions (idle timeout, a
            # restart): nothing was read from the snapshot being left, so
            # a new session takes over silently. Raising here would make
            # a transaction that just committed look failed and be retried.
            rows, lost = self._poll(since)
        last = max(tid for zoid, tid in rows if zoid is None)
        revisions = [(zoid, tid) for zoid, tid in rows
                     if zoid is not None and tid <= last]
        if self._snapshot:
            self._cache.advance(since, last, revisions)
        skip = set(own)
        changed = set() if prev is None else {
            q.to_bytes(zoid) for zoid, tid in revisions if tid not in skip}
        self._polled_tid = last
        self._polled_at = started
        self._polled_lost = lost
        self._own_tids = []
        self._force_poll = False
        self._shared.note_commit(last)
        self._ltid = q.to_bytes(last)
        return None if drop else list(changed)

    _drop_cache = False

    def drop_cache_at_next_poll(self):
        """Make the next ``poll_invalidations()`` return None, so the
        connection drops its whole cache (``DB.invalidateCache``)."""
        self._drop_cache = True

    def _poll(self, prev):
        """One round trip: end the old snapshot, begin the new one, read
        the newest tid (the row whose zoid is NULL) and what changed since
        ``prev`` (nothing at the first poll)."""
        link = self._load
        with link.using('polling for changes') as conn:
            cursor = link.cursor()
            with conn.pipeline():
                if self._snapshot:
                    if link.in_transaction():
                        conn.execute('ROLLBACK')
                    conn.execute('BEGIN ISOLATION LEVEL REPEATABLE READ')
                cursor.execute(self._q.poll,
                               (q.MAX_TID if prev is None else prev,))
            return cursor.fetchall(), link.lost

    def _can_skip_poll(self):
        shared = self._shared
        if (not shared.poll_interval or self._force_poll
                or not self._snapshot or self._snapshot_lost()):
            return False
        listener = shared.listener
        since = listener.listening_since() if listener else None
        return (since is not None and since <= self._polled_at
                and shared.latest <= self._polled_tid
                and time.monotonic() - self._polled_at < shared.poll_interval)

    def _snapshot_lost(self):
        return (self._load.lost != self._polled_lost
                or not self._load.in_transaction())

    def sync(self, force=True):
        """The storage object: learn the newest tid. An instance: nothing;
        its snapshot moves at ``poll_invalidations``."""
        self._check_open()
        if not self._snapshot:
            self.lastTransaction()

    # -- reading ----------------------------------------------------------

    def _begin_finish(self):
        self._finisher = threading.get_ident()

    def _end_finish(self):
        with self._finish_gate:
            self._finisher = None
            self._finish_gate.notify_all()

    def _wait_for_finish(self):
        """Wait while another thread finishes a commit; True if this
        thread is the one finishing."""
        finisher = self._finisher
        if finisher is None:
            return False
        if finisher == threading.get_ident():
            return True
        with self._finish_gate:
            while self._finisher is not None:
                self._finish_gate.wait()
        return False

    def _reader(self):
        """The load connection, open; for an instance, still in the
        snapshot of the last poll."""
        if self._closed:
            self._check_open()
        if not self._snapshot and self._finisher is not None:
            self._wait_for_finish()
        if self._snapshot and self._snapshot_lost():
            raise errors.DisconnectedError(
                '%s: this connection lost its snapshot (its server'
                ' connection was dropped or failed); it gets a new one at'
                ' the next transaction start' % self.__name__)
        return self._load.connect()

    def _fetch(self, doing, query, params=None, many=False):
        conn = self._reader()
        # The link's lock, not only psycopg's: threads sharing the storage
        # object's connection must not interleave a statement and the
        # fetch of its result (psycopg's prepared-statement cache races).
        with self._load.lock:
            try:
                cursor = self._load.cursor()
                cursor.execute(query, params)
                return cursor.fetchall() if many else cursor.fetchone()
            except psycopg.Error as exc:
                raise self._load.failure(conn, exc, doing) from exc

    def load(self, oid, version=''):
        """``(data, serial)`` of ``oid`` in this snapshot (the storage
        object: the newest); POSKeyError if none or deleted."""
        n = q.to_int(oid)
        # A dropped session (a changed ``lost``) makes the load below
        # raise, even for a cached object, as before the cache.
        if (self._snapshot and not self._closed
                and self._load.lost == self._polled_lost):
            snapshot = self._polled_tid
            row = self._cache.get(n, snapshot)
            if row is None:
                row = self._fetch('loading', self._q.load_current, (n,))
                if row is not None and row[1] is not None:
                    self._cache.put(n, row[0], row[1], snapshot)
        else:
            # The storage object, or an instance about to raise.
            row = self._fetch('loading', self._q.load_current, (n,))
        if row is None or row[1] is None:
            raise errors.POSKeyError(oid)
        return row[1], q.to_bytes(row[0])

    def clear_cache(self):
        """Empty the records cache of this storage and its instances."""
        self._cache.clear()

    def loadBefore(self, oid, tid):
        """See ``IStorage.loadBefore``. History-free, only the current
        revision is known: an earlier moment raises HistoryUnavailable."""
        if not self._q.keep_history:
            return self._load_before_free(oid, tid)
        n = q.to_int(oid)
        row = self._fetch('loading', self._q.load_before,
                          {'oid': n, 'tid': q.to_int(tid)})
        if row is None:
            if not self._fetch('loading', self._q.exists, (n,))[0]:
                raise errors.POSKeyError(oid)
            return None
        start, data, end = row
        if data is None:
            raise errors.POSKeyError(oid)
        return data, q.to_bytes(start), (
            None if end is None else q.to_bytes(end))

    def _load_before_free(self, oid, tid):
        data, serial = self.load(oid)
        if serial < tid:
            return data, serial, None
        raise errors.HistoryUnavailable(
            '%s keeps no history: object %s changed at %s, and its state'
            ' before %s is gone' % (self.__name__, errors.oid_repr(oid),
                                    errors.oid_repr(serial),
                                    errors.oid_repr(tid)), oldest=serial)

    def loadSerial(self, oid, serial):
        """The record ``oid`` got in transaction ``serial``; else POSKeyError
        (history-free: only the current revision can be read)."""
        row = self._fetch('loading', self._q.load_serial,
                          {'oid': q.to_int(oid), 'tid': q.to_int(serial)})
        if row is None or row[0] is None or not row[1]:
            raise errors.POSKeyError(oid)
        return row[0]

    def history(self, oid, size=1):
        """Up to ``size`` revisions of ``oid`` (all if None), newest first."""
        rows = self._fetch('reading history', self._q.history,
                           (q.to_int(oid), size), many=True)
        if not rows:
            raise errors.POSKeyError(oid)
        return [TransactionMeta(q.to_bytes(tid), user or b'', desc or b'',
                                ext or b'').info(serial=q.to_bytes(tid),
                                                 size=length or 0)
                for tid, length, user, desc, ext in rows]

    def lastTransaction(self):
        """The storage object: the newest committed tid (asked from the
        server). An instance: the tid its snapshot shows, or its own
        latest commit."""
        self._check_open()
        if self._snapshot or self._wait_for_finish():
            return self._ltid
        last = q.to_bytes(self._fetch('reading the last tid', q.LAST_TID)[0])
        with self._lock:
            if last > self._ltid and self._finisher is None:
                self._ltid = last
            return self._ltid

    def getSize(self):
        """Approximate bytes of records, plus 64 per revision."""
        return self._fetch('measuring', q.SIZE)[0]

    def __len__(self):
        """Objects with records, deleted ones included until a pack."""
        return self._fetch('counting objects', self._q.object_count)[0]

    def __bool__(self):
        return True

    def history_start(self):
        """See ``IHistoryWindow``. History-free: the newest tid."""
        if not self._q.keep_history:
            return self._ltid if self._snapshot else self.lastTransaction()
        return q.to_bytes(self._fetch('reading the history window',
                                      q.HISTORY_START)[0])

    def record_iternext(self, next=None):
        """``(oid, tid, data, next_oid)`` of the first current object at or
        after ``next``, skipping deleted ones; POSKeyError if none."""
        start = q.to_int(next or z64)
        rows = self._fetch('walking records', self._q.current_record,
                           (start,), many=True)
        if not rows:
            raise errors.POSKeyError(next or z64)
        zoid, tid, data = rows[0]
        following = q.to_bytes(rows[1][0]) if len(rows) > 1 else None
        return q.to_bytes(zoid), q.to_bytes(tid), data, following

    # -- oids ---------------------------------------------------------------

    def new_oid(self):
        if self._closed or self._read_only:
            self._check_writable()
        return q.to_bytes(self._shared.new_oid(self._store_link))

    # -- closing ------------------------------------------------------------

    def close(self):
        """Discard a transaction in progress and close the connections
        (the storage object: also those shared with its instances)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._transaction is not None:
            self._store_link.rollback()
            self._clear_commit()
            self._end_commit()
        self._load.close()
        self._store_link.close()
        if self._main is None:
            self._shared.close()

    def __repr__(self):
        return '<%s %s%s>' % (type(self).__name__, self.__name__,
                              ' instance' if self._snapshot else '')

