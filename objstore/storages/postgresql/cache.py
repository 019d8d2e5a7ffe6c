"""The records cache a PostgreSQLStorage shares with all its instances.

A process usually opens one storage and gives each of its database
connections an instance (``new_instance``). When a connection's pickle
cache has lost an object, the instance asks this cache before the server:
a hit costs a dictionary lookup instead of a round trip. RelStorage keeps
the same kind of cache ("local cache") for the same reason.

What an entry means (the invariant every method keeps)::

    entries[oid] = (tid, data)  =>  the revision of oid committed in
                                    tid is its current revision in every
                                    snapshot from tid through self.tid

So an instance whose snapshot is ``s`` may use the entry when
``tid <= s <= self.tid``. ``self.tid`` ("valid through") moves forward
only through :meth:`advance`, with the complete list of revisions
committed between the previous value and the new one (what an instance's
poll reads anyway); the entries of every object changed in between are
dropped first. A poll that leaves a gap (it starts after ``self.tid``)
empties the cache instead.

An instance that loaded a revision at an older snapshot ``s < self.tid``
may add it only if nothing changed the object in ``(s, self.tid]``: the
cache remembers, for the polls since ``changed_since``, the newest change
of every object (at most ``CHANGED_LIMIT`` objects, then it forgets and
refuses such late additions until the next polls).

Only instances read and fill the cache: the storage object itself reads
the newest data, and no snapshot tells it which that is.

Against a per-connection cache: one copy per process, and a connection
that is new or was emptied starts warm. Against RelStorage's: no
persistent cache files, no memcache, and one revision per object (an old
snapshot misses for objects changed since; RelStorage keeps several).

Packing with garbage collection removes unreachable objects without a new
transaction, so no poll reports them: the storage that packs empties its
cache, other processes may still return such an object from theirs (only
a connection holding its oid could ask; nothing reachable refers to it).
"""
import collections
import threading

#: Bytes counted for an entry besides its record (keys, tuple, links).
ENTRY_OVERHEAD = 100

#: Objects whose newest change the cache remembers for late additions.
CHANGED_LIMIT = 20000


class RecordCache:
    """Current records by oid, validated by polls; thread-safe.

    Oids and tids are the integers the server stores. ``limit`` bytes
    (records plus ``ENTRY_OVERHEAD`` each); the least recently used
    entries go first. ``limit`` 0 keeps nothing.
    """

    def __init__(self, limit):
        self.limit = limit
        self.size = 0
        self.tid = 0                # entries are valid through this tid
        self.hits = self.misses = 0
        self._entries = collections.OrderedDict()   # oid -> (tid, data)
        self._changed = {}          # oid -> newest change in (since, tid]
        self._changed_since = 0
        self._lock = threading.Lock()

    def __len__(self):
        return len(self._entries)

    def get(self, oid, snapshot):
        """``(tid, data)``: the current record of ``oid`` in ``snapshot``,
        or None when the cache cannot say."""
        with self._lock:
            entry = self._entries.get(oid)
            if entry is None or not entry[0] <= snapshot <= self.tid:
                self.misses += 1
                return None
            self._entries.move_to_end(oid)
            self.hits += 1
            return entry

    def put(self, oid, tid, data, snapshot):
        """Remember that ``(tid, data)`` is the current record of ``oid``
        in ``snapshot`` (as the server answered); ignored when the cache
        cannot tell that it is still current through ``self.tid``."""
        cost = len(data) + ENTRY_OVERHEAD
        if cost > self.limit:
            return
        with self._lock:
            if snapshot > self.tid:
                return      # the polls so far do not reach that snapshot
            if snapshot < self.tid and (
                    snapshot < self._changed_since
                    or self._changed.get(oid, 0) > snapshot):
                return      # changed since, or unknown whether
            old = self._entries.pop(oid, None)
            if old is not None:
                self.size -= len(old[1]) + ENTRY_OVERHEAD
            self._entries[oid] = (tid, data)
            self.size += cost
            while self.size > self.limit:
                _, (_, evicted) = self._entries.popitem(last=False)
                self.size -= len(evicted) + ENTRY_OVERHEAD

    def advance(self, prev, last, rows):
        """A poll read ``rows``, ``(oid, tid)`` of every revision committed
        after ``prev`` through ``last`` (``prev`` None: none were read)."""
        with self._lock:
            if last <= self.tid:
                return
            if prev is None or prev > self.tid:
                # What changed between self.tid and prev is unknown.
                self._forget(last)
                return
            entries, changed, since = self._entries, self._changed, self.tid
            for oid, tid in rows:
                if since < tid <= last:
                    old = entries.pop(oid, None)
                    if old is not None:
                        self.size -= len(old[1]) + ENTRY_OVERHEAD
                    if changed.get(oid, 0) < tid:
                        changed[oid] = tid
            if len(changed) > CHANGED_LIMIT:
                self._changed = {}
                self._changed_since = last
            self.tid = last

    def clear(self):
        """Drop every entry (the validity and change knowledge stay)."""
        with self._lock:
            self._entries.clear()
            self.size = 0

    def _forget(self, last):
        self._entries.clear()
        self.size = 0
        self._changed = {}
        self._changed_since = last
        self.tid = last
