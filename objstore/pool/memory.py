"""The memory manager: raw byte blocks, boxed values and oids of one pool.

pmemobj hands out raw persistent memory; objstore models it with objects
of the pool's database, so every rule of the database (atomic commits,
crash recovery, gc) covers it too:

- A *block* (:meth:`MemoryManager.alloc`) is a :class:`Block` object
  holding ``bytes``. :meth:`MemoryManager.direct` inside a transaction
  returns a memoryview of a *shadow*: a ``bytearray`` copy made at the
  first ``direct`` of that block in the transaction. The shadow becomes
  the block's bytes when the transaction commits; an abort or a crash
  simply forgets it, so the block keeps its old bytes. Every view handed
  out is released when the transaction ends (using it then raises
  ``ValueError``); a view derived from it (a slice, a numpy array) still
  points at the forgotten shadow, so writes through it are lost. Outside
  a transaction ``direct`` returns a read-only view of the committed
  bytes.
- A *boxed value* (:meth:`MemoryManager.persist` of a value that is not
  a pool object) is a :class:`Boxed` object holding the value.
- The pool header's ``blocks`` tree (an ``LOBTree``) lists every block
  and boxed value as ``number -> (object, type_num, refcount)``, plus the
  pool objects :meth:`MemoryManager.incref` pinned. It keeps them alive
  across gc: a block lives until it is freed; an entry of type
  ``POBJECT_TYPE_NUM`` whose count is 0 is an orphan that gc frees, as
  pmemobj's gc frees PObjects nothing counts; a pinned pool object
  survives gc while its count is above 0.

An oid is ``(pool_id, number)``: ``number`` is the object's database oid
as an integer, ``pool_id`` a random number of the pool, so an oid of
another pool is refused. ``OID_NULL`` is ``(0, 0)``.
"""
from persistent import Persistent
from zope.interface import implementer

from objstore import errors
from objstore.pool.base import PoolPersistent
from objstore.pool.interfaces import IMemoryManager
from objstore.storages.base import p64, u64

#: The null oid (pmemobj's).
OID_NULL = (0, 0)
#: The type number of blocks that are PObjects (pmemobj's value): gc frees
#: those whose reference count is 0.
POBJECT_TYPE_NUM = 20

_SCALARS = frozenset([type(None), bool, int, float, complex, str, bytes])


class Block(Persistent):
    """One raw memory block: ``data`` (bytes)."""

    def __init__(self, data):
        self.data = data


class Boxed(Persistent):
    """A value :meth:`MemoryManager.persist` stored: ``value``."""

    def __init__(self, value):
        self.value = value


@implementer(IMemoryManager)
class MemoryManager:
    """The memory of one pool (see the module docstring).

    Made by the pool; reach it as ``pool.mm`` or ``obj._p_mm``.
    """

    OID_NULL = OID_NULL

    def __init__(self, pool):
        self._pool = pool
        self._shadows = {}      # block number -> bytearray, this transaction
        self._views = []        # memoryviews handed out this transaction

    def __repr__(self):
        return '<MemoryManager of %r>' % (self._pool.filename,)

    def transaction(self):
        """The pool's transaction context manager."""
        return self._pool.transaction()

    def new(self, typ, *args, **kw):
        """A new pool object: ``pool.new(typ, *args, **kw)``."""
        return self._pool.new(typ, *args, **kw)

    # -- oids ----------------------------------------------------------------

    def otuple(self, oid):
        """``oid`` as a ``(pool_id, number)`` tuple: a tuple is returned as
        it is, an 8-byte database oid (``obj._p_oid``) converted."""
        if isinstance(oid, tuple):
            return oid
        if isinstance(oid, bytes) and len(oid) == 8:
            return (self._pool._pool_id, u64(oid))
        raise errors.InvalidArgumentError(
            'an oid is a (pool_id, number) tuple or an 8-byte _p_oid, not %r'
            % (oid,))

    def _number(self, oid):
        oid = self.otuple(oid)
        if (len(oid) != 2 or not all(type(part) is int for part in oid)
                or oid[0] != self._pool._pool_id or oid[1] <= 0):
            raise errors.InvalidArgumentError(
                '%r is not an oid of the pool %s' % (oid, self._pool.filename))
        return oid[1]

    def _entry(self, oid):
        """``(number, (object, type_num, count))`` of a listed oid."""
        number = self._number(oid)
        entry = self._pool._header.blocks.get(number)
        if entry is None:
            raise errors.InvalidArgumentError(
                'oid %r of the pool %s is no allocated block and no counted'
                ' object (never allocated or incref\'d, or freed since)'
                % (self.otuple(oid), self._pool.filename))
        return number, entry

    def _oid(self, obj):
        return (self._pool._pool_id, u64(obj._p_oid))

    # -- raw blocks ----------------------------------------------------------

    def alloc(self, size, type_num=POBJECT_TYPE_NUM):
        """A new block of ``size`` zero bytes; OID_NULL when size is 0.
        Raises TransactionError outside a transaction."""
        self._pool._require_transaction('alloc')
        _check_size(size)
        _check_type_num(type_num)
        if size == 0:
            return OID_NULL
        return self._new_block(bytes(size), type_num, 0)

    def zalloc(self, size, type_num=POBJECT_TYPE_NUM):
        """Same as :meth:`alloc`: Python memory always starts zeroed."""
        return self.alloc(size, type_num)

    def _new_block(self, data, type_num, count):
        block = Block(data)
        self._attach(block)
        self._pool._header.blocks[u64(block._p_oid)] = (block, type_num,
                                                        count)
        return self._oid(block)

    def realloc(self, oid, size, type_num=None):
        """A new block with ``oid``'s first ``size`` bytes (zero-filled
        past the old end), keeping its type and count; ``oid`` is freed.
        Size 0 frees ``oid`` and returns OID_NULL; OID_NULL as ``oid``
        allocates. Raises TransactionError outside a transaction."""
        self._pool._require_transaction('realloc')
        _check_size(size)
        if self.otuple(oid) == OID_NULL:
            return self.alloc(size, POBJECT_TYPE_NUM if type_num is None
                              else type_num)
        number, (block, old_type, count) = self._entry(oid)
        _check_block(block, oid, 'realloc')
        if type_num is not None and type_num != old_type:
            raise errors.InvalidArgumentError(
                'realloc of oid %r: type_num %r does not match the block\'s'
                ' %r' % (oid, type_num, old_type))
        if size == 0:
            self.free(oid)
            return OID_NULL
        data = bytes(self._shadows.get(number, block.data))
        data = data[:size] + bytes(max(0, size - len(data)))
        new_oid = self._new_block(data, old_type, count)
        self._release(number)
        return new_oid

    def zrealloc(self, oid, size, type_num=None):
        """Same as :meth:`realloc` (new bytes are zero either way)."""
        return self.realloc(oid, size, type_num)

    def free(self, oid):
        """Release the block or boxed value ``oid``; the database frees
        its record at the next gc. Raises TransactionError outside a
        transaction."""
        self._pool._require_transaction('free')
        number, (obj, type_num, count) = self._entry(oid)
        if isinstance(obj, PoolPersistent):
            raise errors.InvalidArgumentError(
                'oid %r is a pool object: gc frees it once nothing reaches'
                ' it; decref unpins it' % (oid,))
        self._release(number)

    def _release(self, number):
        del self._pool._header.blocks[number]
        self._shadows.pop(number, None)

    def direct(self, oid):
        """A memoryview of the block ``oid`` (see the module docstring):
        writable inside a transaction, read-only outside."""
        number, (block, type_num, count) = self._entry(oid)
        _check_block(block, oid, 'direct')
        if not self._pool._in_transaction():
            return memoryview(block.data)
        shadow = self._shadows.get(number)
        if shadow is None:
            shadow = self._shadows[number] = bytearray(block.data)
        view = memoryview(shadow)
        self._views.append(view)
        return view

    def _store_shadows(self):
        """Before a commit: each block's shadow becomes its bytes."""
        if not self._shadows:
            return
        blocks = self._pool._header.blocks
        for number, shadow in self._shadows.items():
            entry = blocks.get(number)
            if entry is not None and entry[0].data != shadow:
                entry[0].data = bytes(shadow)

    def _end_transaction(self):
        """After a commit or abort: forget shadows, release views."""
        self._shadows = {}
        views, self._views = self._views, []
        for view in views:
            try:
                view.release()
            except BufferError:
                # Something (a numpy array) still exports the view: it
                # keeps pointing at the forgotten shadow.
                pass

    # -- reference counts ------------------------------------------------------

    def incref(self, oid):
        """Add one to the count of a block, boxed value or pool object (a
        pool object with a count above 0 survives gc)."""
        if self.otuple(oid) == OID_NULL:
            return
        with self._pool._atomic():
            number = self._number(oid)
            blocks = self._pool._header.blocks
            entry = blocks.get(number)
            if entry is None:
                obj = self._pool_object(oid, 'incref')
                blocks[number] = (obj, POBJECT_TYPE_NUM, 1)
            else:
                blocks[number] = (entry[0], entry[1], entry[2] + 1)

    def decref(self, oid):
        """Subtract one from the count; at 0 a block or boxed value is
        freed, a pool object unpinned (gc frees it if nothing reaches it)."""
        with self._pool._atomic():
            number, (obj, type_num, count) = self._entry(oid)
            if count < 1:
                raise errors.InvalidArgumentError(
                    'decref of oid %r: its reference count is already 0'
                    % (oid,))
            if count == 1:
                self._release(number)
            else:
                self._pool._header.blocks[number] = (obj, type_num,
                                                     count - 1)

    def xdecref(self, oid):
        """:meth:`decref` unless ``oid`` is OID_NULL."""
        if self.otuple(oid) != OID_NULL:
            self.decref(oid)

    def _pool_object(self, oid, doing):
        number = self._number(oid)
        try:
            obj = self._pool._connection.get(p64(number))
        except KeyError:
            obj = None
        if not isinstance(obj, PoolPersistent):
            raise errors.InvalidArgumentError(
                'cannot %s oid %r: no pool object or allocated block has it'
                % (doing, oid))
        return obj

    # -- objects -------------------------------------------------------------

    def persist(self, obj):
        """The oid of ``obj``: a pool object's own (it joins the pool if it
        belongs to none), OID_NULL for None, else the oid of a new boxed
        value (count 0: incref it to keep it past the next gc)."""
        if obj is None:
            return OID_NULL
        with self._pool._atomic():
            self._accept(obj)
            if isinstance(obj, PoolPersistent):
                return self._oid(obj)
            box = Boxed(obj)
            self._attach(box)
            self._pool._header.blocks[u64(box._p_oid)] = (
                box, POBJECT_TYPE_NUM, 0)
            return self._oid(box)

    def resurrect(self, oid):
        """The pool object or boxed value at ``oid``; None for OID_NULL."""
        if self.otuple(oid) == OID_NULL:
            return None
        entry = self._pool._header.blocks.get(self._number(oid))
        if entry is None:
            return self._pool_object(oid, 'resurrect')
        obj = entry[0]
        if isinstance(obj, Boxed):
            return obj.value
        _check_block(obj, oid, 'resurrect', raw_ok=False)
        return obj

    # -- what a pool can store -------------------------------------------------

    def _changing(self, values):
        """The context of one change of a pool object (see base.py)."""
        return _Change(self, values)

    def _accept(self, value):
        """Check that the pool can store ``value``; a pool object of no
        pool joins this one, with everything it holds."""
        kind = type(value)
        if kind in _SCALARS:
            return
        if kind is tuple or kind is frozenset:
            for item in value:
                self._accept(item)
            return
        if isinstance(value, PoolPersistent):
            jar = value._p_jar
            if jar is self._pool._connection:
                return
            if jar is not None or value._p_oid is not None:
                raise errors.InvalidObjectReference(
                    '%s.%s object %r belongs to another pool'
                    % (kind.__module__, kind.__qualname__, value))
            value._p_new(self)
            for item in value._pool_values():
                self._accept(item)
            return
        if kind in self._pool._pickled_types:
            return
        raise TypeError(
            "Don't know how to persist %s.%s object %r: a pool stores"
            ' None, bool, int, float, complex, str, bytes, tuples and'
            ' frozensets of those, pool objects (pool.new), and the types'
            ' named to pool.persist_via_pickle'
            % (kind.__module__, kind.__qualname__, value))

    def _attach(self, obj):
        self._pool._connection.add(obj)


class _Change:
    """``with``: check values, then run the change in the pool's
    transaction or one of its own (``_atomic``)."""

    __slots__ = ('_manager', '_values', '_atomic')

    def __init__(self, manager, values):
        self._manager = manager
        self._values = values
        self._atomic = None

    def __enter__(self):
        atomic = self._manager._pool._atomic()
        atomic.__enter__()
        self._atomic = atomic
        try:
            for value in self._values:
                self._manager._accept(value)
        except BaseException as exc:
            atomic.__exit__(type(exc), exc, exc.__traceback__)
            raise

    def __exit__(self, *exc_info):
        return self._atomic.__exit__(*exc_info)


def _check_size(size):
    if type(size) is not int or size < 0:
        raise errors.InvalidArgumentError(
            'a block size is an int >= 0, not %r' % (size,))


def _check_type_num(type_num):
    if type(type_num) is not int or type_num < 0:
        raise errors.InvalidArgumentError(
            'a type_num is an int >= 0, not %r' % (type_num,))


def _check_block(obj, oid, doing, raw_ok=True):
    if raw_ok and isinstance(obj, Block):
        return
    if not raw_ok and not isinstance(obj, Block):
        return
    raise errors.InvalidArgumentError(
        'cannot %s oid %r: it is %s' % (
            doing, oid, 'raw memory (use direct)' if isinstance(obj, Block)
            else 'not a memory block (alloc makes those)'))
