"""Every change PMemStorage makes to its pool file goes through here.

The storage calls these module-level functions as ``pmemio.f(...)`` at
call time, so the crash and power-loss tests (``objstore.testing.pmem_*``)
can replace them to record every write and flush, replay barrier-
respecting prefixes of them, tear a write or kill the process at a flush.
Reads never come through here: the storage reads straight from the map.

The model a power-loss test may assume: a :func:`write` not yet covered
by a later :func:`flush` of its range may be lost, or torn at 8-byte
granularity (persistent memory) or page granularity (the page cache);
flushed bytes are durable; flushes are ordered (each is a barrier).
:func:`truncate` followed by :func:`fsync` makes a new file size durable.
"""
import mmap as _mmap
import os

_PAGE = _mmap.ALLOCATIONGRANULARITY


def open(path, flags, mode=0o644):  # noqa: A001 (named after os.open)
    """Open ``path`` with ``os.open`` flags; return the descriptor."""
    return os.open(path, flags, mode)


def close(fd):
    os.close(fd)


def truncate(fd, size):
    """Set the file's size (the storage only ever grows it)."""
    os.ftruncate(fd, size)


def fsync(fd):
    """Make the file's size and metadata durable."""
    os.fsync(fd)


def map(fd, size, writable=True):  # noqa: A001 (the contract's name)
    """Map the first ``size`` bytes of ``fd``, shared; return the mmap."""
    access = _mmap.ACCESS_WRITE if writable else _mmap.ACCESS_READ
    return _mmap.mmap(fd, size, access=access)


def unmap(m):
    m.close()


def write(m, offset, data):
    """Store ``data`` into the map at ``offset``; not durable until a
    :func:`flush` covering it returns."""
    m[offset:offset + len(data)] = data


def flush(m, offset, length):
    """Make ``length`` bytes at ``offset`` durable (msync); a barrier."""
    start = offset - offset % _PAGE
    m.flush(start, offset + length - start)
