"""The life of FileStorage's file: create, open, recover, checkpoint, follow.

Functions over a :class:`~objstore.storages.file.storage.FileStorage`'s
file state (``_fd``, ``_index``, ``_pos``, ``_ltid``, ``_oid`` and the
checkpoint bookkeeping), kept apart from the storage protocol.

Opening reads the newest checkpoint that matches the file, then indexes
only the log after it. A writer applies the recovery rule of
:func:`objstore.storages.file.recovery.recover_tail` to whatever fails
validation at the end; a reader stops quietly at a torn transaction (the
writer may be appending it), raises for damage like the writer, and never
changes the file. Readers rely on appends becoming visible in order: a
file's new size shows only after the bytes written before it (as on
Linux and the BSDs), so a reader never sees a complete-length transaction
with bytes still missing. Checkpoints are written on
close and whenever the log grew by :data:`CHECKPOINT_BYTES` and by half
the checkpoint's size (16 bytes an object). The trade-off: the log a
crash leaves to scan stays as short as when checkpoints held 8 bytes an
object (offsets alone); in return, in a database big enough for the
second bound to count (over 500,000 objects), the checkpoints write up
to twice the bytes of the log they cover. Failing to write one only
makes the next open slower, so it is logged, never raised.
"""
import logging
import os
import warnings

from objstore import errors
from objstore.storages.base import u64, z64
from objstore.storages.file import format as fmt
from objstore.storages.file import fsio
from objstore.storages.file import index as index_mod
from objstore.storages.file import recovery
from objstore.storages.file import scan

logger = logging.getLogger('objstore.storages.file')

#: Log growth, in bytes, after which a checkpoint is written.
CHECKPOINT_BYTES = 8 << 20


def open_file(storage, create=False):
    """Open (a writer: create when missing or asked) and load the file."""
    path = storage._path
    if storage._read_only:
        try:
            storage._fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise errors.StorageError(
                '%s does not exist (a read-only FileStorage cannot create'
                ' it)' % path) from None
    else:
        # Left by a pack that died before replacing the file.
        fsio.remove(path + '.pack')
        if create or _unborn(path):
            _create(storage)
        else:
            storage._fd = fsio.open(path, os.O_RDWR)
    load(storage)


def _unborn(path):
    """Whether ``path`` holds no log yet: missing, empty, or only the zeros
    of a header whose write never reached the disk (a creation cut short;
    the header is one write shorter than a sector, so it is never half
    there)."""
    try:
        with open(path, 'rb') as f:
            head = f.read(fmt.FILE_HEADER_SIZE + 1)
    except FileNotFoundError:
        return True
    return len(head) <= fmt.FILE_HEADER_SIZE and not head.strip(b'\0')


def _create(storage):
    fsio.remove(storage._index_path)
    fd = storage._fd = fsio.open(storage._path,
                                 os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    fsio.write(fd, fmt.encode_file_header(os.urandom(8)), 0)
    fsio.fsync(fd)
    fsio.fsync_dir(storage._path)


def load(storage):
    """Read the header, the newest matching checkpoint and the log after
    it into ``storage``; a writer recovers the tail."""
    fd = storage._fd
    path = storage._path
    stat = os.fstat(fd)
    size = stat.st_size
    storage._inode = (stat.st_dev, stat.st_ino)
    storage._file_id = fmt.decode_file_header(
        path, os.pread(fd, fmt.FILE_HEADER_SIZE, 0))
    checkpoint = index_mod.read_checkpoint(
        storage._index_path, storage._file_id, lambda end: _rebuild(storage, end))
    if checkpoint is not None and not _matches(storage, checkpoint, size):
        checkpoint.index.close()
        checkpoint = None
    if checkpoint is not None:
        index, start = checkpoint.index, checkpoint.pos
        ltid, max_oid = checkpoint.tid, checkpoint.max_oid
        storage._checkpoint_size = checkpoint.size
    else:
        index, start = index_mod.OidIndex(), fmt.FILE_HEADER_SIZE
        ltid, max_oid = z64, z64
        storage._checkpoint_size = 0
    pos, last, top, count, invalid = scan.index_tail(
        fd, start, size, ltid if start > fmt.FILE_HEADER_SIZE else None,
        index)
    if invalid is not None:
        # Damage raises here, for readers too; only a torn tail goes on.
        cut = recovery.recover_tail(fd, path, invalid, pos, size,
                                    last or ltid)
        if not storage._read_only:
            _cut(storage, invalid, cut, size)
    old, storage._index = storage._index, index
    old.close()
    storage._pos = pos
    storage._ltid = last or ltid
    storage._history_start = None
    storage._oid = max(storage._oid, u64(max(top or z64, max_oid)))
    storage._checkpoint_pos = start
    storage._checkpoint_oid = u64(max_oid)
    storage.records_scanned = count
    if not storage._read_only and checkpoint_due(storage):
        try_checkpoint(storage)


def _rebuild(storage, end):
    """The index of the log up to ``end``, from a scan: what a checkpoint
    with a damaged group is replaced by."""
    index = index_mod.OidIndex()
    pos, _last, _top, _count, invalid = scan.index_tail(
        storage._fd, fmt.FILE_HEADER_SIZE, end, None, index)
    if invalid is not None:
        raise invalid.error(storage._path)
    if pos != end:
        raise fmt.Invalid(pos, 'the log ends before the checkpoint position'
                          ' %d' % end).error(storage._path)
    return index


def _cut(storage, invalid, cut, size):
    fsio.truncate(storage._fd, cut)
    fsio.fsync(storage._fd)
    what = invalid.problem
    if invalid.tid is not None:
        what += ' (tid %s)' % errors.oid_repr(invalid.tid)
    warnings.warn(fmt.TruncatedTailWarning(
        '%s: cut %d bytes at offset %d, an incomplete last transaction'
        ' (never acknowledged): %s' % (storage._path, size - cut, cut, what)),
        stacklevel=6)


def _matches(storage, checkpoint, size):
    """Whether ``checkpoint`` describes a prefix of the file as it is."""
    if not fmt.FILE_HEADER_SIZE <= checkpoint.pos <= size:
        return False
    if checkpoint.pos == fmt.FILE_HEADER_SIZE:
        return checkpoint.tid == z64
    try:
        txn = scan.txn_before(storage._fd, storage._path, checkpoint.pos)
    except errors.CorruptionError:
        return False
    return txn.tid == checkpoint.tid


def checkpoint_stale(storage):
    """Whether the checkpoint misses anything: commits, or oids handed out
    by ``new_oid`` (saved so they stay reserved across a clean reopen)."""
    return (storage._pos != storage._checkpoint_pos
            or storage._oid != storage._checkpoint_oid)


def checkpoint_due(storage):
    grown = storage._pos - storage._checkpoint_pos
    return grown >= max(CHECKPOINT_BYTES, storage._checkpoint_size // 2)


def try_checkpoint(storage):
    """Write a checkpoint of the committed state; log a failure."""
    try:
        if not storage._fsync:
            # A checkpoint must never cover log bytes not yet on disk.
            fsio.fsync(storage._fd)
        storage._checkpoint_size = index_mod.write_checkpoint(
            storage._index_path, index_mod.Checkpoint(
                storage._file_id, storage._pos, storage._ltid,
                storage._oid.to_bytes(8, 'big'), storage._index))
        storage._checkpoint_pos = storage._pos
        storage._checkpoint_oid = storage._oid
    except Exception:
        logger.warning('could not write index checkpoint %s',
                       storage._index_path, exc_info=True)


def replace_file(storage, fd, file_id, index, pos, max_oid):
    """Switch ``storage`` to a packed file (pack holds both locks)."""
    old, storage._fd = storage._fd, fd
    fsio.close(old)
    stat = os.fstat(fd)
    storage._inode = (stat.st_dev, stat.st_ino)
    storage._file_id = file_id
    old, storage._index = storage._index, index
    old.close()
    storage._pos = pos
    storage._history_start = None
    # new_oid never goes back, even past oids pack collected.
    storage._oid = max(storage._oid, u64(max_oid))
    storage._checkpoint_pos = 0
    try_checkpoint(storage)


def follow(storage):
    """A reader catches up with the writer (``sync``); see the class."""
    try:
        stat = os.stat(storage._path)
    except FileNotFoundError:
        return
    if (stat.st_dev, stat.st_ino) != storage._inode:
        _reopen(storage)    # pack renamed a new file into place
        return
    head = os.pread(storage._fd, fmt.FILE_HEADER_SIZE, 0)
    if len(head) < fmt.FILE_HEADER_SIZE:
        return              # being created: look again at the next sync
    if head[8:16] != storage._file_id:
        _reopen(storage)    # create=True started a new file in this one
    elif stat.st_size > storage._pos:
        _catch_up(storage, storage._pos, stat.st_size)


def _catch_up(storage, start, end):
    db = storage._db
    try:
        for txn in scan.transactions(storage._fd, start, end, storage._ltid):
            found = txn.index_entries()
            storage._index.update(found)
            storage._pos = txn.end
            if found:
                storage._oid = max(storage._oid, u64(max(found)))
            storage.records_scanned += txn.count
            if txn.status == fmt.STATUS_PACKED:
                storage._history_start = None
            if db is not None:
                db.invalidate(txn.tid, list(found))
            storage._ltid = txn.tid
    except fmt.Invalid as invalid:
        # Torn means the writer is still appending it: wait for the next
        # sync. Anything else is damage and raises.
        recovery.recover_tail(storage._fd, storage._path, invalid,
                              storage._pos, end, storage._ltid)


def _reopen(storage):
    """Another file took this one's place: load it, then report what was
    committed since this reader's last transaction."""
    old_ltid = storage._ltid
    old_fd = storage._fd
    storage._fd = os.open(storage._path, os.O_RDONLY)
    os.close(old_fd)
    load(storage)
    # lastTransaction() reports the new tids only after their invalidations.
    new_ltid, storage._ltid = storage._ltid, old_ltid
    newer = []
    for txn in scan.transactions_backward(storage._fd, storage._path,
                                          storage._pos):
        if txn.tid <= old_ltid:
            break
        newer.append(txn)
    db = storage._db
    if db is not None:
        for txn in reversed(newer):
            full = scan.read_full(storage._fd, storage._path, txn)
            db.invalidate(txn.tid, list(full.index_entries()))
    storage._ltid = new_ltid
