"""The pool's contracts: pmemobj's object pool, memory manager and objects.

Kept here, next to their only implementation, until they join
:mod:`objstore.interfaces` (which re-exports nothing from objstore).
Names and signatures are pmemobj's; where objstore differs, the docstring
says so.
"""
from zope.interface import Attribute
from zope.interface import Interface


class IPersistentObjectPool(Interface):
    """One file holding a graph of objects under :attr:`root`.

    Every change to a pool object is atomic and durable: alone, outside a
    transaction (each change commits as it is made), or together with the
    other changes of a :meth:`transaction` block. Changes run on the
    pool's own ``transaction.TransactionManager``, never the thread's.
    """

    filename = Attribute('The path the pool was opened with.')
    debug = Attribute('The default of gc(debug=...).')
    mm = Attribute('The IMemoryManager of this pool.')
    recovered = Attribute(
        'True when this open found the pool not closed cleanly, and so ran'
        ' gc() before returning.')
    root = Attribute(
        'The root value: None at first; any value the pool can store.'
        ' Only what the root reaches (plus pinned objects and allocated'
        ' memory blocks) survives gc().')

    def new(typ, *args, **kw):
        """Return a new ``typ(*args, **kw)`` kept in this pool; ``typ`` is
        a pool type (an :class:`IPoolPersistent` class).

        Its ``_v__init__`` runs before its ``__init__``; creation is one
        atomic change. Unreachable from the root, it is an orphan that the
        next gc() frees.
        """

    def transaction():
        """Return a context manager: the block's changes to pool objects
        (and the root, and memory blocks) commit together when it ends,
        or none of them if it raises (the exception propagates) or the
        process dies inside it. Nested blocks join the outermost one;
        an exception leaving a nested block rolls back the whole
        transaction at once, and the outer block then ends with
        ``TransactionError`` unless it raises its own exception."""

    def gc(debug=None):
        """Free what the root does not reach; with ``debug`` (default: the
        pool's) log each object freed and return ``(type_counts,
        gc_counts)``; without it return None."""

    def persist_via_pickle(*types):
        """Let instances of exactly these (immutable, non-container) types
        be stored in pool objects."""

    def close():
        """gc(), mark the pool cleanly closed, close the file. Idempotent."""


class IMemoryManager(Interface):
    """The memory of one pool: raw byte blocks and object references.

    An *oid* is a ``(pool_id, number)`` tuple (:meth:`otuple` also takes
    the 8-byte ``_p_oid`` of a pool object); ``OID_NULL`` is ``(0, 0)``.
    Methods that change memory are atomic: outside a transaction each is
    its own; ``alloc``, ``zalloc``, ``realloc``, ``zrealloc`` and ``free``
    raise ``TransactionError`` outside one.
    """

    def transaction():
        """The pool's :meth:`IPersistentObjectPool.transaction`."""

    def new(typ, *args, **kw):
        """The pool's :meth:`IPersistentObjectPool.new`."""

    def otuple(oid):
        """``oid`` in tuple form."""

    def alloc(size, type_num=20):
        """A new block of ``size`` zero bytes (``OID_NULL`` for size 0).
        A block of type ``POBJECT_TYPE_NUM`` (20, pmemobj's) that nothing
        counted (:meth:`incref`) is freed by gc; other types live until
        :meth:`free`."""

    def zalloc(size, type_num=20):
        """Same as :meth:`alloc` (Python memory always starts zeroed)."""

    def realloc(oid, size, type_num=None):
        """A new block holding the first ``size`` bytes of ``oid``'s
        (zero-filled past its end); ``oid`` is freed. ``type_num``, when
        given, must be the block's."""

    def zrealloc(oid, size, type_num=None):
        """Same as :meth:`realloc`."""

    def free(oid):
        """Release the block (or boxed value) ``oid``."""

    def incref(oid):
        """Add one to ``oid``'s reference count (no-op for OID_NULL)."""

    def decref(oid):
        """Subtract one; at zero a block is freed, a pool object unpinned."""

    def xdecref(oid):
        """:meth:`decref` unless ``oid`` is OID_NULL."""

    def persist(obj):
        """The oid of ``obj`` in the pool, storing it if needed."""

    def resurrect(oid):
        """The object (or value) stored at ``oid``."""

    def direct(oid):
        """A memoryview of the block's bytes: writable inside a
        transaction (a shadow copy that becomes the block at commit; the
        view is released when the transaction ends), read-only outside."""


class IPoolPersistent(Interface):
    """The protocol of objects kept in a pool (pmemobj's ``Persistent``).

    objstore's pool objects are ``persistent.Persistent`` objects of the
    pool's database; ``_p_oid`` is the database's 8-byte oid.
    """

    _p_mm = Attribute('The IMemoryManager of the pool holding the object,'
                      ' or None while it belongs to no pool.')
    _p_oid = Attribute('The object\'s 8-byte oid in the pool (None before).')

    def _p_new(manager):
        """Make the object one of ``manager``'s pool (called by new())."""

    def _p_traverse():
        """The oids (tuple form) of the pool objects this one refers to."""

    def _p_substructures():
        """The oids of memory blocks this object owns (none by default)."""
