"""Garbage collection and iteration over a PMemStorage's current records.

Both walk the object table of one snapshot. The collector marks what is
reachable from the root (through ``referencesf``, ZODB's record format
by default) and deletes the rest in one ordinary commit, so instances
hear of the deletions at their next poll and the space is freed once no
snapshot reads it.
"""
import weakref

from objstore import errors
from objstore.storages.base import (
    DataRecord, TransactionMeta, TransactionRecord, p64, time_tid, u64, z64)
from objstore.storages.pmem import table
from objstore.storages.pmem.commit import REMOVE


def _records(snapshot):
    pool = snapshot.pool
    return table.iter_from(pool.path, pool.map, snapshot.table,
                           snapshot.height, snapshot.size, 0)


def collect_garbage(storage, referencesf, t=None, gc=True):
    """Remove, in one commit, what neither the root nor a record written
    at or after ``t`` (UTC seconds; None: only the root) reaches, and the
    deletion records; with ``gc`` false only the deletion records before
    ``t``. Returns ``{'reachable': n, 'freed': n}``."""
    storage._check_writable()
    meta = TransactionMeta(None, description=b'garbage collection')
    storage.tpc_begin(meta)
    try:
        current = storage._window.current
        stop = None if t is None else time_tid(t)
        live, garbage = {}, []
        todo = [z64]
        for n, offset in _records(current):
            oid = p64(n)
            data, tid = current.record(offset, oid)
            if data is None:
                if stop is None or tid < stop:
                    garbage.append(n)
                continue
            live[n] = data
            if stop is not None and tid >= stop:
                todo.append(oid)
        reached = set()
        while gc and todo:
            oid = todo.pop()
            n = u64(oid)
            # Not in the table: a dangling or cross-database reference.
            if n in reached or n not in live:
                continue
            reached.add(n)
            todo.extend(referencesf(live[n]))
        if gc:
            garbage.extend(n for n in live if n not in reached)
        if garbage:
            for n in garbage:
                storage._tdata[p64(n)] = REMOVE
            storage.tpc_vote(meta)
            storage.tpc_finish(meta)
        else:
            storage.tpc_abort(meta)
    except BaseException:
        storage.tpc_abort(meta)
        raise
    return {'reachable': len(reached) if gc else len(live),
            'freed': len(garbage)}


class CurrentIterator:
    """The current records as transactions: one per tid that wrote a
    current record, oldest first, with ``start <= tid <= stop``.

    Without history, each transaction holds only the records it wrote
    that are still current, and user and description are known only for
    commits inside the window. The snapshot read stays pinned until the
    iterator is exhausted, closed or collected.
    """

    def __init__(self, storage, start=None, stop=None):
        self._storage = storage
        with storage._lock:
            storage._check_open()
            snapshot = storage._window.current
            storage._window.pin(snapshot)
            metas = dict(storage._window.metas)
        self._snapshot = snapshot
        self._unpin = weakref.finalize(self, storage._unpin, snapshot)
        by_tid = {}
        for n, offset in _records(snapshot):
            oid = p64(n)
            length, tid = snapshot.header(offset, oid)
            if not length and snapshot.record(offset, oid)[0] is None:
                continue
            if (start is None or tid >= start) and (
                    stop is None or tid <= stop):
                by_tid.setdefault(tid, []).append(oid)
        self._transactions = iter(sorted(by_tid.items()))
        self._metas = metas

    def __iter__(self):
        return self

    def __next__(self):
        try:
            tid, oids = next(self._transactions)
        except StopIteration:
            self.close()
            raise
        meta = self._metas.get(tid) or TransactionMeta(tid)
        load = self._snapshot.load
        return TransactionRecord(meta, [
            DataRecord(oid, tid, load(oid)[0]) for oid in oids])

    def close(self):
        self._transactions = iter(())
        self._unpin()


def record_iternext(storage, next=None):
    """``(oid, tid, data, next_oid)`` of the first current object at or
    after ``next``; POSKeyError when there is none."""
    with storage._lock:
        storage._check_open()
        snapshot = storage._window.current
        pool = snapshot.pool
        found = table.iter_from(pool.path, pool.map, snapshot.table,
                                snapshot.height, snapshot.size,
                                u64(next or z64))
        first = None
        for n, offset in found:
            oid = p64(n)
            data, tid = snapshot.record(offset, oid)
            if data is None:
                continue
            if first is not None:
                return first + (oid,)
            first = (oid, tid, data)
        if first is None:
            raise errors.POSKeyError(next or z64)
        return first + (None,)
