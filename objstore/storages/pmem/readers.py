"""Reader slots: how read-only processes tell the writer what they read.

The writer process frees the space a commit superseded once no snapshot
can read it. Its own snapshots it knows; those of read-only processes it
learns from ``<pool>.readers``, a small side file (the pool file itself
is never written by a reader). A read-only storage holds one slot per
snapshot its instances read: the pid, and the tid, table offset and
height of that root. The writer keeps everything superseded after the
oldest of them; a writer that opens (after a crash or a clean close)
carves what each of them reaches out of its free space.

Ordering: a reader publishes a new snapshot in a slot, then reads the
root again; if a commit came in between, it drops that slot and retries
with the newer root. The writer reads the slots only after its root
switch (and, when opening, before it reuses anything), and both sides
hold an ``flock`` on the side file while they touch it, so either the
writer sees the published snapshot or the reader sees the commit.

The file grows by a page when every slot is taken. Slots of processes
that died are recognised by their pid (``kill(pid, 0)``) and reused; a
pid reused by an unrelated process only delays freeing (space stays
held), never corrupts.
"""
import fcntl
import os
import struct

PAGE = 4096
_SLOT = 32
_ENTRY = struct.Struct('<Q8sQI4x')
_EMPTY = bytes(_SLOT)
_NO_TID = b'\0' * 8


def _alive(pid, cache):
    if pid not in cache:
        if pid == os.getpid():
            cache[pid] = True
        else:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                cache[pid] = False
            except PermissionError:
                cache[pid] = True
            else:
                cache[pid] = True
    return cache[pid]


class ReaderSlots:
    """The side file ``<path>.readers``, opened (created when missing)."""

    def __init__(self, pool_path):
        self.path = pool_path + '.readers'
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)

    def close(self):
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _read(self):
        size = os.fstat(self._fd).st_size
        data = os.pread(self._fd, size, 0)
        return [_ENTRY.unpack_from(data, i)
                for i in range(0, len(data) - _SLOT + 1, _SLOT)]

    def claim(self, tid, table, height):
        """Publish a snapshot in a free slot; return the slot's index."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            slots = self._read()
            alive = {}
            for index, (pid, _, _, _) in enumerate(slots):
                if pid == 0 or not _alive(pid, alive):
                    break
            else:
                index = len(slots)
                os.ftruncate(self._fd, (index * _SLOT // PAGE + 1) * PAGE)
            os.pwrite(self._fd, _ENTRY.pack(os.getpid(), tid, table, height),
                      index * _SLOT)
            return index
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def release(self, index):
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            os.pwrite(self._fd, _EMPTY, index * _SLOT)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def snapshots(self):
        """``(tid, table, height)`` of every snapshot live readers hold."""
        fcntl.flock(self._fd, fcntl.LOCK_SH)
        try:
            slots = self._read()
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        alive = {}
        return [(tid, table, height) for pid, tid, table, height in slots
                if pid and tid != _NO_TID and _alive(pid, alive)]
