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
import operator


class FreeSpace:
    """Disjoint free extents with best-fit allocation."""

    def __init__(self, extents=()):
        """``extents``: free (offset, length) pairs sorted by offset, none
        overlapping; touching ones are merged. Raises ValueError if they
        are out of order or overlap."""
        extents = list(extents)
        starts, lengths = zip(*extents) if extents else ((), ())
        self._build(starts, lengths)

    @classmethod
    def from_columns(cls, starts, lengths):
        """The same from the offsets and the lengths in two sequences (as
        a saved free-space list is read back)."""
        free = cls.__new__(cls)
        free._build(starts, lengths)
        return free

    def _build(self, starts, lengths):
        # One pass per structure, none per extent (an open after a clean
        # close must not slow down with the number of extents); the
        # by-size index is sorted at the first allocation that needs it.
        ends = list(map(operator.add, starts, lengths))
        if not all(map(operator.lt, ends, starts[1:])):
            starts, lengths = _merged(zip(starts, lengths))
        self._starts = list(starts)             # sorted extent offsets
        self._length = dict(zip(starts, lengths))   # offset -> length
        self._sorted_sizes = None   # sorted (length, offset), or None
        self._total = sum(lengths)

    @property
    def _by_size(self):
        if self._sorted_sizes is None:
            self._sorted_sizes = sorted(
                zip(self._length.values(), self._length.keys()))
        return self._sorted_sizes

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
        if self._sorted_sizes is not None:
            bisect.insort(self._sorted_sizes, (length, offset))

    def _remove(self, offset, length):
        self._drop_start(offset)
        sizes = self._sorted_sizes
        if sizes is not None:
            del sizes[bisect.bisect_left(sizes, (length, offset))]

    def _drop_start(self, offset):
        del self._starts[bisect.bisect_left(self._starts, offset)]
        self._total -= self._length.pop(offset)


def _merged(extents):
    """``(starts, lengths)`` of sorted ``extents`` with touching ones
    merged; ValueError if they are out of order or overlap."""
    starts, lengths = [], []
    end = None
    for offset, length in extents:
        if end is not None and offset < end:
            raise ValueError('free extents out of order or overlapping at'
                             ' offset %d' % offset)
        if offset == end:
            lengths[-1] += length
        else:
            starts.append(offset)
            lengths.append(length)
        end = offset + length
    return starts, lengths


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
