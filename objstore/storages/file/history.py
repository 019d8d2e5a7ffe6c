"""What FileStorage's log remembers: object history, undo, the undo log.

``history`` walks an object's records through their back-pointers,
reading each transaction's header for its metadata.

Undo follows ZODB's FileStorage: undoing transaction T writes, in the
transaction in progress, each object T changed back to its revision
before T (a deletion record for objects T created). When an object
changed again after T, the undo still goes through if the later change
left the same bytes T wrote, or if ``objstore.conflict`` can merge the
revert with the later change; otherwise ``UndoError``. A deletion
record has no bytes to compare, so T's deletion of an object is undone
only while it is current or the current record copies it (as ZODB's
backpointers decide). The restored revisions are copies of the earlier
data or deletion (this format has no backpointers), marked with
``data_txn``, the tid they were copied from.

The undo log walks the log backward from its end and stops at the first
transaction a pack thinned (status ``'p'``): those are not undoable.
"""
from objstore import conflict
from objstore import errors
from objstore.storages.base import (
    select_undo_log, specification_filter, z64)
from objstore.storages.file import format as fmt
from objstore.storages.file import scan


def history(storage, oid, size=1):
    """``IStorage.history``; call with ``storage._lock`` held."""
    pos = storage._index.get(oid)
    if pos is None:
        raise errors.POSKeyError(oid)
    reader = scan.Reader(storage._fd, storage._pos, scan.PAGE)
    result = []
    metas = {}
    while pos and (size is None or len(result) < size):
        tid, prev, tpos, _flags, _dt, data = storage._read(pos, oid)
        meta = metas.get(tpos)
        if meta is None:
            try:
                txn = scan.read_txn(reader, tpos, full=False)
            except fmt.Invalid as invalid:
                raise invalid.error(storage._path) from None
            meta = metas[tpos] = txn.meta()
        result.append(meta.info(tid=tid, serial=tid, size=len(data)))
        pos = prev
    return result


def undo_log(fd, path, end, first, last, filter=None):
    """The undo log of the log ending at ``end``; see ``IStorageUndoable``."""
    def descriptions():
        for txn in scan.transactions_backward(fd, path, end):
            if txn.status == fmt.STATUS_PACKED:
                return
            yield txn.meta().info(id=txn.tid, size=txn.tlen)
    return select_undo_log(descriptions(), first, last, filter)


def history_start(storage):
    """``IHistoryWindow.history_start``, with ``storage._lock`` held: the
    newest transaction with status ``'p'`` (pack writes them first in the
    file, so the walk back from the end stops after the transactions
    committed since the last pack), or ``z64``. Cached until the file
    changes under the storage (reopen, pack, a ``'p'`` transaction)."""
    if storage._history_start is None:
        start = z64
        for txn in scan.transactions_backward(storage._fd, storage._path,
                                              storage._pos):
            if txn.status == fmt.STATUS_PACKED:
                start = txn.tid
                break
        storage._history_start = start
    return storage._history_start


def undo_info(storage, first, last, specification):
    return storage.undoLog(first, last, specification_filter(specification))


def _find(storage, tid):
    if not isinstance(tid, bytes) or len(tid) != 8:
        raise errors.UndoError('invalid transaction id %r' % (tid,))
    for txn in scan.transactions_backward(storage._fd, storage._path,
                                          storage._pos):
        if txn.tid == tid:
            if txn.status != fmt.STATUS_NORMAL:
                break
            return scan.read_full(storage._fd, storage._path, txn)
        if txn.status == fmt.STATUS_PACKED or txn.tid < tid:
            break
    raise errors.UndoError('transaction %s is not undoable (unknown, or'
                           ' removed by pack)' % errors.oid_repr(tid))


def undo(storage, transaction_id):
    """Stage the undo of ``transaction_id`` in the storage's transaction in
    progress; return the oids it writes. Call with ``storage._lock`` held."""
    txn = _find(storage, transaction_id)
    buf = txn.buf
    records = {}
    for (pos, oid, _tid, prev, flags, _dt, ds, de) in txn.records():
        data = None if flags & fmt.FLAG_DELETED else buf[ds:de]
        records[oid] = (pos, prev, data)
    staged = {}
    failures = []
    for oid, (pos, prev, data) in records.items():
        try:
            staged[oid] = _undo_record(storage, txn.tid, oid, pos, prev, data)
        except errors.UndoError as exc:
            failures.append(exc)
    if len(failures) == 1:
        raise failures[0]
    if failures:
        raise errors.MultipleUndoErrors(failures)
    pending = storage._pending
    tid = storage._tid
    for oid, (data, data_txn) in staged.items():
        pending[oid] = (tid, data, data_txn, storage._index.get(oid, 0))
    return list(staged)


def _undo_record(storage, undone_tid, oid, pos, prev, undone_data):
    """``(data, data_txn)`` that reverts the record at ``pos``."""
    staged = storage._pending.get(oid)
    if staged is not None:
        # An earlier undo in this same transaction wrote the object.
        current_data, current_tid, current = staged[1], storage._tid, False
        current_copies = staged[2]
    else:
        current_pos = storage._index.get(oid)
        current = current_pos == pos
        if not current:
            (current_tid, _p, _t, flags, current_copies,
             current_data) = storage._read(current_pos, oid)
            if flags & fmt.FLAG_DELETED:
                current_data = None
    if not current and undone_data is None and current_copies != undone_tid:
        # As ZODB's FileStorage: a deletion record has no data to compare
        # the current state with, so only a current record that copies
        # this one (an undo wrote it) lets it be undone.
        raise errors.UndoError('the transaction deleted the object, which'
                               ' changed since', oid)
    copy = True
    if not current and current_data != undone_data:
        if not prev:
            raise errors.UndoError(
                "can't undo the creation of an object changed by a later"
                " transaction", oid)
        copy = False
    if not prev:
        return None, None
    (prev_tid, _p, _t, flags, _dt, prev_data) = storage._read(prev, oid)
    if flags & fmt.FLAG_DELETED:
        prev_data = None
    if copy:
        # A copy of a deletion names it too, as ZODB's backpointer does.
        return prev_data, prev_tid
    if prev_data is None or current_data is None:
        raise errors.UndoError('a later transaction deleted or recreated'
                               ' the object', oid)
    try:
        data = conflict.resolve(oid, current_tid, undone_tid, prev_data,
                                storage.loadSerial,
                                committed_data=current_data)
    except (errors.ConflictError, errors.POSKeyError,
            errors.SerializationError):
        raise errors.UndoError('some data were modified by a later'
                               ' transaction', oid) from None
    return data, None
