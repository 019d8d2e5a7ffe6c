"""Creating, opening, mapping, growing and closing the pool file.

Every write goes through :mod:`.pmemio` (the steps are numbered as in
:mod:`.storage`'s docstring). Opening only reads until every check has
passed, so a file that fails to open is left exactly as it was.
"""
import os

from objstore import errors
from objstore.storages.pmem import format as fmt
from objstore.storages.pmem import pmemio

_PAGE = 4096


class PoolFile:
    """An open pool file and its maps.

    ``map`` is the current mmap (covering at least every root's size);
    maps replaced by a grow stay open until :meth:`close`, so a load that
    fetched one just before can finish with it.
    """

    def __init__(self, path, fd, m, size, read_only):
        self.path = path
        self.fd = fd
        self.map = m
        self.size = size
        self.read_only = read_only
        self._old_maps = []
        self.slot = 0

    # -- creating and opening ---------------------------------------------

    @classmethod
    def create(cls, path, size):
        """C1-C3: a new pool of ``size`` bytes holding an empty database."""
        size = max(size, fmt.MIN_POOL_SIZE)
        size += -size % _PAGE
        fd = pmemio.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            pmemio.truncate(fd, size)
            pmemio.fsync(fd)
            m = pmemio.map(fd, size)
        except BaseException:
            pmemio.close(fd)
            raise
        pool = cls(path, fd, m, size, False)
        try:
            header = fmt.new_header()
            root = fmt.Root(1, b'\0' * 8, 0, 0, 0, size, 0)
            slot = fmt.SLOT_OFFSETS[0]
            header[slot:slot + fmt.SLOT_SIZE] = root.pack().ljust(
                fmt.SLOT_SIZE, b'\0')
            pmemio.write(m, len(fmt.MAGIC), bytes(header[len(fmt.MAGIC):]))
            pmemio.flush(m, 0, fmt.HEADER_SIZE)
            pmemio.write(m, 0, fmt.MAGIC)
            pmemio.flush(m, 0, len(fmt.MAGIC))
        except BaseException:
            pool.close()
            raise
        return pool, root

    @classmethod
    def open(cls, path, read_only):
        """Map an existing pool and check it; returns ``(pool, root,
        clean)``. Raises FileFormatError, UnsupportedVersionError or
        CorruptionError (having written nothing) for a bad file."""
        flags = os.O_RDONLY if read_only else os.O_RDWR
        fd = pmemio.open(path, flags)
        try:
            size = os.fstat(fd).st_size
            if size < len(fmt.MAGIC):
                raise errors.FileFormatError(
                    path, 'not an objstore pmem pool (%d bytes)' % size)
            m = pmemio.map(fd, size, writable=not read_only)
        except BaseException:
            pmemio.close(fd)
            raise
        pool = cls(path, fd, m, size, read_only)
        try:
            clean = fmt.check_header(path, m, size)
            root, pool.slot = fmt.read_root(path, m, size)
        except BaseException:
            pool.close()
            raise
        return pool, root, clean

    def read_root(self):
        """The root in force now (read-only processes poll it)."""
        self.refresh_size()
        root, self.slot = fmt.read_root(self.path, self.map, self.size)
        return root

    def refresh_size(self):
        """Map the whole file again if another process grew it."""
        size = os.fstat(self.fd).st_size
        if size > self.size:
            self._remap(size)

    # -- writing ------------------------------------------------------------

    def set_clean(self):
        """X3: write the CLEAN flag and flush it."""
        pmemio.write(self.map, fmt.FLAG_OFFSET, fmt.ENTRY.pack(fmt.CLEAN))
        pmemio.flush(self.map, fmt.FLAG_OFFSET, 8)

    def set_dirty(self):
        """O1: write the DIRTY flag and flush the whole header with it.

        The root slots are flushed too: a process that died between a
        root write (F1) and its flush (F2) left a root that this open
        adopts, and it must be durable before anything the older root
        reaches is reused.
        """
        pmemio.write(self.map, fmt.FLAG_OFFSET, fmt.ENTRY.pack(fmt.DIRTY))
        pmemio.flush(self.map, 0, fmt.HEADER_SIZE)

    def grow(self, size):
        """V1: make the file ``size`` bytes (durably) and map all of it."""
        size += -size % _PAGE
        pmemio.truncate(self.fd, size)
        pmemio.fsync(self.fd)
        self._remap(size)

    def _remap(self, size):
        m = pmemio.map(self.fd, size, writable=not self.read_only)
        self._old_maps.append(self.map)
        self.map = m
        self.size = size

    def write(self, offset, data):
        pmemio.write(self.map, offset, data)

    def flush_ranges(self, ranges):
        """V3: flush the written ranges, merging those a page or less apart."""
        ranges = sorted(ranges)
        start, end = ranges[0][0], ranges[0][0] + ranges[0][1]
        for offset, length in ranges[1:]:
            if offset > end + _PAGE:
                pmemio.flush(self.map, start, end - start)
                start = offset
            end = max(end, offset + length)
        pmemio.flush(self.map, start, end - start)

    def write_root(self, root):
        """F1-F2 (and X2): write ``root`` into the other slot and flush it."""
        slot = 1 - self.slot
        offset = fmt.SLOT_OFFSETS[slot]
        pmemio.write(self.map, offset, root.pack())
        pmemio.flush(self.map, offset, fmt.SLOT_SIZE)
        self.slot = slot

    # -- closing --------------------------------------------------------------

    def close(self):
        """Unmap every map and close the file (no writes)."""
        maps, self._old_maps = self._old_maps + [self.map], []
        self.map = None
        for m in maps:
            if m is not None:
                try:
                    pmemio.unmap(m)
                except BufferError:
                    # A view a caller still holds; the map goes with it.
                    pass
        fd, self.fd = self.fd, None
        if fd is not None:
            pmemio.close(fd)
