"""Reader slots: how read-only processes tell the writer what they read.

The writer process frees the space a commit superseded once no snapshot
can read it. Its own snapshots it knows; those of read-only processes it
learns from ``<pool>.readers``, a small side file (the pool file itself
is never written by a reader). Each read-only storage claims a slot and
keeps in it the oldest snapshot its instances read: the tid, table
offset and height of that root. The writer keeps everything such a root
reaches, also across its own restart (an opening writer carves the
readers' snapshots out of the free space).

Ordering: a reader publishes a new oldest snapshot, then reads the root
again; if a commit came in between, it retries with the newer root. The
writer reads the slots only after its root switch, and both sides hold
an ``flock`` on the side file while they touch it, so either the writer
sees the published tid or the reader sees the commit.

Slots of processes that died are recognised by their pid (``kill(pid,
0)``) and reused; a pid reused by an unrelated process only delays
freeing (space stays held), never corrupts.
"""
import fcntl
import os
import struct

SIZE = 4096
_HEAD = 64
_SLOT = 64
SLOTS = (SIZE - _HEAD) // _SLOT
_ENTRY = struct.Struct('<Q8sQI')
_EMPTY = bytes(_ENTRY.size)


def _alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ReaderSlots:
    """The side file ``<path>.readers``, opened (created when missing)."""

    def __init__(self, pool_path):
        self.path = pool_path + '.readers'
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)

    def close(self):
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _locked(self, mode):
        return _Locked(self._fd, mode)

    def _read(self):
        data = os.pread(self._fd, SIZE, 0).ljust(SIZE, b'\0')
        return [_ENTRY.unpack_from(data, _HEAD + i * _SLOT)
                for i in range(SLOTS)]

    def claim(self):
        """A free slot's index, now ours; None when all are taken."""
        with self._locked(fcntl.LOCK_EX):
            for index, (pid, _, _, _) in enumerate(self._read()):
                if pid == 0 or not _alive(pid):
                    self._write(index, os.getpid(), b'\0' * 8, 0, 0)
                    return index
        return None

    def publish(self, index, tid, table, height):
        """Record that this slot's oldest snapshot is the root ``tid``."""
        with self._locked(fcntl.LOCK_EX):
            self._write(index, os.getpid(), tid, table, height)

    def release(self, index):
        with self._locked(fcntl.LOCK_EX):
            os.pwrite(self._fd, _EMPTY, _HEAD + index * _SLOT)

    def _write(self, index, pid, tid, table, height):
        os.pwrite(self._fd, _ENTRY.pack(pid, tid, table, height),
                  _HEAD + index * _SLOT)

    def snapshots(self):
        """``(tid, table, height)`` of every live reader's oldest
        snapshot (slots without a snapshot yet are skipped)."""
        with self._locked(fcntl.LOCK_SH):
            slots = self._read()
        out = []
        for pid, tid, table, height in slots:
            if pid == 0 or tid == b'\0' * 8 or not _alive(pid):
                continue
            out.append((tid, table, height))
        return out


class _Locked:
    __slots__ = ('_fd', '_mode')

    def __init__(self, fd, mode):
        self._fd = fd
        self._mode = mode

    def __enter__(self):
        fcntl.flock(self._fd, self._mode)

    def __exit__(self, *exc_info):
        fcntl.flock(self._fd, fcntl.LOCK_UN)
