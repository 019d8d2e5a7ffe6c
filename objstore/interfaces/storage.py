"""The storage protocol (ZODB's names and grouping); see :mod:`objstore.interfaces`."""
from zope.interface import Attribute
from zope.interface import Interface


# Method names below are ZODB's protocol names (camelCase included): ZODB
# calls them, so they cannot follow objstore's snake_case rule.


class IStorageWrapper(Interface):
    """What a storage may call on the object it was registered with.

    :meth:`IStorage.registerDB` hands it to the storage (usually it is the
    database), which reports through it the changes that did not go through
    its own ``tpc_finish``.
    """

    def invalidate(tid, oids):
        """Report that transaction ``tid`` changed the objects ``oids``.

        Called for transactions committed elsewhere (another process, or
        another instance on the same back end), never for one committed
        through this storage's own ``tpc_finish`` (its ``func`` argument
        serves that). Calls come in commit order, each with every oid the
        transaction created or changed, and the call for ``tid`` returns
        before ``lastTransaction()`` reports ``tid`` or a later tid.
        """

    def invalidateCache():
        """Drop every cached object state.

        Called instead of :meth:`invalidate` when the storage cannot list
        what changed (say, after a pack replaced a file under a reader).
        """

    def references(record, oids=None):
        """Return the oids ``record`` refers to strongly.

        Appends to ``oids`` and returns it when given, else a new list.
        """


class IStorage(Interface):
    """Keeps the revisions of objects, written by atomic transactions.

    Transaction ids: every committed transaction gets a tid strictly greater
    than every earlier tid of the same storage, whether the storage chose
    it or was given it (:class:`IStorageRestoreable`). Tids map to UTC
    times, so the tid order is also the commit-time order.

    Ordering: results about an object or about the whole database never go
    back in time. If one call returns tid T1 and a later call returns T2
    for the same object (``loadBefore`` with ``maxtid``, ``history``) or
    for the database (``lastTransaction``), then T2 >= T1.
    ``lastTransaction()`` reports a tid only after that transaction is
    fully readable and after the ``func`` given to its ``tpc_finish`` has
    returned, so a reader that saw T in ``lastTransaction`` can read the
    database as of T (``loadBefore`` with the tid just after T) and has
    received every invalidation for T already.

    Two-phase commit, one transaction at a time per storage::

        idle   --tpc_begin-->  begun
        begun  --store, restore, undo, deleteObject,
                 checkCurrentSerialInTransaction...-->  begun
        begun  --tpc_vote-->   voted
        voted  --tpc_finish--> idle    (committed: visible and durable)
        begun, voted  --tpc_abort-->  idle    (discarded)

    ``tpc_begin`` blocks while another transaction is between its
    ``tpc_begin`` and its ``tpc_finish``/``tpc_abort``. Every other
    two-phase call made with a transaction object that is not the one in
    progress raises ``StorageTransactionError``, except ``tpc_abort``,
    which then does nothing.

    Atomicity and isolation: a transaction becomes visible to every reader
    (loads, history, iteration, ``lastTransaction``) all at once in
    ``tpc_finish``, or never; until then reads see the database without it.
    No failed call and no crash leaves part of a transaction visible.

    What never fails: ``tpc_abort`` never raises. Once ``tpc_vote``
    returned, ``tpc_finish`` must succeed: every check that can fail
    (conflicts, size limits, space, read-only) belongs to ``store`` or
    ``tpc_vote``. An I/O error inside ``tpc_finish`` is unrecoverable; the
    storage then closes itself rather than show a partial transaction.

    Durability differs between storages: each storage class's docstring
    states, in ACID terms, what is on stable storage when ``tpc_finish``
    returns and what a crash of the process or of the machine can lose.

    Current data is read with ``loadBefore(oid, maxtid)`` (``load`` is
    :class:`IMVCCStorage`'s, as in ZODB).

    A read-only storage (``isReadOnly()`` true) raises ``ReadOnlyError``
    from ``new_oid``, ``tpc_begin`` and ``pack``. A closed storage raises
    ``StorageClosedError`` from every method but ``close``, ``tpc_abort``
    and the ones that only describe it (``getName``, ``isReadOnly``,
    ``supportsUndo``), which callers use in messages after a close.
    """

    def getName():
        """Return a name for the storage (a path, a URL...), for people."""

    def sortKey():
        """Return a string that orders storages in a multi-storage commit.

        Two-phase-commit calls reach the storages of one transaction in
        sort-key order. Stable while open; unique among the storages a
        process uses together.
        """

    def getSize():
        """Return the approximate size of the database in bytes."""

    def __len__():
        """Return the approximate number of objects (for people)."""

    def loadBefore(oid, tid):
        """Return the revision of ``oid`` current just before ``tid``.

        The result is ``(data, start_tid, end_tid)``: the revision with the
        greatest serial ``start_tid < tid``, and ``end_tid``, the serial of
        the next revision (``>= tid``), or None if this one is still
        current. ``loadBefore(oid, maxtid)`` reads current data.

        Returns None when the storage knows ``oid`` but holds no revision
        before ``tid`` (it was created at or after ``tid``, or pack removed
        the revisions before it). Raises ``POSKeyError`` when the storage
        holds no revision of ``oid`` at all, or when the revision found is
        a deletion record.
        """

    def loadSerial(oid, serial):
        """Return the data of the revision of ``oid`` written by ``serial``.

        Raises ``POSKeyError`` if there is no such revision (never written,
        removed by pack, or a deletion record).
        """

    def new_oid():
        """Return a new oid, never returned before by this storage.

        Never ``z64`` and never the oid of a stored record, also after a
        reopen: storing or restoring an explicit oid moves the counter past
        it. The oid stays reserved even if nothing is stored under it.
        """

    def tpc_begin(transaction, tid=None):
        """Start committing ``transaction``; see the state machine above.

        The storage keeps the ``user``, ``description`` and extension of
        ``transaction`` (a ``transaction.Transaction`` or ZODB's
        ``TransactionMetaData``). Blocks while another transaction commits;
        ``StorageTransactionError`` if this one is already in progress.
        A given ``tid`` (restore, copy) is used instead of a fresh one and
        must be greater than ``lastTransaction()``, else
        ``StorageTransactionError``.
        """

    def store(oid, serial, data, version, transaction):
        """Write ``data`` as the new revision of ``oid`` in ``transaction``.

        ``serial`` is the serial the caller's copy was loaded from (``z64``
        for an object new in this transaction). ``version`` must be ``''``
        (ZODB's retired versions). If ``oid`` is stored twice in one
        transaction, the last store wins. Returns None.

        If ``serial`` is not the committed serial of ``oid``, the storage
        calls ``objstore.conflict.resolve``; on success it stores the
        resolved record and reports ``oid`` from ``tpc_vote``, otherwise it
        raises ``ConflictError`` (here or from ``tpc_vote``).
        """

    def tpc_vote(transaction):
        """Check that ``transaction`` can commit, and prepare it.

        Raises (``ConflictError``, ``StorageError``...) to veto it; the
        caller then calls ``tpc_abort``. Returns None or a sequence of the
        oids whose conflicts were resolved: their stored data differs from
        what the caller sent, so the caller must reload them.
        """

    def tpc_finish(transaction, func=lambda tid: None):
        """Commit ``transaction`` and return its tid.

        Calls ``func(tid)`` once, with the commit lock held (so before any
        other transaction can begin) and before ``lastTransaction()``
        reports ``tid``; callers send their invalidations from ``func``.
        On return the transaction is as durable as the storage's docstring
        says. Must not fail after a successful ``tpc_vote``.
        """

    def tpc_abort(transaction):
        """Discard ``transaction`` and let the next one begin.

        Allowed at any point, even after ``tpc_vote``; does nothing if
        ``transaction`` is not the one in progress. Never raises.
        """

    def history(oid, size=1):
        """Return up to ``size`` revisions of ``oid``, newest first.

        Each is a dict with ``time`` (UTC epoch seconds), ``tid`` and its
        alias ``serial``, ``user_name`` and ``description`` (bytes),
        ``size`` (bytes of data), plus the transaction's extension items
        whose keys do not clash with those. Raises ``POSKeyError`` for an
        oid the storage holds no revision of.
        """

    def lastTransaction():
        """Return the tid of the last committed transaction, or ``z64``.

        Never decreases; reports a tid only once that transaction is
        readable and its ``tpc_finish`` callback has returned.
        """

    def isReadOnly():
        """Return True if the storage refuses to commit; never changes."""

    def pack(t, referencesf, gc=True):
        """Discard history older than ``t`` (UTC epoch seconds).

        Keeps, for each object, the revision current at ``t`` and every
        later one; earlier revisions go. With ``gc`` true, also removes
        every object not reachable, through ``referencesf`` applied
        transitively, from the root's state at ``t`` or from a revision
        committed after ``t``; an object whose revision current at ``t`` is
        a deletion record goes as well. ``referencesf(data, oids=None)``
        is the only way the storage reads references
        (``objstore.serialize.references`` for ZODB's format).

        Invariants: every object reachable from the root as of any tid
        after ``t`` reads the same before and after; transactions after
        ``t`` are untouched. Pack may run while others commit and read.
        """

    def registerDB(wrapper):
        """Keep ``wrapper`` (an :class:`IStorageWrapper`) for upcalls."""

    def close():
        """Release the storage's resources; calling it again does nothing.

        A transaction in progress is discarded. Afterwards the other
        methods raise ``StorageClosedError`` (``tpc_abort`` does nothing).
        """


class IMVCCStorage(IStorage):
    """A storage whose instances each read their own snapshot.

    The storage provides isolation itself, as a relational database does.
    The database calls ``new_instance()`` per connection,
    ``poll_invalidations()`` at each transaction start (instead of being
    told through :meth:`IStorageWrapper.invalidate`) and ``release()``
    when the connection goes. An instance's reads (``load``,
    ``loadBefore``, ``loadSerial``, ``history``) see the snapshot taken at
    its last ``poll_invalidations`` or ``sync``.
    """

    def new_instance():
        """Return another instance of the back end, with its own snapshot."""

    def release():
        """Free what this instance holds; it is not used again."""

    def poll_invalidations():
        """Move the snapshot to the newest commit; report what changed.

        Returns the oids created or changed by other instances' commits
        since the previous poll, or None when they can no longer be listed
        (the caller must then drop its whole cache).
        """

    def sync(force=True):
        """Let the instance catch up with commits made elsewhere.

        The snapshot itself moves only at :meth:`poll_invalidations`, which
        also reports what changed (moving it silently would mix new states
        with stale cached ones). With ``force`` false the work may be left
        to the next poll.
        """

    def load(oid):
        """Return ``(data, serial)`` of ``oid`` in this instance's snapshot.

        Raises ``POSKeyError`` if ``oid`` has no current revision there.
        """


class IStorageRecordInformation(Interface):
    """One object revision, as :meth:`IStorageIteration.iterator` yields it."""

    oid = Attribute("The object's oid (8 bytes).")
    tid = Attribute("The tid of the transaction that wrote the revision.")
    data = Attribute("The record bytes, or None for a deletion record.")
    data_txn = Attribute(
        "The tid of an earlier transaction whose record for this oid holds"
        " the same data (written by undo or restore), or None.")


class IStorageTransactionInformation(Interface):
    """One committed transaction, with the metadata its ``tpc_begin`` got."""

    tid = Attribute("The transaction's tid.")
    status = Attribute(
        "One character: ' ' for a committed transaction, 'p' for one a"
        " pack has thinned (ZODB's FileStorage convention).")
    user = Attribute("The user name, bytes (as in ZODB's storage layer).")
    description = Attribute("The description, bytes.")
    extension = Attribute("The extension items, a dict.")
    extension_bytes = Attribute(
        "The extension as stored (a pickled dict), bytes; copied verbatim"
        " when transactions are restored elsewhere.")

    def __iter__():
        """Iterate over the transaction's :class:`IStorageRecordInformation`.

        Each oid appears once, in the order it was stored.
        """


class IStorageIteration(Interface):
    """Reading the stored transactions in commit order.

    As in ZODB it does not extend :class:`IStorage`: readers of a storage's
    files can provide it alone.
    """

    def iterator(start=None, stop=None):
        """Iterate over :class:`IStorageTransactionInformation`, oldest first.

        Yields the transactions with ``start <= tid <= stop`` (None: no
        bound) committed when the iterator was created. Callers that stop
        early call its ``close()`` if it has one.
        """


class IStorageUndoable(IStorage):
    """Undo: committing a transaction that reverts an earlier one.

    Undo never rewrites history: in a new transaction it writes each object
    of the undone one back to its revision before it (a deletion record for
    objects it created). Transactions before the last pack time are no
    longer undoable.
    """

    def supportsUndo():
        """Return True."""

    def undo(transaction_id, transaction):
        """Revert the transaction ``transaction_id`` inside ``transaction``.

        Called between ``tpc_begin`` and ``tpc_vote``; ``transaction_id``
        is an ``id`` from :meth:`undoLog`, not necessarily a tid. An object
        changed after the undone transaction is reverted only if the change
        left the same state or ``objstore.conflict`` merges the two;
        otherwise ``UndoError`` (``MultipleUndoErrors`` for several
        objects) and nothing is written.

        Returns ``(tid_or_None, oids)``; callers use only ``oids``, the
        objects the undo writes, to invalidate their caches.
        """

    def undoLog(first, last, filter=None):
        """Return descriptions of undoable transactions, newest first.

        Each is a dict with ``id`` (bytes, for :meth:`undo`), ``time``
        (UTC epoch seconds), ``user_name`` and ``description`` (bytes),
        plus the transaction's extension items; ``filter(description)``,
        when given, keeps those for which it is true. The result is the
        slice from index ``first``: up to ``last`` if ``last >= 0``, else
        ``-last`` items.
        """

    def undoInfo(first=0, last=-20, specification=None):
        """Like :meth:`undoLog`, filtered by a dict instead of a function.

        A transaction matches when its description has every key of
        ``specification`` with the same value.
        """


class IStorageRestoreable(IStorage):
    """Writing transactions already committed elsewhere (copy, replication).

    A restored transaction keeps its tid and metadata; its records skip
    conflict checks, since they were checked when first committed.
    """

    def tpc_begin(transaction, tid=None):
        """Start a transaction, with the given ``tid`` when not None.

        As :meth:`IStorage.tpc_begin`; a forced ``tid`` must be greater than
        ``lastTransaction()``.
        """

    def restore(oid, serial, data, version, prev_txn, transaction):
        """Write a committed revision of ``oid`` into ``transaction``.

        ``serial`` is the tid that first committed it (the tid given to
        ``tpc_begin``); ``data`` is the record or None for a deletion
        record; ``version`` must be ``''``; ``prev_txn`` is the tid of a
        transaction holding the same data for ``oid`` (a hint the storage
        may use to share it, or ignore). No conflict check or resolution
        happens. ``new_oid`` will never return ``oid`` afterwards. Returns
        None.
        """

    def copyTransactionsFrom(other):
        """Copy every transaction of ``other`` (an :class:`IStorageIteration`).

        In order, with their tids, metadata (``extension_bytes`` verbatim)
        and records, each committed atomically (``tpc_begin(txn, tid)``,
        ``restore``..., ``tpc_vote``, ``tpc_finish``). Every copied tid must
        exceed ``lastTransaction()``. A failure leaves a prefix copied. A
        source holding ZODB blob records is refused (``Unsupported``,
        naming the first one's oid and tid) before anything is copied.
        """


class IStorageCurrentRecordIteration(IStorage):
    """Walking the current revision of every object, by oid."""

    def record_iternext(next=None):
        """Return ``(oid, tid, data, next)`` for one object's current record.

        Start with ``next=None``, pass back the ``next`` returned until it
        is None. Increasing oid order; deleted objects are skipped. The
        storage must hold at least one object.
        """


# ZODB names this interface without the I prefix; the name is part of the
# protocol (ZODB code refers to it), so objstore keeps it.
class ReadVerifyingStorage(IStorage):
    """Checking, at commit, that objects read are still current."""

    def checkCurrentSerialInTransaction(oid, serial, transaction):
        """Require that ``serial`` is the committed serial of ``oid``.

        Called between ``tpc_begin`` and ``tpc_vote`` for objects the
        transaction read but did not change. Raises ``ReadConflictError``
        if ``serial`` is not current, here or at the latest from
        ``store`` or ``tpc_vote``; if the transaction votes successfully,
        ``serial`` stays current until ``tpc_finish``.
        """


class IExternalGC(IStorage):
    """Deleting objects a collector outside the storage found unreachable."""

    def deleteObject(oid, serial, transaction):
        """Write a deletion record for ``oid`` in ``transaction``.

        Called between ``tpc_begin`` and ``tpc_vote``. ``serial`` must be
        the committed serial of ``oid`` (``ConflictError`` otherwise, with
        no resolution); ``POSKeyError`` if ``oid`` has no current revision.
        After the commit, current loads of ``oid`` raise ``POSKeyError``
        while earlier revisions stay readable; a pack past the deletion
        removes the object.
        """


class IHistoryWindow(Interface):
    """How far back a storage can show the whole database (an objstore
    extension; ZODB has no such method).

    The database checks it before opening a connection at a past moment
    and refuses moments older than it (``HistoryUnavailable``) instead of
    showing a state that pack has partly forgotten.
    """

    def history_start():
        """Return the oldest tid whose whole database state is still shown.

        ``z64`` while the storage has never lost history. After a pack,
        the newest transaction the pack marked ``'p'`` (the state the pack
        kept): for every ``before > history_start()``, ``loadBefore(oid,
        before)`` returns what it returned before the pack for every
        object reachable from the root at ``before`` (garbage the pack
        collected is gone). Never decreases while the storage is open;
        survives a reopen of a storage that keeps its data, and a copy
        (``copyTransactionsFrom`` keeps the ``'p'`` statuses).
        """
