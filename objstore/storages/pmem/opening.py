"""Opening a PMemStorage's pool (writer or reader) and closing it cleanly.

Steps O1 and X1-X3 of the sequence in :mod:`.storage`'s docstring. An
open only reads until every check has passed (header, root, free space,
readers' snapshots), so a file that fails to open is left as it was.
"""
import logging
import os

from objstore import errors
from objstore.storages.base import p64, u64
from objstore.storages.file.lock import WriterLock
from objstore.storages.pmem import format as fmt
from objstore.storages.pmem import recovery
from objstore.storages.pmem.allocator import FreeSpace
from objstore.storages.pmem.pool import PoolFile
from objstore.storages.pmem.readers import ReaderSlots

logger = logging.getLogger('objstore.storages.pmem.storage')


def open_writer(storage, pool_size, create):
    storage._writer_lock = WriterLock(storage._path)
    if create or not os.path.exists(storage._path):
        storage._pool, root = PoolFile.create(storage._path, pool_size)
        storage._free = FreeSpace([(fmt.HEADER_SIZE,
                                 storage._pool.size - fmt.HEADER_SIZE)])
    else:
        storage._pool, root, clean = PoolFile.open(storage._path, False)
        storage.clean_shutdown = clean
        storage._free = _free_space(storage, root, clean)
    try:
        storage._readers = ReaderSlots(storage._path)
    except OSError:
        storage._readers = None
    _keep_readers_snapshots(storage, root)
    storage._pool.set_dirty()                  # O1
    return root

def _free_space(storage, root, clean):
    pool = storage._pool
    extents = None
    if clean and root.free_offset:
        extents = fmt.unpack_free_list(pool.map, root.free_offset,
                                       root.free_length, root.size)
    if extents is None:
        if clean:
            logger.warning('%s: the free-space list is missing or'
                           ' damaged; rebuilding it', storage._path)
        storage.recovered = True
        return recovery.rebuild(storage._path, pool.map, root, pool.size)
    free = FreeSpace.from_columns(*extents)
    free.free(root.free_offset, fmt.aligned(root.free_length))
    if pool.size > root.size:
        free.free(root.size, pool.size - root.size)
    return free

def _keep_readers_snapshots(storage, root):
    """Carve what live read-only processes still read out of the free
    space (they may hold snapshots older than ``root``)."""
    if storage._readers is None:
        return
    for tid, table_offset, height in storage._readers.snapshots():
        if tid >= root.tid:
            continue
        old = fmt.Root(0, tid, 0, table_offset, height, root.size, 0)
        try:
            extents = recovery.exclusive_extents(
                storage._path, storage._pool.map, old, root,
            storage._pool.size)
        except errors.CorruptionError:
            logger.warning('%s: a reader slot names a snapshot that is'
                           ' no longer intact; ignored', storage._path)
            continue
        kept = [e for e in extents if storage._free.carve(*e)]
        storage._pending.add(p64(u64(tid) + 1), kept)


def open_reader(storage):
    storage._pool, root, clean = PoolFile.open(storage._path, True)
    storage.clean_shutdown = clean
    try:
        storage._readers = ReaderSlots(storage._path)
    except OSError:
        storage._readers = None
        logger.warning('%s: the side file %s.readers cannot be written: a'
                       ' writer may free what this process reads',
                       storage._path, storage._path)
    return storage._pin_root(root)


def close_clean(storage):
    """X1-X3. The list also holds the space still pending (read-only
    processes' snapshots may read it: the next writer carves those out
    again), so the list itself goes where nothing reads."""
    free = storage._free
    pending = storage._pending.extents()
    # The list's own extent is not in it: allocate it first (at most
    # one entry more than there are now), then list what is free.
    length = fmt.FREE_HEAD.size + (
        len(free) + len(pending) + 1) * fmt.EXTENT.size
    offset = storage._alloc(fmt.aligned(length), may_grow=False)
    if offset is None:
        return
    for extent in pending:
        free.free(*extent)
    listed = fmt.pack_free_list(free.extents())
    storage._pool.write(offset, listed)                        # X1
    storage._pool.flush_ranges([(offset, len(listed))])
    storage._root = storage._root.replace(
        generation=storage._root.generation + 1, size=storage._pool.size,
        max_oid=storage._oid,
        free_offset=offset, free_length=len(listed))
    storage._pool.write_root(storage._root)                       # X2
    storage._pool.set_clean()                         # X3
