"""The exceptions objstore raises.

Every error objstore raises on purpose is an :class:`ObjstoreError`. Where ZODB
has an exception of the same meaning, ours has the same name and the same
extra base classes (``POSKeyError`` is a ``KeyError``, ``ConflictError`` is a
``transaction.interfaces.TransientError`` so transaction managers retry it).
``objstore.zodb`` maps them to ZODB's own classes for code that catches those.
"""
from binascii import hexlify

from transaction.interfaces import TransientError


def oid_repr(oid):
    """An 8-byte oid or tid as ZODB prints it (``0x2a``); anything else as repr."""
    if isinstance(oid, bytes) and len(oid) == 8:
        text = hexlify(oid).lstrip(b'0').decode('ascii')
        if len(text) % 2:
            text = '0' + text
        return '0x' + (text or '00')
    return repr(oid)


class ObjstoreError(Exception):
    """Root of every exception objstore raises on purpose."""


class StorageError(ObjstoreError):
    """A storage could not do what was asked."""


class StorageClosedError(StorageError):
    """The storage (or connection) was used after it was closed."""


class ReadOnlyError(StorageError):
    """A write was attempted on a read-only storage or connection."""


class StorageTransactionError(StorageError):
    """A two-phase-commit call did not match the transaction in progress."""


class TransactionTooLargeError(StorageTransactionError):
    """Transaction metadata or a record exceeds what the format can hold."""


class POSKeyError(StorageError, KeyError):
    """No record for this oid (or this oid and serial) exists in the storage.

    ``args[0]`` is the oid (as in ZODB). ``referenced_by``, when the load
    came through a reference, describes the object holding that reference
    (its oid and class); the connection fills it in.
    """

    referenced_by = None

    def __str__(self):
        if not self.args:
            return 'POSKeyError'
        text = oid_repr(self.args[0])
        if self.referenced_by:
            text += ' (referenced by %s)' % self.referenced_by
        return text


class ConflictError(StorageError, TransientError):
    """Two transactions changed the same object; the later one must retry.

    Attributes: ``oid``, ``class_name``, ``serials`` (committed serial, the
    serial the failed transaction started from).
    """

    def __init__(self, message=None, oid=None, serials=None, class_name=None,
                 data=None):
        self.message = message or 'database conflict error'
        self.oid = oid
        self.serials = serials
        if class_name is None and data is not None:
            from objstore.serialize import class_name_of
            class_name = class_name_of(data)
        self.class_name = class_name
        super().__init__(self.message, oid, serials, class_name)

    def __str__(self):
        extras = []
        if self.oid is not None:
            extras.append('oid %s' % oid_repr(self.oid))
        if self.class_name:
            extras.append('class %s' % self.class_name)
        if self.serials:
            current, old = self.serials
            extras.append('serial this txn started with %s' % oid_repr(old))
            extras.append('serial currently committed %s' % oid_repr(current))
        if extras:
            return '%s (%s)' % (self.message, ', '.join(extras))
        return self.message

    # ZODB's ConflictError accessors, kept because Zope code calls them.
    def get_oid(self):
        return self.oid

    def get_class_name(self):
        return self.class_name

    def get_serials(self):
        return self.serials


class ReadConflictError(ConflictError):
    """An object read in this transaction changed before it committed."""

    def __init__(self, message=None, oid=None, serials=None, class_name=None,
                 data=None):
        super().__init__(message or 'database read conflict error', oid,
                         serials, class_name, data)


class UndoError(StorageError):
    """A transaction could not be undone."""

    def __init__(self, reason, oid=None):
        self.reason = reason
        self.oid = oid
        super().__init__(reason, oid)

    def __str__(self):
        if self.oid is None:
            return 'Undo error: %s' % self.reason
        return 'Undo error %s: %s' % (oid_repr(self.oid), self.reason)


class MultipleUndoErrors(UndoError):
    """Several objects of one transaction could not be undone."""

    def __init__(self, errs):
        self.errors = list(errs)
        super().__init__('; '.join(
            '%s: %s' % (oid_repr(e.oid), e.reason)
            if isinstance(e, UndoError) and e.oid is not None else str(e)
            for e in self.errors))


class HistoryUnavailable(StorageError):
    """The storage no longer holds the requested past moment.

    ``oldest`` is the oldest tid the storage can still show (or None).
    """

    def __init__(self, message, oldest=None):
        self.oldest = oldest
        super().__init__(message)


class StorageLockedError(StorageError):
    """Another process holds the storage's writer lock."""


class FileFormatError(StorageError):
    """A file is not an objstore file, or not one this version can read."""

    def __init__(self, path, found):
        self.path = path
        self.found = found
        super().__init__('%s: %s' % (path, found))


class UnsupportedVersionError(FileFormatError):
    """The file was written by a newer format version."""


class CorruptionError(StorageError):
    """Stored bytes fail their checksum or are structurally impossible.

    ``path`` and ``offset`` locate the damage; ``tid``/``oid`` name the
    transaction or object when they could still be read.
    """

    def __init__(self, path, offset, problem, tid=None, oid=None):
        self.path = path
        self.offset = offset
        self.problem = problem
        self.tid = tid
        self.oid = oid
        where = '%s at offset %d' % (path, offset)
        if tid is not None:
            where += ', tid %s' % oid_repr(tid)
        if oid is not None:
            where += ', oid %s' % oid_repr(oid)
        super().__init__('%s: %s' % (where, problem))


class SerializationError(ObjstoreError):
    """A record could not be pickled or unpickled in ZODB's record format."""


class Unsupported(ObjstoreError):
    """The data uses a feature objstore does not support yet (say, blobs).

    Raised before anything is written, so nothing is half-done.
    """


class ConnectionStateError(ObjstoreError):
    """A connection or database was used in a state that forbids it: after
    ``close()``, or closed while it still has changes to commit."""


class ReadOnlyHistoryError(ReadOnlyError):
    """A write through a historical connection (``db.open(at=...)``)."""


class InvalidObjectReference(SerializationError):
    """A stored object refers to an object it may not: one that belongs to
    another database or connection, or one that cannot be stored."""


class URIError(ObjstoreError, ValueError):
    """A URI or an option of ``objstore.open`` is malformed or not supported.

    The message names the parameter (when there is one) and the URI.
    """


class BrokenModified(ObjstoreError, TypeError):
    """A broken object (its class can no longer be imported) was changed or
    pickled outside its database.

    A ``TypeError`` as in ZODB, so code catching ZODB's error still works.
    """


class InvalidArgumentError(ObjstoreError, ValueError):
    """A call got an argument it cannot use; the message says which and why."""


class ImmutableError(ObjstoreError, AttributeError):
    """A write to an immutable that is not transient, or update() of a slave.

    An ``AttributeError``, the type shoobx.immutable raises for these.
    """


class ImmutableStateError(ObjstoreError, RuntimeError):
    """An immutable was asked for a state change its state forbids
    (finalizing a locked one, unlocking, updating an outdated revision).

    A ``RuntimeError``, the type shoobx.immutable raises when finalizing.
    """


class PoolFullError(StorageTransactionError):
    """A storage opened with ``grow=False`` has no room for a transaction;
    the transaction is aborted and nothing of it is written."""


class TransactionError(ObjstoreError):
    """An operation that must run inside a transaction ran outside one (or
    the reverse), e.g. allocating raw pool memory outside
    ``pool.transaction()``."""


class DisconnectedError(StorageError, TransientError):
    """A storage lost its connection to a server (killed session, restart,
    network). Transient: nothing of the failed transaction was committed,
    so ``transaction.manager.attempts()`` retries it; the storage
    reconnects on its next use."""
