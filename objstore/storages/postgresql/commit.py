"""Two-phase commit of the PostgreSQL storage.

``tpc_begin`` and ``store`` only collect (no round trip, no lock). At
``tpc_vote`` one pipelined round trip begins a transaction on the store
connection, takes the commit lock (an advisory transaction lock) and reads
the newest tid and the committed serials of every object the transaction
stores, deletes or read-verifies; conflicts are resolved through
``objstore.conflict`` right there, then a second round trip writes the
transaction row and every record (one INSERT over arrays). ``tpc_finish``
sends NOTIFY and COMMIT in one round trip; COMMIT releases the lock.

A connection lost during ``tpc_vote`` aborts the transaction on the server
(and frees the lock): the vote raises ``DisconnectedError`` and nothing is
written. A connection lost during COMMIT leaves the outcome unknown: a new
connection takes the commit lock (so the old session has ended, one way or
the other) and looks for the tid in ``transactions``; found, ``tpc_finish``
succeeds; not found, it raises ``DisconnectedError``.
"""
import time

import psycopg

from objstore import conflict, errors
from objstore.storages.base import TransactionMeta, new_tid, z64
from objstore.storages.postgresql import queries as q
from objstore.storages.postgresql.connections import is_disconnect
from objstore.storages.postgresql.schema import OID_BLOCK

#: How long tpc_finish keeps trying to learn the outcome of a COMMIT whose
#: connection was lost, in seconds.
OUTCOME_TIMEOUT = 30.0

STORE, DELETE, UNDO, RESTORE = 'store', 'delete', 'undo', 'restore'


class Committing:
    """The 2PC methods of PostgreSQLStorage (a mixin over BaseStorage)."""

    def _setup_commit(self):
        self._clear_commit()

    def _clear_commit(self):
        # oid -> (kind, serial, data, data_txn), in store order; serial is
        # what the committed one must be (None: not checked).
        self._records = {}
        self._checks = {}       # oid -> serial (checkCurrentSerial...)
        self._voted = False
        self._resolved = []

    def _check_write(self, transaction, version=''):
        self._check_writable()
        self._check_transaction(transaction)
        if version:
            raise errors.StorageError('versions are not supported')

    # -- IStorage ---------------------------------------------------------

    def tpc_begin(self, transaction, tid=None, status=' '):
        """Start committing; blocks while another transaction of this
        storage object (or instance) is between tpc_begin and its end."""
        self._check_writable()
        if self._transaction is transaction:
            raise errors.StorageTransactionError(
                'duplicate tpc_begin for the same transaction')
        self._commit_lock.acquire()
        try:
            self._check_open()
            if tid is not None and tid <= self._ltid:
                raise errors.StorageTransactionError(
                    'forced tid %s is not after the last transaction %s'
                    % (errors.oid_repr(tid), errors.oid_repr(self._ltid)))
            if status not in (' ', 'p'):
                status = ' '
            self._meta = TransactionMeta.from_transaction(
                transaction, tid or z64, status)
            self._tid = tid
            self._clear_commit()
            self._transaction = transaction
        except BaseException:
            self._commit_lock.release()
            raise

    def store(self, oid, serial, data, version, transaction):
        """Collect ``data`` for ``oid``; a stale ``serial`` is resolved or
        refused at ``tpc_vote``."""
        if transaction is not self._transaction or self._closed or version:
            self._check_write(transaction, version)
        self._records[oid] = (STORE, serial or z64, data, None)

    def restore(self, oid, serial, data, version, prev_txn, transaction):
        """Collect a record committed elsewhere (no conflict check);
        ``prev_txn`` becomes its ``data_txn`` when that transaction holds
        the same data for ``oid`` here."""
        self._check_write(transaction, version)
        self._records[oid] = (RESTORE, None, data, prev_txn)

    def deleteObject(self, oid, serial, transaction):
        """Collect a deletion record; checked at ``tpc_vote``: ConflictError
        unless ``serial`` is current, POSKeyError if nothing is."""
        self._check_write(transaction)
        self._records[oid] = (DELETE, serial, None, None)

    def checkCurrentSerialInTransaction(self, oid, serial, transaction):
        """ReadConflictError at ``tpc_vote`` unless ``serial`` is then the
        current serial of ``oid``; the commit lock keeps it so until the
        commit ends."""
        self._check_open()
        self._check_transaction(transaction)
        self._checks[oid] = serial

    def tpc_vote(self, transaction):
        """Lock, check, resolve and write; returns the resolved oids."""
        self._check_open()
        self._check_transaction(transaction)
        if self._voted:
            return list(self._resolved)
        try:
            top = self._vote()
        except BaseException as exc:
            # Release the commit lock now, not at tpc_abort.
            self._store_link.rollback()
            if isinstance(exc, errors.ConflictError):
                self._force_poll = True
            raise
        if top:
            # Not under the store link's lock: new_oid takes the two locks
            # in the other order.
            self._shared.note_stored_oid(top)
        self._voted = True
        return list(self._resolved)

    def tpc_finish(self, transaction, func=lambda tid: None):
        """COMMIT; ``func(tid)`` runs once the outcome is known to be a
        commit, before ``lastTransaction()`` reports ``tid``."""
        self._check_open()
        self._check_transaction(transaction)
        try:
            if not self._voted:
                self.tpc_vote(transaction)
            tid = self._tid
            self._begin_finish()
            self._commit(tid)
            try:
                func(tid)
            finally:
                with self._lock:
                    self._ltid = tid
                self._own_tids.append(q.to_int(tid))
                self._shared.note_commit(q.to_int(tid))
        finally:
            self._end_finish()
            self._clear_commit()
            if self._transaction is transaction:
                self._end_commit()
        return tid

    def tpc_abort(self, transaction):
        """Roll back whatever the vote wrote; never raises."""
        if transaction is not self._transaction:
            return
        try:
            self._store_link.rollback()
        finally:
            self._clear_commit()
            self._end_commit()

    # -- the vote -----------------------------------------------------------

    def _vote(self):
        link = self._store_link
        oids = list(self._records)
        oids.extend(oid for oid in self._checks if oid not in self._records)
        # A lost session raises DisconnectedError here (the transaction
        # is retried whole); the link opens a new one at the next use.
        last_cursor, serials_cursor = self._lock_and_read(link, oids)
        with link.using('voting') as conn:
            last = last_cursor.fetchone()[0]
            committed = {} if serials_cursor is None else {
                q.to_bytes(zoid): (q.to_bytes(tid), deleted)
                for zoid, tid, deleted in serials_cursor.fetchall()}
            self._shared.note_commit(last)
            self._tid = self._choose_tid(last)
            self._check_reads(committed)
            self._check_writes(conn, committed)
            return self._write(conn)

    def _lock_and_read(self, link, oids):
        """Begin, take the commit lock, and ask for the newest tid and the
        committed serials of ``oids``: one round trip."""
        with link.using('voting') as conn:
            with conn.pipeline():
                conn.execute('BEGIN')
                conn.execute(q.LOCK, self._shared.schema.lock_key)
                last_cursor = conn.execute(q.LAST_TID)
                serials_cursor = conn.execute(
                    self._q.current_serials,
                    ([q.to_int(oid) for oid in oids],)) if oids else None
        return last_cursor, serials_cursor

    def _choose_tid(self, last):
        if self._tid is None:
            return new_tid(max(q.to_bytes(last), self._ltid))
        if q.to_int(self._tid) <= last:
            raise errors.StorageTransactionError(
                'forced tid %s is not after the last transaction %s'
                % (errors.oid_repr(self._tid),
                   errors.oid_repr(q.to_bytes(last))))
        return self._tid

    def _check_reads(self, committed):
        for oid, serial in self._checks.items():
            if self._records.get(oid, (None,))[0] == STORE:
                continue    # the store's own check covers it
            current, deleted = committed.get(oid, (None, False))
            if current != serial or deleted:
                raise errors.ReadConflictError(
                    oid=oid, serials=(current, serial))

    def _check_writes(self, conn, committed):
        records = self._records
        for oid, (kind, serial, data, data_txn) in list(records.items()):
            if kind == RESTORE:
                continue
            current, deleted = committed.get(oid, (None, False))
            if kind == DELETE:
                if current is None or deleted:
                    raise errors.POSKeyError(oid)
                if current != serial:
                    raise errors.ConflictError(
                        oid=oid, serials=(current, serial))
            elif kind == UNDO:
                if (current or z64) != serial:
                    raise errors.ConflictError(
                        'the object changed while its transaction was'
                        ' being undone', oid=oid,
                        serials=(current, serial), data=data)
            elif current is not None and current != serial:
                if deleted:
                    raise errors.ConflictError(
                        'the object was deleted by a later transaction',
                        oid=oid, serials=(current, serial), data=data)
                data = conflict.resolve(oid, current, serial, data,
                                        self._resolution_loader(conn))
                records[oid] = (STORE, current, data, None)
                self._resolved.append(oid)

    def _resolution_loader(self, conn):
        """``loadSerial`` for conflict resolution: committed revisions as
        the commit lock's holder sees them, and (history-free, where only
        the current revision is kept) this instance's snapshot, which
        still shows the revision the transaction started from."""
        query = self._q.load_serial

        def load_serial(oid, serial):
            row = conn.execute(query, {'oid': q.to_int(oid),
                                       'tid': q.to_int(serial)}).fetchone()
            if row is not None and row[0] is not None and row[1]:
                return row[0]
            if self._snapshot and not self._q.keep_history:
                return self.loadSerial(oid, serial)
            raise errors.POSKeyError(oid)
        return load_serial

    def _write(self, conn):
        tid = q.to_int(self._tid)
        meta = self._meta
        hints = self._same_data_hints(conn)
        zoids, states, data_txns = [], [], []
        top = 0
        for oid, (kind, serial, data, data_txn) in self._records.items():
            n = q.to_int(oid)
            zoids.append(n)
            states.append(data)
            if kind == RESTORE:
                data_txn = hints.get(n)
            data_txns.append(None if data_txn is None
                             else q.to_int(data_txn))
            if n > top:
                top = n
        shared = self._shared
        with conn.pipeline():
            conn.execute(q.INSERT_TRANSACTION, (
                tid, meta.status == 'p', meta.user, meta.description,
                meta.extension_bytes))
            if zoids:
                conn.execute(self._q.insert_objects,
                             (tid, zoids, states, data_txns))
            if meta.status == 'p':
                conn.execute(q.RAISE_HISTORY_START, (tid,))
            if top > shared.oid_limit:
                # An explicit oid (restore, copy): new_oid must pass it.
                conn.execute(q.MOVE_OID_BLOCK, ((top - 1) // OID_BLOCK + 1,))
        return top

    def _same_data_hints(self, conn):
        """``{zoid: prev_txn}`` for the restores whose ``prev_txn`` holds
        the same data for the same oid here."""
        asked = {q.to_int(oid): (q.to_int(data_txn), data)
                 for oid, (kind, _, data, data_txn) in self._records.items()
                 if kind == RESTORE and data_txn is not None}
        if not asked or not self._q.keep_history:
            return {}
        zoids = list(asked)
        rows = conn.execute(
            'SELECT o.zoid, o.state FROM object_state o JOIN unnest('
            '%s::bigint[], %s::bigint[]) AS p(zoid, tid)'
            ' ON o.zoid = p.zoid AND o.tid = p.tid',
            (zoids, [asked[z][0] for z in zoids])).fetchall()
        return {zoid: q.to_bytes(asked[zoid][0]) for zoid, state in rows
                if state == asked[zoid][1]}

    # -- the commit -----------------------------------------------------------

    def _commit(self, tid):
        """NOTIFY and COMMIT; when the connection drops meanwhile, find out
        whether the transaction committed (return) or not (raise)."""
        link = self._store_link
        conn = link.conn
        t = q.to_int(tid)
        try:
            if conn is None:
                raise psycopg.InterfaceError('the connection was closed')
            conn.execute("NOTIFY %s, '%d'; COMMIT"
                         % (self._shared.schema.channel, t))
            return
        except psycopg.Error as exc:
            if not is_disconnect(conn, exc):
                link.rollback()
                raise errors.StorageError(
                    '%s: the COMMIT of transaction %s failed: %s'
                    % (self.__name__, errors.oid_repr(tid), exc)) from exc
            link.drop()
            lost = exc
        if self._committed_after_all(t, lost):
            return
        raise errors.DisconnectedError(
            '%s: the connection was lost during the COMMIT of transaction'
            ' %s, which did not commit (retry it): %s'
            % (self.__name__, errors.oid_repr(tid), lost)) from lost

    def _committed_after_all(self, t, lost):
        """Whether transaction ``t`` committed, asked on a new connection
        once the commit lock shows the old session is over."""
        shared = self._shared
        deadline = time.monotonic() + OUTCOME_TIMEOUT
        while True:
            try:
                with psycopg.connect(shared.dsn, autocommit=True,
                                     **shared.connect_options) as conn:
                    with conn.transaction():
                        conn.execute("SET LOCAL lock_timeout = '%ds'"
                                     % OUTCOME_TIMEOUT)
                        conn.execute(q.LOCK, shared.schema.lock_key)
                        found = conn.execute(q.TRANSACTION_EXISTS,
                                             (t,)).fetchone()[0]
                return bool(found)
            except psycopg.Error as exc:
                if time.monotonic() > deadline:
                    raise errors.StorageError(
                        '%s: the connection was lost during the COMMIT of'
                        ' transaction %s (%s) and the server could not be'
                        ' asked whether it committed (%s); look for tid %d'
                        ' in table transactions before retrying'
                        % (self.__name__, errors.oid_repr(q.to_bytes(t)),
                           lost, exc, t)) from exc
                time.sleep(0.2)
