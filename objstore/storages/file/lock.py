"""The writer lock: one process at a time may write a FileStorage.

The lock is an exclusive ``flock`` on ``<log>.lock``, taken without
waiting, so a second writer (another process, or a second writable
instance in the same process) fails at once with ``StorageLockedError``.
``flock`` rather than ``fcntl.lockf``: POSIX record locks belong to the
process, so a second open in the same process would silently share it.
The holder writes its pid into the file so the error can name it. The
lock file is a separate file because pack replaces the log itself, and a
lock on a replaced inode would protect nothing. It is never removed:
removing it would let two processes lock two different inodes.

The kernel drops the lock when the process dies, so a crash never leaves
a stale lock behind. Read-only instances never take it.
"""
import fcntl
import os

from objstore import errors
from objstore.storages.file import fsio


class WriterLock:
    """An acquired writer lock on ``path``; :meth:`release` gives it back."""

    def __init__(self, path):
        self.path = path + '.lock'
        fd = fsio.open(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            fsio.close(fd)
            raise errors.StorageLockedError(
                '%s is locked for writing by %s (lock file %s); open it with'
                ' read_only=True to read it meanwhile'
                % (path, 'process %s' % holder if holder else
                   'another process', self.path)) from None
        except BaseException:
            fsio.close(fd)
            raise
        self._fd = fd
        fsio.truncate(fd, 0)
        fsio.write(fd, b'%d\n' % os.getpid(), 0)

    def release(self):
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                fsio.truncate(fd, 0)
            except OSError:
                pass
            # Closing the descriptor releases the flock.
            fsio.close(fd)


def _read_pid(fd):
    try:
        text = os.pread(fd, 32, 0).decode('ascii').strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if text.isdigit() else None
