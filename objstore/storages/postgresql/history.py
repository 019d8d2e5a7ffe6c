"""Undo, the undo log, iteration and pack of the PostgreSQL storage.

History-free storages have no undo (``supportsUndo()`` is false and they
do not declare IStorageUndoable); their iteration shows current records
only; pack collects garbage in both modes (pack.py).
"""
from objstore import conflict, errors
from objstore.storages.base import (
    DataRecord, TransactionMeta, TransactionRecord, select_undo_log,
    specification_filter, z64)
from objstore.storages.postgresql import pack as packing
from objstore.storages.postgresql import queries as q
from objstore.storages.postgresql.commit import UNDO

#: Transactions read per query by the undo log and by iterators.
PAGE = 100

_UNDO_LOG = (
    'SELECT tid, username, description, extension FROM transactions'
    ' WHERE tid > (SELECT history_start FROM objstore_meta) AND NOT packed'
    ' AND tid < %s ORDER BY tid DESC LIMIT %s')

# Each record of the undone transaction with the revision before it and
# the current one.
_UNDO_RECORDS = (
    'SELECT o.zoid, o.state, b.tid, b.state, c.tid, c.state, c.data_txn'
    ' FROM object_state o'
    ' LEFT JOIN LATERAL (SELECT tid, state FROM object_state'
    '   WHERE zoid = o.zoid AND tid < o.tid ORDER BY tid DESC LIMIT 1) b'
    '   ON true'
    ' JOIN LATERAL (SELECT tid, state, data_txn FROM object_state'
    '   WHERE zoid = o.zoid ORDER BY tid DESC LIMIT 1) c ON true'
    ' WHERE o.tid = %s ORDER BY o.seq')

_UNDOABLE = (
    'SELECT count(*) FROM transactions WHERE tid = %s AND NOT packed'
    ' AND tid > (SELECT history_start FROM objstore_meta)')

_TRANSACTIONS = (
    'SELECT tid, packed, username, description, extension FROM transactions'
    ' WHERE tid >= %s AND tid <= %s ORDER BY tid LIMIT %s')



def _meta(tid, user, description, extension, packed=False):
    return TransactionMeta(q.to_bytes(tid), user or b'', description or b'',
                           extension or b'', 'p' if packed else ' ')


class Histories:
    """Undo, iteration and pack methods of PostgreSQLStorage (a mixin)."""

    # -- IStorageUndoable ---------------------------------------------------

    def supportsUndo(self):
        return self._q.keep_history

    def undoLog(self, first=0, last=-20, filter=None):
        """Undoable transactions newest first, down to the newest one a
        pack thinned; ``id`` is the tid."""
        self._check_open()
        if not self._q.keep_history:
            return []
        return select_undo_log(self._undo_descriptions(), first, last,
                               filter)

    def _undo_descriptions(self):
        below = q.to_int(b'\x7f' + b'\xff' * 7)
        while True:
            rows = self._fetch('reading the undo log', _UNDO_LOG,
                               (below, PAGE), many=True)
            for row in rows:
                meta = _meta(*row)
                yield meta.info(id=meta.tid)
            if len(rows) < PAGE:
                return
            below = rows[-1][0]

    def undoInfo(self, first=0, last=-20, specification=None):
        """``undoLog`` keeping descriptions that contain ``specification``."""
        return self.undoLog(first, last, specification_filter(specification))

    def undo(self, transaction_id, transaction):
        """Write each object of transaction ``transaction_id`` back to its
        state before it, in ``transaction``; see ``IStorageUndoable``.
        Returns ``(None, oids)``: the tid is chosen at ``tpc_vote``."""
        self._check_write(transaction)
        if not self._q.keep_history:
            raise errors.UndoError('%s keeps no history, so it cannot undo'
                                   % self.__name__)
        if not isinstance(transaction_id, bytes) or len(transaction_id) != 8:
            raise errors.UndoError(
                'invalid transaction id %r' % (transaction_id,))
        tid = q.to_int(transaction_id)
        with self._store_link.using('reading the transaction to undo') as c:
            undoable = c.execute(_UNDOABLE, (tid,)).fetchone()[0]
            rows = c.execute(_UNDO_RECORDS, (tid,)).fetchall() if undoable \
                else None
            if rows is None:
                raise errors.UndoError(
                    'transaction %s is unknown or packed away'
                    % errors.oid_repr(transaction_id))
            changes, failures = {}, []
            for row in rows:
                try:
                    oid, change = self._undo_record(c, transaction_id, row)
                    changes[oid] = change
                except errors.UndoError as exc:
                    failures.append(exc)
        if len(failures) == 1:
            raise failures[0]
        if failures:
            raise errors.MultipleUndoErrors(failures)
        self._records.update(changes)
        return None, list(changes)

    def _undo_record(self, conn, tid, row):
        """``(oid, record)`` undoing one record of transaction ``tid``."""
        zoid, undone, before_tid, before, current_tid, current, copies = row
        oid = q.to_bytes(zoid)
        before_tid = None if before_tid is None else q.to_bytes(before_tid)
        current_tid = q.to_bytes(current_tid)
        copies = None if copies is None else q.to_bytes(copies)
        expected = current_tid
        pending = self._records.get(oid)
        if pending is not None:
            # An earlier undo in this same transaction changed it already.
            expected, current = pending[1], pending[2]
            current_tid, copies = None, pending[3]
        if current_tid != tid and undone is None and copies != tid:
            # A deletion record has no data to compare the current state
            # with: only a current record copying it (an undo) may go.
            raise errors.UndoError(
                'the transaction deleted the object, which changed since', oid)
        if current_tid == tid or current == undone:
            return oid, (UNDO, expected, before, before_tid)
        if before_tid is None:
            raise errors.UndoError(
                'cannot undo the creation of an object changed since', oid)
        if None in (before, current, undone):
            raise errors.UndoError(
                'the object was deleted or re-created since', oid)
        load = self._resolution_loader(conn)
        try:
            data = conflict.resolve(oid, current_tid or expected, tid, before,
                                    load, committed_data=current)
        except errors.ConflictError:
            raise errors.UndoError(
                'the object was changed by a later transaction', oid)
        return oid, (UNDO, expected, data, None)

    # -- IStorageIteration ----------------------------------------------------

    def iterator(self, start=None, stop=None):
        """Transactions with ``start <= tid <= stop``, oldest first, as
        committed when this method was called (read a page at a time).

        History-free, each transaction holds only its records that are
        still current (a copy gets the current state of every object,
        with the tids and metadata of the transactions that wrote it).
        """
        self._check_open()
        last = q.to_int(self.lastTransaction())
        low = q.to_int(start or z64)
        high = last if stop is None else min(q.to_int(stop), last)
        return self._transactions(low, high)

    def _transactions(self, low, high):
        while low <= high:
            rows = self._fetch('iterating', _TRANSACTIONS, (low, high, PAGE),
                               many=True)
            if not rows:
                return
            records = {}
            for tid, zoid, state, data_txn in self._fetch(
                    'iterating', self._q.records, ([row[0] for row in rows],),
                    many=True):
                records.setdefault(tid, []).append(DataRecord(
                    q.to_bytes(zoid), q.to_bytes(tid), state,
                    None if data_txn is None else q.to_bytes(data_txn)))
            for tid, packed, user, description, extension in rows:
                yield TransactionRecord(
                    _meta(tid, user, description, extension, packed),
                    records.get(tid, []))
            low = rows[-1][0] + 1

    # -- IStorage.pack ----------------------------------------------------------

    def pack(self, t, referencesf, gc=True):
        """Forget history older than ``t`` and, with ``gc``, the objects
        unreachable from the root then or from a later write (see
        ``IStorage.pack`` and pack.py). Commits go on meanwhile, except
        while the deletions are made. Empties the records cache (no poll
        reports the objects garbage collection removes)."""
        self._check_writable()
        try:
            packing.pack(self._shared, t, referencesf, gc)
        finally:
            self._shared.cache.clear()
