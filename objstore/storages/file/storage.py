"""FileStorage: objstore's embedded default storage, one append-only file.

Trade-offs, candidly. Against ``MemoryStorage`` it is durable and holds
more than memory, at the price of a system call per load and an fsync per
commit. Against ``pmem`` it keeps full history and undo, and never
rewrites a byte in place, but current data is found through an in-memory
index (rebuilt from a checkpoint plus the log tail on open) rather than
read straight from a map, and old revisions are only dropped by pack,
which copies the whole live data. Against ``postgresql`` it is one process
writing, many reading, on one machine.

The modules of this package: ``format`` (the on-disk layout and
checksums), ``scan`` (reading the log), ``recovery`` (what an invalid
transaction at the end of the log means), ``index`` (the
oid index and its checkpoint files), ``fsio`` (every write, fsync,
truncate and rename: the crash tests' seams), ``lock`` (the writer lock),
``log`` (opening, recovery, checkpoints, following a writer),
``revisions`` (walking back to an earlier revision), ``history``
(history, undo, the undo log), ``pack``.
"""
import logging
import os

from zope.interface import implementer

from objstore import conflict
from objstore import errors
from objstore import interfaces
from objstore.storages.base import BaseStorage, u64, z64
from objstore.storages.file import format as fmt
from objstore.storages.file import history as history_mod
from objstore.storages.file import fsio
from objstore.storages.file.index import OidIndex
from objstore.storages.file import lock as lock_mod
from objstore.storages.file import log
from objstore.storages.file import pack as pack_mod
from objstore.storages.file import revisions
from objstore.storages.file import scan

logger = logging.getLogger(__name__)


@implementer(interfaces.IStorage, interfaces.IStorageIteration,
             interfaces.IStorageUndoable, interfaces.IStorageRestoreable,
             interfaces.IStorageCurrentRecordIteration,
             interfaces.ReadVerifyingStorage, interfaces.IExternalGC,
             interfaces.IHistoryWindow)
class FileStorage(BaseStorage):
    """A history-keeping storage in one append-only, checksummed file.

    ``FileStorage(path, create=False, read_only=False, fsync=True)`` opens
    ``path``, creating it when missing; ``create=True`` starts a new empty
    file in its place. One process may write at a time (a second writer
    gets ``StorageLockedError``); any number may open it with
    ``read_only=True`` and see new commits after each :meth:`sync`.

    Durability, in ACID terms. Atomicity: a transaction is one record
    whose commit trailer is written last; recovery drops a transaction
    without its trailer, so a crash at any moment leaves each transaction
    wholly present or wholly absent. Consistency: every record carries a
    checksum that is verified before use; damage raises
    ``CorruptionError`` and is never served as data. Isolation: a
    transaction becomes visible to loads when ``tpc_finish`` updates the
    index, all at once. Durability: with ``fsync=True`` (the default) a
    transaction is on stable storage when ``tpc_finish`` returns (one
    fsync per commit), so neither a process crash nor a power loss loses
    it. With ``fsync=False`` a transaction survives a crash of the
    process (the operating system holds it), but a power loss or kernel
    crash may lose the transactions of the last seconds: usually a suffix
    of the log, which the next open cuts with a warning; if the file
    system wrote pages out of order, the next open finds damage followed
    by valid transactions and raises ``CorruptionError`` rather than drop
    anything silently.

    ``tpc_vote`` writes the transaction without its trailer, so errors
    such as a full disk surface there (and the bytes are cut again);
    ``tpc_finish`` appends the 24-byte trailer and fsyncs. A crash between
    the two leaves a transaction without trailer, which the next open cuts
    with a warning, as ZODB's FileStorage does with its checkpoint flag.
    The one fsync flushes body and trailer together, and a disk may write
    their sectors in any order: a power loss during it can leave the
    trailer on disk but not an earlier sector, which reads as zeros, the
    first one (header and all) included. The next open cuts such a last
    transaction (never acknowledged) with a warning too, when lost
    sectors explain every check that fails: each record whose checksum
    fails overlaps an aligned all-zero sector, zeros from the start cover
    the header, the trailer ending the file fits the tail's exact length
    and comes after the last tid. Bit rot is never cut (see
    :func:`objstore.storages.file.recovery.recover_tail`).
    Oids ``new_oid`` handed out stay reserved across a clean close (the
    checkpoint keeps the counter); after a crash, those never stored since
    the last checkpoint may be handed out again, as in ZODB. So may the
    oids of objects a pack collected if the checkpoint file is lost too:
    the packed log keeps no trace of them.
    """

    def __init__(self, path, create=False, read_only=False, fsync=True):
        path = os.fspath(path)
        super().__init__(path, read_only)
        self._path = path
        self._index_path = path + '.index'
        self._fsync = bool(fsync)
        self._fd = None
        self._writer_lock = None
        self._inode = None
        self._file_id = None
        self._index = OidIndex()
        self._pos = fmt.FILE_HEADER_SIZE
        self._checkpoint_pos = 0
        self._checkpoint_oid = 0
        self._checkpoint_size = 0
        self._pending = None
        self._voted = None
        self._resolved = []
        self._history_start = None      # unknown until asked
        #: How many data records the last open or sync read from the log
        #: (those a checkpoint covered are not counted).
        self.records_scanned = 0
        try:
            if read_only and create:
                raise errors.ReadOnlyError('cannot create %s read-only'
                                           % path)
            if not read_only:
                self._writer_lock = lock_mod.WriterLock(path)
            log.open_file(self, create)
        except BaseException:
            self._release_files()
            raise

    # -- opening and closing ------------------------------------------------

    def close(self):
        """Close the file; a transaction in progress is discarded.

        A writer saves an index checkpoint so the next open is fast.
        Calling it again does nothing.
        """
        with self._lock:
            if self._closed:
                return
            try:
                if self._voted is not None:
                    self._cut_back()
                self._pending = None
                if (self._fd is not None and not self._read_only
                        and log.checkpoint_stale(self)):
                    log.try_checkpoint(self)
            finally:
                self._closed = True
                self._index.close()
                self._release_files()

    def _release_files(self):
        fd, self._fd = self._fd, None
        if fd is not None:
            (os.close if self._read_only else fsio.close)(fd)
        held, self._writer_lock = self._writer_lock, None
        if held is not None:
            held.release()

    def _fail(self, why):
        """An I/O error left the file in doubt: stop using it."""
        logger.critical('%s: %s; closing the storage', self._path, why,
                        exc_info=True)
        with self._lock:
            self._voted = None
            self._closed = True
            self._index.close()
            self._release_files()

    # -- reading --------------------------------------------------------

    def _read(self, pos, oid):
        """``(tid, prev, tpos, flags, data_txn, data)`` of the record at
        ``pos``, checksum verified. Call with ``self._lock`` held."""
        return scan.read_record(self._fd, self._path, pos, oid, self._pos)

    def load(self, oid, version=''):
        """Return ``(data, tid)`` of the current revision of ``oid``.

        Raises ``POSKeyError`` if there is none or it is a deletion record.
        """
        with self._lock:
            self._check_open()
            pos = self._index.get(oid)
            if pos is None:
                raise errors.POSKeyError(oid)
            tid, _prev, _tpos, flags, _dt, data = scan.read_record(
                self._fd, self._path, pos, oid, self._pos)
        if flags & fmt.FLAG_DELETED:
            raise errors.POSKeyError(oid)
        return data, tid

    def loadBefore(self, oid, tid):  # ZODB's protocol name
        with self._lock:
            self._check_open()
            entry = self._index.entry(oid)
            if entry is None:
                raise errors.POSKeyError(oid)
            found = revisions.revision_before(self._fd, self._path, entry,
                                              oid, tid, self._pos)
        if found is None:
            return None
        rtid, flags, data, end = found
        if flags & fmt.FLAG_DELETED:
            raise errors.POSKeyError(oid)
        return data, rtid, end

    def loadSerial(self, oid, serial):  # ZODB's protocol name
        found, data = self._revision(oid, serial)
        if data is None:
            raise errors.POSKeyError(oid)
        return data

    def _revision(self, oid, serial):
        """``(True, data)`` of ``oid``'s record written by ``serial`` (data
        None for a deletion record), ``(False, None)`` if there is none."""
        with self._lock:
            self._check_open()
            entry = self._index.entry(oid)
            if entry is None:
                return False, None
            found = revisions.revision_at(self._fd, self._path, entry, oid,
                                          serial, self._pos)
        if found is None:
            return False, None
        return True, None if found[1] & fmt.FLAG_DELETED else found[2]

    def _committed_serial(self, oid):
        """Serial of the current revision of ``oid``, None if it has none
        (never stored, or deleted)."""
        with self._lock:
            pos = self._index.get(oid)
            if pos is None:
                return None
            tid, _prev, _tpos, flags, _dt, _data = self._read(pos, oid)
        return None if flags & fmt.FLAG_DELETED else tid

    def getTid(self, oid):  # ZODB's name (BaseStorage.getTid)
        self._check_open()
        serial = self._committed_serial(oid)
        if serial is None:
            raise errors.POSKeyError(oid)
        return serial

    def history(self, oid, size=1):
        with self._lock:
            self._check_open()
            return history_mod.history(self, oid, size)

    def history_start(self):
        with self._lock:
            self._check_open()
            return history_mod.history_start(self)

    def getSize(self):
        self._check_open()
        return self._pos

    def __len__(self):
        self._check_open()
        return len(self._index)

    def record_iternext(self, next=None):  # ZODB's protocol name
        with self._lock:
            self._check_open()
            oid = self._index.min_key(next)
            while oid is not None:
                tid, _p, _t, flags, _dt, data = self._read(
                    self._index.get(oid), oid)
                following = self._index.min_key(
                    (u64(oid) + 1).to_bytes(8, 'big')) \
                    if oid != b'\xff' * 8 else None
                if not flags & fmt.FLAG_DELETED:
                    return oid, tid, data, following
                oid = following
        raise errors.POSKeyError(next if next is not None else z64)

    def iterator(self, start=None, stop=None):
        with self._lock:
            self._check_open()
            fd = os.dup(self._fd)
            end = self._pos
        return scan.FileIterator(fd, self._path, end, start, stop)

    # -- committing -----------------------------------------------------

    def _begin(self, tid, meta):
        fmt.check_meta(meta.user, meta.description, meta.extension_bytes)
        if meta.status not in (' ', 'p'):
            meta.status = ' '
        self._pending = {}
        self._resolved = []
        self._voted = None

    def _check_store(self, transaction, version):
        if transaction is not self._transaction or self._closed:
            self._check_writable()
            self._check_transaction(transaction)
        if version:
            raise errors.StorageError('versions are not supported')

    def store(self, oid, serial, data, version, transaction):
        self._check_store(transaction, version)
        # The previous record's offset is final once seen: the commit lock
        # keeps every other writer (commit, pack) out until tpc_finish.
        prev = self._index.get(oid, 0)
        if prev:
            with self._lock:
                committed, _p, _t, flags, _dt, _data = self._read(prev, oid)
            # A deletion record's tid counts as the serial to store over,
            # as in ZODB's FileStorage: it brings the object back.
            if serial != committed:
                if flags & fmt.FLAG_DELETED:
                    committed = None
                data = self._resolve(oid, committed, serial, data)
                self._resolved.append(oid)
        self._pending[oid] = (self._tid, data, None, prev)

    def _resolve(self, oid, committed, serial, data):
        if committed is None:
            raise errors.ConflictError(
                'database conflict error: the object was deleted', oid=oid,
                serials=(committed, serial), data=data)
        return conflict.resolve(oid, committed, serial or z64, data,
                                self.loadSerial)

    def restore(self, oid, serial, data, version, prev_txn, transaction):
        self._check_store(transaction, version)
        data_txn = None
        if prev_txn and self._revision(oid, prev_txn) == (True, data):
            data_txn = prev_txn
        self._pending[oid] = (serial, data, data_txn,
                              self._index.get(oid, 0))

    def deleteObject(self, oid, serial, transaction):  # ZODB's name
        self._check_store(transaction, '')
        committed = self._committed_serial(oid)
        if committed is None:
            raise errors.POSKeyError(oid)
        if serial != committed:
            raise errors.ConflictError(oid=oid, serials=(committed, serial))
        self._pending[oid] = (self._tid, None, None, self._index.get(oid, 0))

    def checkCurrentSerialInTransaction(self, oid, serial, transaction):
        self._check_store(transaction, '')
        committed = self._committed_serial(oid)
        if committed != serial:
            # The commit lock keeps it current from here to tpc_finish.
            raise errors.ReadConflictError(oid=oid,
                                           serials=(committed, serial))

    def _vote(self, transaction):
        self._check_open()
        if self._voted is None:
            self._write_body()
        return self._resolved

    def _write_body(self):
        """Write the transaction without its trailer at the end of the log."""
        meta = self._meta
        tpos = self._pos
        body, trailer, offsets = fmt.encode_transaction(
            tpos, self._tid, meta.status.encode('ascii'), meta.user,
            meta.description, meta.extension_bytes, self._pending.items())
        try:
            fsio.write(self._fd, body, tpos)
        except BaseException:
            self._cut_back()
            raise
        self._voted = (offsets, trailer, tpos + len(body))

    def tpc_finish(self, transaction, func=lambda tid: None):
        self._check_open()
        self._check_transaction(transaction)
        if self._voted is None:
            self._vote(transaction)
        tindex, trailer, end = self._voted
        try:
            # Outside self._lock: loads go on while the fsync runs; they
            # cannot see this transaction before the index says so.
            fsio.write(self._fd, trailer, end)
            if self._fsync:
                fsio.fsync(self._fd)
        except BaseException:
            try:
                self._cut_back()
            finally:
                self._fail('tpc_finish could not write the commit trailer')
                self._end_commit()
            raise
        return super().tpc_finish(transaction, func)

    def _finish(self, tid):
        tindex, trailer, end = self._voted
        self._index.update(tindex)
        self._pos = end + fmt.TRAILER_SIZE
        if tindex:
            top = u64(max(tindex))
            if top > self._oid:
                self._oid = top
        self._pending = None
        self._voted = None
        if self._meta.status == 'p' and self._history_start is not None:
            self._history_start = tid
        if log.checkpoint_due(self):
            self._ltid = tid
            log.try_checkpoint(self)

    def _abort(self):
        if self._voted is not None:
            self._cut_back()
        self._pending = None
        self._voted = None

    def _cut_back(self):
        """Remove a written but uncommitted transaction from the file."""
        self._voted = None
        if self._fd is None:
            return
        try:
            fsio.truncate(self._fd, self._pos)
            if self._fsync:
                # Durable before the next commit reuses the space: else a
                # sector of it lost in a power loss could read back as
                # these bytes rather than as zeros, which recovery needs.
                fsio.fsync(self._fd)
        except Exception:
            # The bytes have no trailer, so no reader or recovery takes
            # them for a transaction; but the next commit must not write
            # after them, so this instance stops here.
            self._fail('could not cut an aborted transaction')

    # -- undo -----------------------------------------------------------

    def supportsUndo(self):  # ZODB's protocol name
        return True

    def undoLog(self, first=0, last=-20, filter=None):  # ZODB's name
        with self._lock:
            self._check_open()
            return history_mod.undo_log(self._fd, self._path, self._pos,
                                        first, last, filter)

    def undoInfo(self, first=0, last=-20, specification=None):  # ZODB's name
        return history_mod.undo_info(self, first, last, specification)

    def undo(self, transaction_id, transaction):
        self._check_store(transaction, '')
        with self._lock:
            oids = history_mod.undo(self, transaction_id)
        return self._tid, oids

    # -- pack and sync ----------------------------------------------------

    def pack(self, t, referencesf, gc=True):
        self._check_writable()
        pack_mod.pack(self, t, referencesf, gc)

    def sync(self, force=True):
        """Catch up with transactions another process appended.

        For a read-only instance: index what the writer committed since
        the last sync, reporting each transaction to the registered
        database (``invalidate(tid, oids)``, in commit order), and reopen
        the file when a pack replaced it. An incomplete transaction at the
        end (the writer is still appending it) waits for a later sync. A
        writer has nothing to catch up with.
        """
        self._check_open()
        if not self._read_only:
            return
        with self._lock:
            self._check_open()
            log.follow(self)
