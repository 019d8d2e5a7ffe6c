"""Every change FileStorage makes to the file system goes through here.

These module-level functions are the storage's seams: the storage calls
them as ``fsio.write(...)`` at call time, so the crash and fault tests in
``objstore.testing`` can replace them to record each write and fsync,
replay prefixes of them, tear a write or fail one. Reads do not go
through here; they change nothing.

Writes name their offset (``os.pwrite``): the log is never written through
a shared file position, so a failed or torn write can be retried or cut
without guessing where the file pointer went.
"""
import os

_O_BINARY = getattr(os, 'O_BINARY', 0)


def open(path, flags, mode=0o644):  # noqa: A001 (the seam is named after os.open)
    """Open ``path`` with ``os.open`` flags; return the descriptor."""
    return os.open(path, flags | _O_BINARY, mode)


def close(fd):
    os.close(fd)


def write(fd, data, offset):
    """Write all of ``data`` at ``offset``; short writes are continued."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def fsync(fd):
    """Flush the file's data and size to stable storage."""
    if hasattr(os, 'fdatasync'):
        # The size change is part of what fdatasync flushes; timestamps
        # are not, and the storage never relies on them.
        os.fdatasync(fd)
    else:
        os.fsync(fd)


def truncate(fd, size):
    os.ftruncate(fd, size)


def replace(src, dst):
    """Atomically put ``src`` in the place of ``dst`` (same directory)."""
    os.replace(src, dst)


def remove(path):
    """Remove ``path``; a missing file is not an error."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def fsync_dir(path):
    """Make a rename or creation of ``path`` durable by syncing its directory."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        # Some platforms cannot open directories; renames there are as
        # durable as the platform makes them.
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
