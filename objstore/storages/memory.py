"""The reference storage: every revision of every object, in memory.

Read this module first to learn what an objstore storage does; it leaves
out everything a file adds (format, index, recovery). Tests and short-lived
databases use it: it is fast, and gone with the process.

The state, guarded by ``self._lock``:

* ``_data``: oid -> ``OOBucket`` of tid -> record bytes, or None for a
  deletion record (``deleteObject``, an undone creation); a dict, since
  loads and commits look oids up one at a time;
* ``_oids``: the oids of ``_data`` in order (an ``OOTreeSet``), for
  ``record_iternext``; commits append the oids they create to
  ``_new_oids``, sorted in when the order is needed (a BTree insert per
  new object would slow every commit down for the sake of a rare call);
* ``_transactions``: tid -> ``(TransactionMeta, records)``, ``records``
  the transaction's oid -> ``(data, data_txn)`` in store order; entries
  are replaced, never changed in place, so an iterator over a snapshot of
  this mapping keeps seeing the storage as it was;
* ``_tdata``: the transaction being committed, oid -> ``(data, data_txn)``;
  at ``tpc_finish`` it becomes the transaction's ``records``.
"""
from BTrees.OOBTree import OOBTree, OOBucket, OOTreeSet
from zope.interface import implementer

from objstore import conflict, errors
from objstore.interfaces import (
    IExternalGC, IHistoryWindow, IStorage, IStorageCurrentRecordIteration,
    IStorageIteration, IStorageRestoreable, IStorageUndoable,
    ReadVerifyingStorage)
from objstore.storages.base import (
    BaseStorage, DataRecord, TransactionMeta, TransactionRecord, p64,
    select_undo_log, specification_filter, time_tid, u64, z64)


def _before(tid):
    """The largest tid strictly below ``tid``."""
    return p64(u64(tid) - 1)


@implementer(IStorage, IStorageIteration, IStorageUndoable,
             IStorageRestoreable, IStorageCurrentRecordIteration,
             ReadVerifyingStorage, IExternalGC, IHistoryWindow)
class MemoryStorage(BaseStorage):
    """A history-preserving storage that keeps everything in memory.

    Durability: none. Transactions are atomic, consistent and isolated (one
    commits at a time; readers see all of it or nothing), but they live in
    this process's memory only: ``close()`` discards them, and so does the
    end of the process, however it ends.

    Thread-safe: any number of threads may read while one commits or packs.
    ``pack_gc`` is what ``pack`` does when its ``gc`` argument is None;
    pass False when an external garbage collector uses ``deleteObject``.
    """

    def __init__(self, name='MemoryStorage', pack_gc=True):
        super().__init__(name)
        self._pack_gc = pack_gc
        self._data = {}
        self._oids = OOTreeSet()
        self._new_oids = []
        self._transactions = OOBTree()
        self._history_start = z64   # the newest status 'p' transaction
        self._tdata = self._resolved = None

    # -- IStorage: reading ------------------------------------------------

    def _ordered_oids(self):
        """``_oids``, with ``_new_oids`` sorted in first."""
        if self._new_oids:
            self._oids.update(self._new_oids)
            self._new_oids = []
        return self._oids

    def _current(self, oid):
        """``(tid, data)`` of the committed revision of ``oid``, or None."""
        revisions = self._data.get(oid)
        if revisions is None:
            return None
        tid = revisions.maxKey()
        return tid, revisions[tid]

    def load(self, oid, version=''):
        """``(data, tid)`` of the current revision; POSKeyError if none."""
        self._check_open()
        with self._lock:
            current = self._current(oid)
        if current is None or current[1] is None:
            raise errors.POSKeyError(oid)
        return current[1], current[0]

    def loadBefore(self, oid, tid):
        """``(data, start, end)`` of the revision current before ``tid``,
        or None; see ``IStorage.loadBefore``."""
        self._check_open()
        with self._lock:
            revisions = self._data.get(oid)
            if revisions is None:
                raise errors.POSKeyError(oid)
            if tid <= z64:
                return None
            try:
                start = revisions.maxKey(_before(tid))
            except ValueError:
                return None
            data = revisions[start]
            try:
                end = revisions.minKey(tid)
            except ValueError:
                end = None
        if data is None:
            raise errors.POSKeyError(oid)
        return data, start, end

    def loadSerial(self, oid, serial):
        """The record ``oid`` got in transaction ``serial``; else POSKeyError."""
        self._check_open()
        with self._lock:
            revisions = self._data.get(oid)
            data = None if revisions is None else revisions.get(serial)
        if data is None:
            raise errors.POSKeyError(oid, serial)
        return data

    def history(self, oid, size=1):
        """Up to ``size`` revisions of ``oid`` (all if None), newest first."""
        self._check_open()
        with self._lock:
            revisions = self._data.get(oid)
            if revisions is None:
                raise errors.POSKeyError(oid)
            entries = list(revisions.items())[::-1][:size]
            return [self._transactions[tid][0].info(
                        serial=tid, size=len(data or b''))
                    for tid, data in entries]

    def getSize(self):
        """Approximate bytes held: records plus a fixed cost per revision."""
        self._check_open()
        with self._lock:
            return sum(64 + len(data or b'')
                       for revisions in self._data.values()
                       for data in revisions.values())

    def __len__(self):
        """Objects with records, deleted ones included until a pack."""
        self._check_open()
        return len(self._data)

    def __bool__(self):
        # An empty storage is still a storage: ``if storage:`` must not
        # fall back on __len__.
        return True

    def close(self):
        """Discard all data and any transaction in progress."""
        with self._lock:
            self._closed = True
            self._data = {}
            self._oids = OOTreeSet()
            self._new_oids = []
            self._transactions = OOBTree()
            if self._transaction is not None:
                # The committer's next call fails: store as closed,
                # tpc_vote and tpc_finish as not its transaction any more.
                self._abort()
                self._end_commit()

    # -- IStorage: writing ------------------------------------------------

    def _check_write(self, transaction, version=''):
        self._check_writable()
        self._check_transaction(transaction)
        if version:
            raise errors.StorageError('versions are not supported')

    def _begin(self, tid, meta):
        if meta.status not in (' ', 'p'):
            # The statuses that mean something here (copies from ZODB may
            # carry others).
            meta.status = ' '
        self._tdata = {}
        self._resolved = []

    def store(self, oid, serial, data, version, transaction):
        """Write ``data`` for ``oid``; see ``IStorage.store``.

        A stale ``serial`` is resolved through ``objstore.conflict`` (the
        oid is then reported by ``tpc_vote``) or raises ConflictError.
        """
        # The checks of _check_write, in one test on the common path (a
        # read-only storage has no current transaction: tpc_begin refused).
        if transaction is not self._transaction or self._closed or version:
            self._check_write(transaction, version)
        if u64(oid) > self._oid:
            with self._lock:
                self._note_oid(oid)
        # No self._lock for reading: the commit lock keeps every other
        # writer (commit, pack) out, so the committed revisions stay as
        # they are until tpc_finish, also while a class merges.
        serial = serial or z64
        revisions = self._data.get(oid)
        if revisions is not None:
            committed = revisions.maxKey()
            if committed != serial:
                if revisions[committed] is None:
                    raise errors.ConflictError(
                        'the object was deleted by a later transaction',
                        oid=oid, serials=(committed, serial), data=data)
                data = conflict.resolve(oid, committed, serial, data,
                                        self.loadSerial)
                self._resolved.append(oid)
        self._tdata[oid] = (data, None)

    def _vote(self, transaction):
        # Nothing can fail later: _finish only moves records into place.
        return list(self._resolved)

    def _finish(self, tid):
        records = self._tdata
        for oid, (data, _) in records.items():
            revisions = self._data.get(oid)
            if revisions is None:
                revisions = self._data[oid] = OOBucket()
                self._new_oids.append(oid)
            revisions[tid] = data
        self._transactions[tid] = (self._meta, records)
        self._tdata = self._resolved = None
        if self._meta.status == 'p':
            self._history_start = tid

    def _abort(self):
        self._tdata = self._resolved = None

    # -- IStorage: pack ---------------------------------------------------

    def pack(self, t, referencesf, gc=None):
        """Forget history older than ``t``, as ``IStorage.pack`` says.

        ``gc`` None means the ``pack_gc`` given to the constructor.
        Transactions before ``t`` get status ``'p'`` and are no longer
        undoable; those left without records go, except the newest
        transaction. Packing again, to the same time or an earlier one,
        applies the same rules to what is left (so ``gc`` then collects
        what an earlier pack without it kept).
        """
        self._check_writable()
        stop = time_tid(t)
        # Only commits and packs change the data, and both hold the commit
        # lock: the plan is made without blocking readers, and no commit
        # can link to an object while the collector calls it garbage.
        with self._commit_lock:
            self._check_open()
            keep = {oid: self._oldest_kept(revisions, stop)
                    for oid, revisions in self._data.items()}
            if self._pack_gc if gc is None else gc:
                for oid in self._unreachable(keep, stop, referencesf):
                    keep[oid] = None
            with self._lock:
                self._apply_pack(keep, stop)

    @staticmethod
    def _oldest_kept(revisions, stop):
        """The oldest tid a pack to ``stop`` keeps: the revision current at
        ``stop``, or after it if that one is a deletion; None: none."""
        try:
            tid = revisions.maxKey(_before(stop))
        except ValueError:
            return revisions.minKey()
        if revisions[tid] is not None:
            return tid
        try:
            return revisions.minKey(stop)
        except ValueError:
            return None

    def _unreachable(self, keep, stop, referencesf):
        """Oids reachable neither from the root nor from a write after
        ``stop``, through the revisions the pack keeps."""
        todo = [z64] + [oid for oid, revisions in self._data.items()
                        if revisions.maxKey() >= stop]
        reached = set()
        while todo:
            oid = todo.pop()
            # Not kept: a dangling or cross-database reference.
            if oid in reached or keep.get(oid) is None:
                continue
            reached.add(oid)
            for data in self._data[oid].values(keep[oid]):
                if data is not None:
                    todo.extend(referencesf(data))
        return [oid for oid in keep if oid not in reached]

    def _apply_pack(self, keep, stop):
        for oid, oldest in keep.items():
            revisions = self._data[oid]
            if oldest is None:
                del self._data[oid]
                self._ordered_oids().remove(oid)
            else:
                for tid in list(revisions.keys(max=oldest, excludemax=True)):
                    del revisions[tid]
        # As ZODB's FileStorage: every transaction before the pack time
        # that keeps a record gets status 'p' (no longer undoable); one
        # that keeps none goes, except the newest of all, which stays so
        # that iteration still ends at lastTransaction().
        if not self._transactions:
            return
        newest = self._transactions.maxKey()
        for tid, (meta, records) in list(self._transactions.items(
                max=stop, excludemax=True)):
            kept = {oid: record for oid, record in records.items()
                    if oid in self._data and tid in self._data[oid]}
            if kept or tid == newest:
                self._transactions[tid] = (TransactionMeta(
                    tid, meta.user, meta.description, meta.extension_bytes,
                    'p'), kept)
                self._history_start = max(self._history_start, tid)
            else:
                del self._transactions[tid]

    # -- IHistoryWindow ---------------------------------------------------

    def history_start(self):
        """The newest transaction a pack (or a copy) marked ``'p'``, or
        ``z64``; see ``IHistoryWindow``."""
        self._check_open()
        return self._history_start

    # -- IStorageIteration ------------------------------------------------

    def iterator(self, start=None, stop=None):
        """Transactions with ``start <= tid <= stop``, oldest first, as
        they were when this method was called."""
        self._check_open()
        with self._lock:
            snapshot = list(self._transactions.values(start, stop))
        return (TransactionRecord(meta, [
                    DataRecord(oid, meta.tid, data, data_txn)
                    for oid, (data, data_txn) in records.items()])
                for meta, records in snapshot)

    # -- IStorageCurrentRecordIteration -----------------------------------

    def record_iternext(self, next=None):
        """``(oid, tid, data, next_oid)`` of the first current object at or
        after ``next``, skipping deleted ones; POSKeyError if there is none."""
        self._check_open()
        found = None
        with self._lock:
            for oid in self._ordered_oids().keys(next or z64):
                tid, data = self._current(oid)
                if data is None:
                    continue
                if found is not None:
                    return found + (oid,)
                found = (oid, tid, data)
        if found is None:
            raise errors.POSKeyError(next or z64)
        return found + (None,)

    # -- ReadVerifyingStorage ---------------------------------------------

    def checkCurrentSerialInTransaction(self, oid, serial, transaction):
        """ReadConflictError unless ``serial`` is the current one of
        ``oid``; it stays so, since nothing else commits meanwhile."""
        self._check_open()
        self._check_transaction(transaction)
        with self._lock:
            current = self._current(oid) or (None, None)
        if current[0] != serial or current[1] is None:
            raise errors.ReadConflictError(
                oid=oid, serials=(current[0], serial), data=current[1])

    # -- IExternalGC ------------------------------------------------------

    def deleteObject(self, oid, serial, transaction):
        """Write a deletion record; ``serial`` must be the current one."""
        self._check_write(transaction)
        with self._lock:
            current = self._current(oid)
        if current is None or current[1] is None:
            raise errors.POSKeyError(oid)
        if current[0] != serial:
            raise errors.ConflictError(
                oid=oid, serials=(current[0], serial), data=current[1])
        self._tdata[oid] = (None, None)

    # -- IStorageUndoable -------------------------------------------------

    def supportsUndo(self):
        return True

    def undoLog(self, first=0, last=-20, filter=None):
        """Transactions newest first, down to the first a pack thinned
        (status ``'p'``, as ZODB's FileStorage); ``id`` is the tid."""
        self._check_open()
        with self._lock:
            metas = []
            for meta, _ in reversed(self._transactions.values()):
                if meta.status == 'p':
                    break
                metas.append(meta)
        return select_undo_log((meta.info(id=meta.tid) for meta in metas),
                               first, last, filter)

    def undoInfo(self, first=0, last=-20, specification=None):
        """``undoLog`` keeping descriptions that contain ``specification``."""
        return self.undoLog(first, last, specification_filter(specification))

    def undo(self, transaction_id, transaction):
        """Write each object of the undone transaction back to its state
        before it; see ``IStorageUndoable.undo``. Returns ``(tid, oids)``."""
        self._check_write(transaction)
        if not isinstance(transaction_id, bytes) or len(transaction_id) != 8:
            raise errors.UndoError(
                'invalid transaction id %r' % (transaction_id,))
        with self._lock:
            entry = self._transactions.get(transaction_id)
            if entry is None or entry[0].status != ' ':
                raise errors.UndoError(
                    'transaction %s is unknown or packed away'
                    % errors.oid_repr(transaction_id))
            changes, failures = {}, []
            for oid, (data, _) in entry[1].items():
                try:
                    changes[oid] = self._undo_record(
                        oid, transaction_id, data)
                except errors.UndoError as exc:
                    failures.append(exc)
        if len(failures) == 1:
            raise failures[0]
        if failures:
            raise errors.MultipleUndoErrors(failures)
        self._tdata.update(changes)
        return self._tid, list(changes)

    def _undo_record(self, oid, tid, undone):
        """``(data, data_txn)`` undoing ``oid``'s record ``undone`` of ``tid``."""
        revisions = self._data[oid]
        try:
            before_tid = revisions.maxKey(_before(tid))
        except ValueError:
            before_tid = before = None
        else:
            before = revisions[before_tid]
        if oid in self._tdata:
            # An earlier undo in this same transaction already changed it.
            current_tid, (current, copies) = self._tid, self._tdata[oid]
        else:
            current_tid, current = self._current(oid)
            copies = self._data_txn(oid, current_tid)
        if current_tid != tid and undone is None and copies != tid:
            # As ZODB's FileStorage: a deletion record has no data to
            # compare the current state with, so only a current record
            # that copies this one (an undo wrote it) lets it be undone.
            raise errors.UndoError(
                'the transaction deleted the object, which changed since', oid)
        if current_tid == tid or current == undone:
            # A copy of a deletion names it too, as ZODB's backpointer does.
            return before, before_tid
        if before_tid is None:
            raise errors.UndoError(
                'cannot undo the creation of an object changed since', oid)
        if None in (before, current, undone):
            raise errors.UndoError(
                'the object was deleted or re-created since', oid)
        try:
            return conflict.resolve(oid, current_tid, tid, before,
                                    self.loadSerial,
                                    committed_data=current), None
        except errors.ConflictError:
            raise errors.UndoError(
                'the object was changed by a later transaction', oid)

    def _data_txn(self, oid, tid):
        """The ``data_txn`` of ``oid``'s record in transaction ``tid``."""
        record = self._transactions[tid][1].get(oid)
        return None if record is None else record[1]

    # -- IStorageRestoreable ----------------------------------------------

    def restore(self, oid, serial, data, version, prev_txn, transaction):
        """Write a record committed elsewhere, without conflict checks.

        It belongs to the current transaction (whose tid ``tpc_begin`` was
        given). ``prev_txn`` becomes its ``data_txn`` when that transaction
        holds the same data (or also a deletion record) for ``oid`` here.
        """
        self._check_write(transaction, version)
        with self._lock:
            self._note_oid(oid)
            revisions = self._data.get(oid)
            if (prev_txn is None or revisions is None
                    or prev_txn not in revisions
                    or revisions[prev_txn] != data):
                prev_txn = None
        self._tdata[oid] = (data, prev_txn)
