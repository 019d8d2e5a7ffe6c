"""PMemStorage: a pool file mapped with mmap, copy-on-write commits.

Trade-offs, candidly. Against FileStorage it reads straight from the map
(no system call per load) and opens in constant time after a clean close,
but it keeps no history: an old revision lives only while a snapshot that
an open instance (a connection) reads can still reach it, so there is no
undo and ``db.open(at=...)`` works only inside that window. Against
MemoryStorage it is durable and holds more than memory.

Commit sequence and flush points
--------------------------------
Every change to the pool file goes through :mod:`.pmemio`; the numbered
points below are the calls a crash test can kill at. A *flush* is a
barrier: what it covers is durable when it returns.

Creating a pool (``create=True`` or a missing file):

  C1. ``open`` the file (``O_CREAT``; ``O_TRUNC`` with ``create=True``),
      ``truncate`` it to ``pool_size``, ``fsync``.
  C2. ``map``; ``write`` the header fields (flag CLEAN) and root slot A
      (empty database, tid ``z64``, generation 1) but not the magic;
      ``flush`` the header page.
  C3. ``write`` the magic; ``flush`` it. Before C3 completes the file is
      not a pool: opening it raises ``FileFormatError`` and nothing is
      written to it.

Opening a pool for writing (after every check, which only reads):

  O1. ``write`` the DIRTY flag; ``flush`` the whole header page (the
      flag and both root slots: a root that a process killed between F1
      and F2 wrote but never flushed is adopted by this open, so it must
      be durable before anything the older root reaches is reused). If
      the flag was not CLEAN (the last writer did not close), the free
      space was rebuilt in memory from the table before O1 (nothing
      written) and ``recovered`` is true. Space that read-only processes'
      snapshots reach (see below) is carved out of the free space first.

Committing (``tpc_vote`` does V1-V3, ``tpc_finish`` does F1-F2):

  V1. Only when the free space is too small: ``truncate`` the file to
      the new size, ``fsync``, ``map`` the larger file (old maps stay
      open until ``close``, so loads in flight finish). With
      ``grow=False`` this raises ``PoolFullError`` instead and the
      transaction aborts having written nothing reachable.
  V2. ``write`` each new record and each new object-table node
      (copy-on-write: into free space that no root slot's table reaches
      and no open snapshot reads).
  V3. ``flush`` the written ranges, one call per run of nearby writes.
      After the last one the transaction's bytes are durable but still
      unreachable: a crash now leaves the pool as before the commit.
  F1. ``write`` the new root (generation + 1, tid, table, size, checksum)
      into the slot that does not hold the current root.
  F2. ``flush`` that slot: the commit point. A crash before F2 returns
      leaves the previous root in force (a torn slot fails its checksum
      and the other slot wins); after it, the transaction is durable.
      Then, in memory only: loads of new snapshots see it, and space it
      superseded is freed once no open snapshot can read it.

``pack`` (garbage collection) commits the same way, as a transaction that
deletes the unreachable objects.

Closing a writable pool (skipped if a commit failed in ``tpc_finish``):

  X1. ``write`` the free-space list into free space (never into space a
      snapshot may still read); ``flush`` it. The list counts that space
      as free: the next writer carves out what live readers still read.
  X2. ``write`` a root with the same tid, generation + 1 and the list's
      location into the other slot; ``flush`` it.
  X3. ``write`` the CLEAN flag; ``flush`` it; ``unmap``; ``close``.
      A crash before X3 completes leaves the flag DIRTY: the next open
      ignores the list and rebuilds the free space from the table.

Processes: one writer process at a time (an exclusive lock on
``<path>.lock``, as FileStorage); any number of read-only processes may
open the pool meanwhile. A read-only process writes nothing to the pool
file: it publishes the tid and table of each snapshot it reads in a slot
of ``<path>.readers``, and the writer keeps what those snapshots reach.
"""
import logging
import os

from zope.interface import implementer

from objstore import errors
from objstore import interfaces
from objstore.serialize import references
from objstore.storages.base import BaseStorage, p64
from objstore.storages.pmem import collect
from objstore.storages.pmem import format as fmt
from objstore.storages.pmem import opening
from objstore.storages.pmem import table
from objstore.storages.pmem.allocator import FreeSpace, Pending
from objstore.storages.pmem.commit import REMOVE, Committing
from objstore.storages.pmem.instance import PMemInstance
from objstore.storages.pmem.reading import Reading
from objstore.storages.pmem.snapshot import Snapshot
from objstore.storages.pmem.window import Window

logger = logging.getLogger(__name__)

DEFAULT_POOL_SIZE = fmt.DEFAULT_POOL_SIZE
MIN_POOL_SIZE = fmt.MIN_POOL_SIZE
__all__ = ['PMemStorage', 'REMOVE', 'DEFAULT_POOL_SIZE', 'MIN_POOL_SIZE']


@implementer(interfaces.IStorage, interfaces.IMVCCStorage,
             interfaces.IStorageRestoreable,
             interfaces.IStorageCurrentRecordIteration,
             interfaces.ReadVerifyingStorage, interfaces.IExternalGC,
             interfaces.IHistoryWindow)
class PMemStorage(Reading, Committing, BaseStorage):
    """An MVCC storage in one memory-mapped pool file, without history.

    ``PMemStorage(path, pool_size=DEFAULT_POOL_SIZE, create=False,
    read_only=False, grow=True)`` opens the pool at ``path``, creating a
    pool of ``pool_size`` bytes when the file is missing or ``create`` is
    true. A full pool grows (doubling); with ``grow=False`` a transaction
    that does not fit fails in ``tpc_vote`` with ``PoolFullError`` and
    leaves the pool as it was. ``clean_shutdown`` says whether the last
    writer closed the pool cleanly; ``recovered`` whether this open had to
    rebuild the free space because it did not.

    Not history-preserving: each object has one current record. An older
    revision is kept only while a snapshot that an open instance (a
    connection, ``db.open(at=...)``) reads still reaches it; the history
    window runs from the oldest such snapshot (``history_start()``) to
    the newest commit. ``loadBefore``, ``loadSerial``, ``history`` and
    ``db.open(at=...)`` answer inside the window; a moment before it
    raises ``HistoryUnavailable``. No undo. ``pack`` (or
    ``collect_garbage()``) deletes every object not reachable from the
    root; transaction metadata (user, description) is kept only in memory
    for commits inside the window.

    Durability, in ACID terms. Atomicity: a commit writes its records and
    table nodes into free space, flushes them, then switches the root with
    one flushed write of a checksummed slot; a crash at any moment leaves
    the pool as before or as after the transaction. Consistency: every
    record and table node carries a CRC-32, checked on every load; damage
    raises ``CorruptionError``, never wrong data. Isolation: each instance
    reads one snapshot, moved only by ``poll_invalidations``. Durability:
    when ``tpc_finish`` returns, the transaction has been flushed (msync)
    to the file; on a DAX file system that is persistent memory,
    elsewhere the file system's durability after msync.

    The window in practice: every connection of a ``DB`` pins the
    snapshot of its current (or, in the DB's pool of closed connections,
    its last) transaction, so space superseded after the oldest of those
    is kept until that connection starts another transaction.

    Processes: one writer process (``StorageLockedError`` for another);
    read-only processes may open the pool meanwhile and see new commits
    at each poll; the writer keeps what their snapshots read (see
    ``objstore.storages.pmem.readers``). A read-only process can show
    only its newest snapshot as a past moment (it does not see every
    commit).
    """

    # Read by objstore.history()/as_of() and tools (RelStorage's name):
    # the pool keeps only the revisions open snapshots still read.
    keep_history = False

    def __init__(self, path, pool_size=DEFAULT_POOL_SIZE, create=False,
                 read_only=False, grow=True):
        path = os.path.abspath(os.fspath(path))
        super().__init__(path, read_only)
        if not isinstance(pool_size, int) or pool_size < MIN_POOL_SIZE:
            raise errors.InvalidArgumentError(
                'pool_size must be an int of at least %d bytes, not %r'
                % (MIN_POOL_SIZE, pool_size))
        self._path = path
        self._grow_ok = bool(grow)
        self._pool = None
        self._writer_lock = None
        self._readers = None
        self._slots = {}        # read-only: tid -> reader slot
        self._free = FreeSpace()
        self._pending = Pending()
        self._committer = None
        self._tdata = None
        self._voted = None
        self._allocated = []
        self._failed = False
        self.recovered = False
        #: True if the last writer closed the pool (or it was just created).
        self.clean_shutdown = True
        try:
            if read_only:
                if create:
                    raise errors.ReadOnlyError(
                        'cannot create %s read-only' % path)
                root = opening.open_reader(self)
            else:
                root = opening.open_writer(self, pool_size, create)
        except BaseException:
            self._release_files()
            raise
        self._window = Window(Snapshot(self._pool, root), exact=not read_only)
        self._root = root
        self._oid = root.max_oid
        self._ltid = root.tid

    # -- opening and closing -------------------------------------------------

    def close(self):
        """Close the pool; a transaction in progress is discarded.

        A writer writes the free-space list and marks the pool clean
        (X1-X3), so the next open reads no table. Calling it again does
        nothing.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self._transaction is not None:
                    self._abort()
                if (not self._read_only and self._pool is not None
                        and not self._failed):
                    opening.close_clean(self)
            finally:
                self._release_files()

    def _release_files(self):
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        readers, self._readers = self._readers, None
        if readers is not None:
            slots, self._slots = self._slots, {}
            try:
                for index in slots.values():
                    readers.release(index)
            except OSError:
                pass
            readers.close()
        held, self._writer_lock = self._writer_lock, None
        if held is not None:
            held.release()

    def _fail(self, why):
        """An I/O error in tpc_finish left the pool in doubt: stop using it
        (the next open recovers from the root in force)."""
        logger.critical('%s: %s; closing the storage', self._path, why,
                        exc_info=True)
        self._failed = True
        self._closed = True
        self._release_files()

    # -- IMVCCStorage ----------------------------------------------------------

    def new_instance(self):
        """An instance reading its own snapshot (the newest commit now)."""
        with self._lock:
            self._check_open()
            self._refresh()
            snapshot = self._window.current
            self._window.pin(snapshot)
        return PMemInstance(self, snapshot)

    def before_instance(self, before):
        """A read-only instance showing the database just before the tid
        ``before``; HistoryUnavailable outside the window."""
        with self._lock:
            self._check_open()
            self._refresh()
            snapshot = self._window.snapshot_before(before)
            if snapshot is None:
                raise self._unavailable(before)
            self._window.pin(snapshot)
        return PMemInstance(self, snapshot, historical=True)

    def poll_invalidations(self):
        """The storage itself reads the newest commit: None (no snapshot
        of its own to report against); instances report what changed."""
        with self._lock:
            self._check_open()
            self._refresh()
        return None

    def release(self):
        """Nothing to free: ``close()`` ends the storage."""

    def load(self, oid, version=''):
        """``(data, tid)`` of the current record of ``oid``."""
        try:
            return self._window.current.load(oid)
        except errors.CorruptionError:
            # No snapshot pins the storage's own reads: two commits may
            # have freed and reused the record meanwhile. Under the lock
            # that cannot happen, so only real damage fails twice.
            with self._lock:
                self._check_open()
                return self._window.current.load(oid)

    def sync(self, force=True):
        """A read-only process catches up with the writer's commits."""
        with self._lock:
            self._check_open()
            self._refresh()

    def _repin(self, instance):
        """Move ``instance`` from its snapshot to the newest; return the
        oids others changed in between (instances' poll)."""
        with self._lock:
            self._check_open()
            self._refresh()
            current = self._window.current
            old = instance._snapshot
            if current is old:
                return []
            changed = list(self._window.changes(
                old.tid, current.tid, instance))
            self._window.pin(current)
            self._window.unpin(old)
            instance._snapshot = current
            self._collect()
        return changed

    def _unpin(self, snapshot):
        with self._lock:
            if self._closed:
                return
            self._window.unpin(snapshot)
            self._collect()

    def _collect(self):
        """Free what no pinned snapshot reads any more (lock held)."""
        window = self._window
        oldest = window.oldest()
        readers = self._readers
        if readers is not None and self._read_only:
            for tid in [t for t in self._slots if not window.pinned(t)]:
                readers.release(self._slots.pop(tid))
        elif readers is not None and len(self._pending):
            for tid, _, _ in readers.snapshots():
                if tid < oldest:
                    oldest = tid
        for offset, length in self._pending.due(oldest):
            self._free.free(offset, length)
        window.prune(oldest)

    def _pin_root(self, root):
        """In a read-only process: publish ``root`` (or, if a commit came
        meanwhile, a newer one) in a reader slot; return the root."""
        readers = self._readers
        if readers is None:
            return root
        while True:
            index = readers.claim(root.tid, root.table, root.height)
            again = self._pool.read_root()
            if (again.tid, again.table) == (root.tid, root.table):
                old = self._slots.get(root.tid)
                self._slots[root.tid] = index
                if old is not None:
                    readers.release(old)
                return root
            readers.release(index)
            root = again

    def _refresh(self):
        """In a read-only process, move to the writer's newest root."""
        if not self._read_only:
            return
        root = self._pool.read_root()
        current = self._window.current
        if (root.tid, root.table) == (current.tid, current.table):
            return
        root = self._pin_root(root)
        changed = set()
        leaves = dict(current.leaves)
        for n, _, _ in table.diff(self._path, self._pool.map, current.table,
                                  current.height, root.table, root.height,
                                  root.size):
            changed.add(p64(n))
            leaves.pop(n // fmt.FANOUT, None)
        self._window.advance(Snapshot(self._pool, root, leaves), changed)
        self._root = root
        self._ltid = root.tid
        self._oid = max(self._oid, root.max_oid)
        self._collect()

    def _unavailable(self, before):
        start = self._window.start()
        return errors.HistoryUnavailable(
            '%s keeps no history: it can show the database from %s on'
            ' (the oldest snapshot an open connection reads), not just'
            ' before %s' % (self._path, errors.oid_repr(start),
                            errors.oid_repr(before)), oldest=start)

    # -- IHistoryWindow --------------------------------------------------------

    def history_start(self):
        """The oldest tid whose state the storage can still show: the
        oldest snapshot an open instance reads, or the newest commit."""
        with self._lock:
            self._check_open()
            self._refresh()
            return self._window.start()

    # -- IStorage: reading -------------------------------------------------------

    def getSize(self):
        """Bytes in use (the file's size in a read-only process, which
        does not know the free space)."""
        with self._lock:
            self._check_open()
            if self._read_only:
                return self._pool.size
            return self._pool.size - self._free.total()

    def __len__(self):
        with self._lock:
            self._check_open()
            return self._window.current.count

    # -- no undo (ZODB's tools ask for these) --------------------------------

    def supportsUndo(self):
        return False

    def undoLog(self, first=0, last=-20, filter=None):
        """Always empty: without history nothing can be undone."""
        self._check_open()
        return []

    def undoInfo(self, first=0, last=-20, specification=None):
        self._check_open()
        return []

    def undo(self, transaction_id, transaction):
        """UndoError: a pmem pool keeps no history to undo to."""
        self._check_writable()
        raise errors.UndoError('%s keeps no history, so it cannot undo'
                               % self._path)

    # -- pack, iteration ---------------------------------------------------------

    def pack(self, t, referencesf=None, gc=True):
        """Remove what a pack to ``t`` would leave unreachable: with
        ``gc``, every object reachable neither from the root nor from a
        record written at or after ``t``; in any case the deletion
        records written before ``t``. There is no history to drop."""
        collect.collect_garbage(self, referencesf or references, t, gc)

    def collect_garbage(self, referencesf=None):
        """Remove every object the root does not reach (and every deletion
        record), in one commit; return ``{'reachable': n, 'freed': n}``
        (objects kept and removed)."""
        return collect.collect_garbage(self, referencesf or references)

    def iterator(self, start=None, stop=None):
        """The current records grouped by the tid that wrote them, oldest
        first, as transactions (see :mod:`.collect`)."""
        return collect.CurrentIterator(self, start, stop)

    def record_iternext(self, next=None):
        """``(oid, tid, data, next_oid)``; see
        ``IStorageCurrentRecordIteration``."""
        return collect.record_iternext(self, next)
