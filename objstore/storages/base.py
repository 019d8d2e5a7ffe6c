"""What every objstore storage shares: tids, transaction metadata, and the
two-phase-commit state machine.

A storage subclasses :class:`BaseStorage` and supplies the ``_begin``,
``_vote``, ``_finish`` and ``_abort`` hooks; the base class enforces the
call order (``tpc_begin``, ``store``…, ``tpc_vote``, then ``tpc_finish`` or
``tpc_abort``), serializes committers and hands out increasing tids.
"""
import threading
import time

from persistent.TimeStamp import TimeStamp

from objstore import errors
from objstore.serialize import class_name_of, pack_extension, unpack_extension

z64 = b'\0' * 8
#: The largest tid: ``loadBefore(oid, maxtid)`` reads the current revision.
maxtid = b'\x7f\xff\xff\xff\xff\xff\xff\xff'


def p64(n):
    """An unsigned int as 8 big-endian bytes (oids and tids)."""
    return n.to_bytes(8, 'big')


def u64(b):
    """8 big-endian bytes as an unsigned int."""
    return int.from_bytes(b, 'big')


def new_tid(last):
    """A tid for a transaction committing now, strictly after ``last``."""
    now = time.time()
    stamp = TimeStamp(*(time.gmtime(now)[:5] + (now % 60,)))
    return stamp.laterThan(TimeStamp(last)).raw()


def tid_time(tid):
    """The UTC epoch seconds a tid stands for."""
    return TimeStamp(tid).timeTime()


def time_tid(seconds):
    """The smallest tid at or after UTC epoch ``seconds``."""
    return TimeStamp(*(time.gmtime(seconds)[:5] + (seconds % 60,))).raw()


def _to_bytes(value):
    if value is None:
        return b''
    if isinstance(value, str):
        return value.encode('utf-8')
    return bytes(value)


class TransactionMeta:
    """Metadata of one committed transaction, as storages keep it.

    ``user`` and ``description`` are bytes, ``extension`` a dict; the
    attribute names are those of ZODB's ``IStorageTransactionMetaData``.
    """

    __slots__ = ('tid', 'status', 'user', 'description', 'extension_bytes')

    def __init__(self, tid, user=b'', description=b'', extension_bytes=b'',
                 status=' '):
        self.tid = tid
        self.status = status
        self.user = user
        self.description = description
        self.extension_bytes = extension_bytes

    @classmethod
    def from_transaction(cls, transaction, tid, status=' '):
        """Read user, description and extension off a transaction object.

        Accepts ``transaction.Transaction`` (str fields) and ZODB's
        ``TransactionMetaData`` (bytes fields, ``extension_bytes``).
        """
        ext_bytes = getattr(transaction, 'extension_bytes', None)
        if ext_bytes is None:
            ext = getattr(transaction, 'extension', None)
            if ext is None:
                ext = getattr(transaction, '_extension', None)
            ext_bytes = pack_extension(ext)
        return cls(tid, _to_bytes(getattr(transaction, 'user', b'')),
                   _to_bytes(getattr(transaction, 'description', b'')),
                   bytes(ext_bytes), status)

    @property
    def extension(self):
        return unpack_extension(self.extension_bytes)

    @extension.setter
    def extension(self, value):
        # Setting an equal extension keeps the stored bytes, as ZODB's
        # FileStorage does; only a real change re-pickles.
        if value != self.extension:
            self.extension_bytes = pack_extension(value)

    def info(self, **extra):
        """The dict ``history`` and ``undoLog`` report for this transaction."""
        d = dict(self.extension)
        d.update(time=tid_time(self.tid), tid=self.tid,
                 user_name=self.user, description=self.description)
        d.update(extra)
        return d


class DataRecord:
    """One object revision in an iteration (ZODB's IStorageRecordInformation)."""

    __slots__ = ('oid', 'tid', 'data', 'data_txn')
    version = ''

    def __init__(self, oid, tid, data, data_txn=None):
        self.oid = oid
        self.tid = tid
        self.data = data
        self.data_txn = data_txn


class TransactionRecord(TransactionMeta):
    """A transaction in an iteration: its metadata and its data records.

    Iterating it yields :class:`DataRecord` objects, in store order.
    """

    __slots__ = ('_records',)

    def __init__(self, meta, records):
        super().__init__(meta.tid, meta.user, meta.description,
                         meta.extension_bytes, meta.status)
        self._records = records

    def __iter__(self):
        return iter(self._records)

    def __repr__(self):
        return '<TransactionRecord %s>' % errors.oid_repr(self.tid)


def select_undo_log(descriptions, first, last, filter=None):
    """Slice an iterable of undo descriptions, newest first, as ``undoLog`` does."""
    if last < 0:
        last = first - last
    out = []
    index = 0
    for desc in descriptions:
        if filter is not None and not filter(desc):
            continue
        if index >= last:
            break
        if index >= first:
            out.append(desc)
        index += 1
    return out


def specification_filter(specification):
    """The ``undoLog`` filter ``undoInfo(specification=…)`` stands for."""
    if not specification:
        return None

    def matches(desc):
        return all(desc.get(k) == v for k, v in specification.items())
    return matches


#: The class of ZODB's blob records (``ZODB.blob.Blob``): their data lives
#: in files beside the storage, which objstore cannot copy.
BLOB_CLASS = 'ZODB.blob.Blob'


def is_blob_record(data):
    """Whether ``data`` is a record of ZODB's ``Blob`` class (decided from
    its class pickle, as ``ZODB.blob.is_blob_record`` does, without ZODB)."""
    return bool(data) and b'ZODB.blob' in data and (
        class_name_of(data) == BLOB_CLASS)


def _close(iterator):
    close = getattr(iterator, 'close', None)
    if close is not None:
        close()


def copy_transactions(source, destination):
    """Copy every transaction of ``source`` into ``destination`` (what
    ``IStorageRestoreable.copyTransactionsFrom`` does for both storages).

    Each transaction keeps its tid, status, user, description, extension
    bytes and records (``restore`` with their ``data_txn``) and commits on
    its own. Raises ``errors.Unsupported`` naming the first blob record's
    oid and tid before copying anything: the source is read through once
    first, so a refused source leaves ``destination`` unchanged.
    """
    iterator = source.iterator()
    try:
        for txn in iterator:
            for record in txn:
                if is_blob_record(record.data):
                    raise errors.Unsupported(
                        'cannot copy %s: object %s has a blob record in'
                        ' transaction %s, and objstore does not store blobs'
                        % (getattr(source, 'getName', lambda: source)(),
                           errors.oid_repr(record.oid),
                           errors.oid_repr(txn.tid)))
    finally:
        _close(iterator)
    iterator = source.iterator()
    try:
        for txn in iterator:
            meta = TransactionMeta.from_transaction(
                txn, txn.tid, getattr(txn, 'status', ' '))
            destination.tpc_begin(meta, txn.tid, meta.status)
            try:
                for record in txn:
                    destination.restore(record.oid, record.tid, record.data,
                                        '', record.data_txn, meta)
                destination.tpc_vote(meta)
                destination.tpc_finish(meta)
            except BaseException:
                destination.tpc_abort(meta)
                raise
    finally:
        _close(iterator)


class BaseStorage:
    """Two-phase commit bookkeeping shared by objstore storages.

    One transaction commits at a time: ``tpc_begin`` takes the commit lock
    (blocking while another transaction holds it) and ``tpc_finish`` or
    ``tpc_abort`` releases it. ``self._lock`` guards the storage's in-memory
    state for readers; it is never held while waiting for the commit lock.
    """

    def __init__(self, name, read_only=False):
        self.__name__ = name
        self._read_only = bool(read_only)
        self._lock = threading.RLock()
        self._commit_lock = threading.Lock()
        self._transaction = None
        self._tid = None
        self._meta = None
        self._ltid = z64
        self._oid = 0
        self._closed = False
        self._db = None

    # -- helpers for subclasses -------------------------------------------

    def _check_open(self):
        if self._closed:
            raise errors.StorageClosedError(
                'storage %s is closed' % self.__name__)

    def _check_writable(self):
        self._check_open()
        if self._read_only:
            raise errors.ReadOnlyError(
                'storage %s is read-only' % self.__name__)

    def _check_transaction(self, transaction):
        if transaction is not self._transaction:
            raise errors.StorageTransactionError(
                'transaction %r is not the one committing in %s'
                % (transaction, self.__name__))

    def _note_oid(self, oid):
        """Make sure ``new_oid`` never hands out ``oid`` (restore, store)."""
        n = u64(oid)
        if n > self._oid:
            self._oid = n

    # -- IStorage ---------------------------------------------------------

    def getName(self):
        return self.__name__

    def sortKey(self):
        # ZODB's protocol name; unique enough per storage name.
        self._check_open()
        return self.__name__

    def isReadOnly(self):
        return self._read_only

    def registerDB(self, db):
        self._db = db

    def lastTransaction(self):
        with self._lock:
            self._check_open()
            return self._ltid

    def getTid(self, oid):  # ZODB's name, used by its tools and tests
        """The tid of the current revision of ``oid``; POSKeyError if none."""
        result = self.loadBefore(oid, maxtid)
        if result is None:
            raise errors.POSKeyError(oid)
        return result[1]

    def new_oid(self):
        if self._closed or self._read_only:
            self._check_writable()
        with self._lock:
            self._oid += 1
            return p64(self._oid)

    def tpc_begin(self, transaction, tid=None, status=' '):
        self._check_writable()
        if self._transaction is transaction:
            raise errors.StorageTransactionError(
                'duplicate tpc_begin for the same transaction')
        self._commit_lock.acquire()
        try:
            with self._lock:
                self._check_open()
                if tid is None:
                    tid = new_tid(self._ltid)
                elif tid <= self._ltid:
                    raise errors.StorageTransactionError(
                        'forced tid %s is not after the last transaction %s'
                        % (errors.oid_repr(tid), errors.oid_repr(self._ltid)))
                self._meta = TransactionMeta.from_transaction(
                    transaction, tid, status)
                self._tid = tid
                self._begin(tid, self._meta)
                self._transaction = transaction
        except BaseException:
            self._commit_lock.release()
            raise

    def tpc_vote(self, transaction):
        self._check_open()
        self._check_transaction(transaction)
        return self._vote(transaction)

    def tpc_finish(self, transaction, func=lambda tid: None):
        self._check_open()
        self._check_transaction(transaction)
        try:
            with self._lock:
                tid = self._tid
                self._finish(tid)
                # Invalidations go out (func) before lastTransaction reports
                # the tid: a reader that sees the new tid must also have been
                # told what it changed.
                try:
                    func(tid)
                finally:
                    self._ltid = tid
        finally:
            self._end_commit()
        return tid

    def tpc_abort(self, transaction):
        if transaction is not self._transaction:
            return
        try:
            with self._lock:
                self._abort()
        finally:
            self._end_commit()

    def _end_commit(self):
        self._transaction = None
        self._tid = None
        self._meta = None
        self._commit_lock.release()

    def copyTransactionsFrom(self, other):  # ZODB's protocol name
        """Copy every transaction of ``other``; see :func:`copy_transactions`."""
        copy_transactions(other, self)

    def sync(self, force=True):
        """Catch up with commits made elsewhere (nothing to do in-process)."""
        self._check_open()

    # -- hooks ------------------------------------------------------------

    def _begin(self, tid, meta):
        raise NotImplementedError

    def _vote(self, transaction):
        raise NotImplementedError

    def _finish(self, tid):
        raise NotImplementedError

    def _abort(self):
        raise NotImplementedError
