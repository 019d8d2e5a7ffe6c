"""Pack and garbage collection of the PostgreSQL storage.

Pack runs on a connection of its own, in two phases, so commits go on
while it works out what to remove:

1. In a REPEATABLE READ snapshot, without the commit lock: the pack time
   is capped at the newest commit (packing to the future is packing to
   now); with ``gc``, every revision the pack keeps is read (streamed),
   its references taken with ``referencesf``, and the objects reachable
   from the root or from a revision written at or after the pack time are
   marked; the others are candidates.
2. Under the commit lock: objects written by the commits that happened
   meanwhile (all after the pack time) are roots too, so candidates they
   reach are spared; then the garbage goes, every revision older than the
   one current at the pack time goes (that one too when it is a deletion
   record), and the transactions before the pack time are marked packed,
   or removed when they keep no record (the newest transaction stays).

History-free, only the collection happens (from the current revisions),
deletion records older than the pack time go, and so do the rows of
transactions before it that no current record names any more.
A second pack waits for the first (a session advisory lock).
"""
import psycopg

from objstore import errors
from objstore.storages.base import time_tid
from objstore.storages.postgresql import queries as q

_CHUNK = 10000

_KEPT_PRESERVING = (
    'SELECT o.zoid, o.tid, o.state FROM object_state o LEFT JOIN ('
    ' SELECT zoid, max(tid) AS keep FROM object_state WHERE tid < %(stop)s'
    ' GROUP BY zoid) k ON k.zoid = o.zoid'
    ' WHERE o.tid >= coalesce(k.keep, -1)')

_KEPT_FREE = 'SELECT zoid, tid, state FROM object_state'

_OLD_REVISIONS = (
    'DELETE FROM object_state o USING ('
    ' SELECT zoid, max(tid) AS keep FROM object_state WHERE tid < %(stop)s'
    ' GROUP BY zoid) k WHERE o.zoid = k.zoid'
    ' AND (o.tid < k.keep OR (o.tid = k.keep AND o.state IS NULL))')

_EMPTIED_TRANSACTIONS = (
    'DELETE FROM transactions t WHERE tid < %(stop)s'
    ' AND tid <> (SELECT max(tid) FROM transactions)'
    ' AND NOT EXISTS (SELECT 1 FROM object_state o WHERE o.tid = t.tid)')

_MARK_PACKED = (
    'UPDATE transactions SET packed = true WHERE tid < %(stop)s'
    ' AND NOT packed')

_HISTORY_START = (
    'UPDATE objstore_meta SET history_start = greatest(history_start,'
    ' coalesce((SELECT max(tid) FROM transactions WHERE tid < %(stop)s), 0))')

_OLD_DELETIONS_FREE = (
    'DELETE FROM object_state WHERE state IS NULL AND tid < %(stop)s')



def pack(shared, t, referencesf, gc):
    """Pack the storage of ``shared`` to UTC epoch seconds ``t``."""
    stop = q.to_int(time_tid(t))
    try:
        conn = psycopg.connect(shared.dsn, autocommit=True,
                               **shared.connect_options)
    except psycopg.Error as exc:
        raise errors.DisconnectedError('cannot connect to %s to pack: %s'
                                       % (shared.name, exc)) from exc
    try:
        with conn:
            conn.execute('SELECT pg_advisory_lock(%s::int4, %s::int4)',
                         shared.schema.pack_lock_key)
            _pack(conn, shared, stop, referencesf, gc)
    except psycopg.Error as exc:
        raise errors.StorageError('%s: pack failed: %s'
                                  % (shared.name, exc)) from exc


def _pack(conn, shared, stop, referencesf, gc):
    keep_history = shared.queries.keep_history
    with conn.transaction():
        conn.execute('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ')
        last = conn.execute(q.LAST_TID).fetchone()[0]
        stop = min(stop, last + 1)
        if gc:
            graph = Graph(referencesf)
            with conn.cursor(name='objstore_pack') as cursor:
                cursor.itersize = 1000
                cursor.execute(_KEPT_PRESERVING if keep_history
                               else _KEPT_FREE, {'stop': stop})
                for zoid, tid, state in cursor:
                    graph.add(zoid, state, root=tid >= stop)
            garbage = graph.unreachable()
    with conn.transaction():
        conn.execute(q.LOCK, shared.schema.lock_key)
        params = {'stop': stop}
        if gc and garbage:
            with conn.cursor(name='objstore_pack_new') as cursor:
                cursor.itersize = 1000
                cursor.execute('SELECT zoid, state FROM object_state'
                               ' WHERE tid > %s', (last,))
                garbage -= graph.reached_from(cursor)
            garbage = sorted(garbage)
            for n in range(0, len(garbage), _CHUNK):
                conn.execute('DELETE FROM object_state WHERE zoid = ANY(%s)',
                             (garbage[n:n + _CHUNK],))
        if keep_history:
            conn.execute(_OLD_REVISIONS, params)
            conn.execute(_EMPTIED_TRANSACTIONS, params)
            conn.execute(_MARK_PACKED, params)
            conn.execute(_HISTORY_START, params)
        else:
            conn.execute(_OLD_DELETIONS_FREE, params)
            conn.execute(_EMPTIED_TRANSACTIONS, params)


class Graph:
    """The references between the revisions a pack keeps (oids as ints)."""

    def __init__(self, referencesf):
        self._referencesf = referencesf
        self._refs = {}         # zoid -> referenced zoids
        self._roots = {0}

    def add(self, zoid, state, root=False):
        refs = self._refs.setdefault(zoid, [])
        if state is not None:
            refs.extend(q.to_int(oid) for oid in self._referencesf(state))
        if root:
            self._roots.add(zoid)

    def _walk(self, todo, reached):
        refs = self._refs
        while todo:
            zoid = todo.pop()
            if zoid in reached or zoid not in refs:
                continue    # dangling, or another database's oid
            reached.add(zoid)
            todo.extend(refs[zoid])
        return reached

    def unreachable(self):
        """The oids reached neither from the root nor from a root."""
        self._reached = self._walk(list(self._roots), set())
        return {zoid for zoid in self._refs if zoid not in self._reached}

    def reached_from(self, rows):
        """The oids ``(zoid, state)`` rows written after phase 1 reach,
        themselves included, that phase 1 found unreachable."""
        todo = []
        for zoid, state in rows:
            todo.append(zoid)
            if state is not None:
                todo.extend(q.to_int(oid) for oid in self._referencesf(state))
        spared = set()
        refs = self._refs
        while todo:
            zoid = todo.pop()
            if zoid in spared or zoid in self._reached:
                continue
            spared.add(zoid)
            todo.extend(refs.get(zoid, ()))
        return spared
