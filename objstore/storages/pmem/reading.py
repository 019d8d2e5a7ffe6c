"""Reading the past of a PMemStorage: loadBefore, loadSerial, history.

:class:`Reading` is the part of :class:`.storage.PMemStorage` that answers
questions about moments and revisions from the snapshots of its history
window (:mod:`.window`); a moment before the window raises
``HistoryUnavailable``.
"""
from objstore import errors
from objstore.storages.base import TransactionMeta, maxtid, u64, z64


class Reading:
    """IStorage's reads of earlier revisions, from the history window."""

    def loadBefore(self, oid, tid):  # ZODB's protocol name
        """``(data, start, end)`` of the revision of ``oid`` just before
        ``tid``; see ``IStorage.loadBefore``. HistoryUnavailable when that
        moment is before the window."""
        with self._lock:
            self._check_open()
            if tid >= maxtid:
                snapshot = self._window.current
            elif tid == z64:
                # Before the first transaction: nothing existed.
                if not self._revisions(oid):
                    raise errors.POSKeyError(oid)
                return None
            else:
                snapshot = self._window.snapshot_before(tid)
                if snapshot is None:
                    raise self._unavailable(tid)
            n = u64(oid)
            offset = snapshot.offset(n)
            if not offset:
                if any(s.offset(n) for s in self._window.after(snapshot)):
                    return None
                raise errors.POSKeyError(oid)
            data, start = snapshot.load(oid)
            for later in self._window.after(snapshot):
                if later.offset(n) != offset:
                    return data, start, later.tid
            return data, start, None

    def loadSerial(self, oid, serial):  # ZODB's protocol name
        """The data ``oid`` had in transaction ``serial``, if the window
        still holds that revision; POSKeyError otherwise."""
        with self._lock:
            self._check_open()
            for offset, snapshot in self._revisions(oid):
                data, tid = snapshot.record(offset, oid)
                if tid == serial and data is not None:
                    return data
                if tid <= serial:
                    break
        raise errors.POSKeyError(oid)

    def history(self, oid, size=1):
        """The revisions of ``oid`` the window holds, newest first (user
        and description only for commits inside the window)."""
        with self._lock:
            self._check_open()
            out = []
            for offset, snapshot in self._revisions(oid)[:size]:
                length, tid = snapshot.header(offset, oid)
                meta = self._window.metas.get(tid) or TransactionMeta(tid)
                out.append(meta.info(serial=tid, size=length))
        if not out:
            raise errors.POSKeyError(oid)
        return out

    def _revisions(self, oid):
        """``(offset, snapshot)`` of each distinct record of ``oid`` in the
        window, newest first (lock held)."""
        n = u64(oid)
        out, seen = [], set()
        for snapshot in self._window.newest_first():
            offset = snapshot.offset(n)
            if offset and offset not in seen:
                seen.add(offset)
                out.append((offset, snapshot))
        return out
