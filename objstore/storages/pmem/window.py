"""The snapshots a PMemStorage can still show, and who reads them.

Every instance pins the snapshot it reads (the storage pins its newest
one too). Space a commit supersedes is freed when the oldest pin is at or
after that commit, so every snapshot from the oldest pin to the newest
stays whole: that span is the history window. This module keeps the
snapshots of the window in tid order, the pins, and what each commit in
it changed (for ``poll_invalidations``), and drops them as the oldest pin
moves on. It is bookkeeping only; the caller holds the storage's lock.
"""
import bisect
import collections


class Window:
    """Snapshots from the oldest pin to the newest, pins, changed oids.

    ``exact`` is true in the writer process, which sees every commit; a
    read-only process sees only the roots it polled, so only its newest
    snapshot answers questions about a moment (:meth:`snapshot_before`).
    """

    def __init__(self, snapshot, exact=True):
        self.exact = exact
        self.current = snapshot
        self._tids = [snapshot.tid]
        self._snapshots = {snapshot.tid: snapshot}
        self._pins = collections.Counter({snapshot.tid: 1})
        self._log_tids = []                 # the tids of _log, in order
        self._log = []                      # (oids, committer) per tid
        self.metas = {}                     # tid -> TransactionMeta

    def advance(self, snapshot, oids, committer=None, meta=None):
        """Make ``snapshot`` (a commit, or a newer root polled) the newest;
        ``oids`` changed since the previous one, ``committer`` (an
        instance, or None) wrote them."""
        previous = self.current
        self.current = snapshot
        if snapshot.tid not in self._snapshots:
            self._tids.append(snapshot.tid)
        self._snapshots[snapshot.tid] = snapshot
        self._log_tids.append(snapshot.tid)
        self._log.append((oids, committer))
        if meta is not None:
            self.metas[snapshot.tid] = meta
        self.pin(snapshot)
        self.unpin(previous)

    def pin(self, snapshot):
        self._pins[snapshot.tid] += 1

    def unpin(self, snapshot):
        pins = self._pins
        pins[snapshot.tid] -= 1
        if pins[snapshot.tid] <= 0:
            del pins[snapshot.tid]
            if snapshot is not self.current:
                # Only loads of a pinned snapshot need speed; loadBefore
                # and history refill what they use.
                snapshot.leaves = {}

    def pinned(self, tid):
        return tid in self._pins

    def oldest(self):
        """The tid of the oldest pinned snapshot."""
        return min(self._pins)

    def snapshot(self, tid):
        return self._snapshots.get(tid)

    def prune(self, oldest):
        """Forget snapshots before ``oldest`` and commits at or before it."""
        cut = bisect.bisect_left(self._tids, oldest)
        if cut:
            for tid in self._tids[:cut]:
                del self._snapshots[tid]
                self.metas.pop(tid, None)
            del self._tids[:cut]
        cut = bisect.bisect_right(self._log_tids, oldest)
        if cut:
            del self._log_tids[:cut]
            del self._log[:cut]

    def changes(self, after, until, reader):
        """The oids changed by commits ``after < tid <= until`` that
        ``reader`` (an instance) did not make itself."""
        changed = set()
        first = bisect.bisect_right(self._log_tids, after)
        last = bisect.bisect_right(self._log_tids, until)
        for oids, committer in self._log[first:last]:
            if committer is not reader:
                changed.update(oids)
        return changed

    def start(self):
        """The oldest moment (tid) every snapshot from which on is shown."""
        if not self.exact:
            return self.current.tid
        return max(self.oldest(), self._tids[0])

    def snapshot_before(self, before):
        """The snapshot in force just before tid ``before``; None if that
        moment is outside the window."""
        i = bisect.bisect_left(self._tids, before) - 1
        if i < 0 or self._tids[i] < self.start():
            return None
        return self._snapshots[self._tids[i]]

    def newest_first(self):
        """The window's snapshots, newest first."""
        return [self._snapshots[tid] for tid in reversed(self._tids)]

    def after(self, snapshot):
        """The window's snapshots after ``snapshot``, oldest first."""
        i = bisect.bisect_right(self._tids, snapshot.tid)
        return [self._snapshots[tid] for tid in self._tids[i:]]
