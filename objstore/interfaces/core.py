"""The core's contracts: the database and its connections."""
from zope.interface import Attribute
from zope.interface import Interface


class IDatabase(Interface):
    """An objstore database: one storage and a pool of connections.

    It registers an :class:`IStorageWrapper` with the storage, relays
    invalidations to its connections, and drives an :class:`IMVCCStorage`
    through one instance per connection. Method names are ZODB ``DB``'s.
    """

    def open(transaction_manager=None, at=None, before=None):
        """Return an :class:`IConnection` from the pool.

        ``transaction_manager`` defaults to ``transaction.manager``. With
        ``at`` or ``before`` (a tid, or a ``datetime``; at most one) the
        connection is read-only and shows the database as it was at that
        moment (time travel); ``HistoryUnavailable`` if the storage no
        longer holds it.
        """

    def close():
        """Close the connections and the storage; idempotent."""

    def pack(t=None, days=0):
        """Pack to ``t`` (default now) minus ``days`` days, with GC."""

    def history(oid, size=1):
        """Return :meth:`IStorage.history` of the storage."""

    def undo(id, txn=None):
        """Undo transaction ``id`` (from :meth:`undoLog`) as ``txn`` commits.

        ``txn`` defaults to the current transaction of
        ``transaction.manager``; its commit raises ``UndoError`` if the
        storage cannot undo ``id``.
        """

    def undoLog(first=0, last=-20, filter=None):
        """Return the storage's :meth:`IStorageUndoable.undoLog`."""

    def undoInfo(first=0, last=-20, specification=None):
        """Return the storage's :meth:`IStorageUndoable.undoInfo`."""

    def lastTransaction():
        """Return the tid of the last transaction committed to the storage."""

    def transaction(note=None):
        """Return a context manager around one transaction.

        Entering opens a connection with its own transaction manager (with
        ``note`` noted on the transaction) and returns it; leaving commits,
        or aborts if the block raised, and closes the connection.
        """


class IConnection(Interface):
    """A view of the database for one thread, one transaction at a time.

    A connection is the ``_p_jar`` of the objects it loads and a data
    manager of its transaction manager. During a transaction it shows one
    snapshot: the state as of the last commit before the transaction
    began, plus its own changes. It is not thread-safe.
    """

    transaction_manager = Attribute(
        "The transaction manager whose transactions this connection joins.")

    def root():
        """Return the root object, the persistent mapping at oid ``z64``."""

    def get(oid):
        """Return the object with ``oid`` (a ghost until used).

        The same object while it is cached. Raises ``POSKeyError`` if
        ``oid`` does not exist in this connection's snapshot.
        """

    def add(obj):
        """Give ``obj`` an oid and this jar now; it is stored at commit."""

    def close():
        """Return the connection to the pool; its objects are then unusable."""

    def cacheMinimize():
        """Turn every unmodified cached object into a ghost."""

    def db():
        """Return the :class:`IDatabase` this connection belongs to."""

    def readCurrent(obj):
        """Make this transaction's commit require ``obj`` to be current.

        For objects read to decide what to write elsewhere: the commit
        raises ``ReadConflictError`` if another transaction changed ``obj``
        since this connection loaded it.
        """

    def isReadOnly():
        """Return True for historical connections and on read-only storages."""
