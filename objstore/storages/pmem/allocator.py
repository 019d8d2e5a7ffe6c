"""The pool's free space, kept in memory while the pool is open.

Free space is a set of disjoint extents (offset, length), both multiples
of the heap's alignment. Allocation is best fit (the smallest extent that
is large enough, split); freeing coalesces with free neighbours. The
extents are written to the pool only by a clean close (and read back by
the next open); after an unclean close they are rebuilt from what the
last root reaches (see :mod:`.recovery`), so commits never write them.

Space a commit supersedes (old records, replaced table nodes) is not free
at once: :class:`Pending` holds it, tagged with the commit's tid, until no
open snapshot older than that commit remains.
"""
import bisect
import collections


class FreeSpace:
    """Disjoint free extents with best-fit allocation."""

    def __init__(self, extents=()):
        self._starts = []           # sorted extent offsets
        self._length = {}           # offset -> length
        self._by_size = []          # sorted (length, offset)
        self._total = 0
        for offset, length in extents:
            self.free(offset, length)

    def __len__(self):
        return len(self._starts)

    def total(self):
        """Free bytes."""
        return self._total

    def extents(self):
        """The free extents, sorted by offset."""
        return [(start, self._length[start]) for start in self._starts]

    def largest(self):
        return self._by_size[-1][0] if self._by_size else 0

    def alloc(self, size):
        """The offset of ``size`` free bytes, now allocated; None if no
        extent is large enough."""
        i = bisect.bisect_left(self._by_size, (size, -1))
        if i == len(self._by_size):
            return None
        length, start = self._by_size.pop(i)
        self._drop_start(start)
        if length > size:
            self._add(start + size, length - size)
        return start

    def free(self, offset, length):
        """Give back ``length`` bytes at ``offset``, merging neighbours."""
        i = bisect.bisect_left(self._starts, offset)
        if i:
            before = self._starts[i - 1]
            before_length = self._length[before]
            if before + before_length == offset:
                self._remove(before, before_length)
                offset, length = before, before_length + length
        after = offset + length
        after_length = self._length.get(after)
        if after_length is not None:
            self._remove(after, after_length)
            length += after_length
        self._add(offset, length)

    def carve(self, offset, length):
        """Mark ``length`` bytes at ``offset`` used; they must lie inside
        one free extent. Returns False (changing nothing) if they do not."""
        i = bisect.bisect_right(self._starts, offset) - 1
        if i < 0:
            return False
        start = self._starts[i]
        extent_length = self._length[start]
        if offset + length > start + extent_length:
            return False
        self._remove(start, extent_length)
        if offset > start:
            self._add(start, offset - start)
        end = offset + length
        if end < start + extent_length:
            self._add(end, start + extent_length - end)
        return True

    def _add(self, offset, length):
        self._total += length
        bisect.insort(self._starts, offset)
        self._length[offset] = length
        bisect.insort(self._by_size, (length, offset))

    def _remove(self, offset, length):
        self._drop_start(offset)
        i = bisect.bisect_left(self._by_size, (length, offset))
        del self._by_size[i]

    def _drop_start(self, offset):
        del self._starts[bisect.bisect_left(self._starts, offset)]
        self._total -= self._length.pop(offset)


class Pending:
    """Superseded space waiting for the snapshots that can still read it.

    ``add(tid, extents)`` records what the commit ``tid`` superseded; a
    snapshot at a tid below it may still read those bytes. ``due(oldest)``
    returns (and forgets) the extents of every commit at or before
    ``oldest``, the oldest snapshot still open (None: none open).
    """

    def __init__(self):
        self._queue = collections.deque()

    def __len__(self):
        return len(self._queue)

    def add(self, tid, extents):
        if extents:
            self._queue.append((tid, extents))

    def due(self, oldest):
        out = []
        queue = self._queue
        while queue and (oldest is None or queue[0][0] <= oldest):
            out.extend(queue.popleft()[1])
        return out

    def extents(self):
        return [extent for _, extents in self._queue for extent in extents]
