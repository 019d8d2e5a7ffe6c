"""What every pool object shares: finding its pool, and changing atomically.

A pool object is a ``persistent.Persistent`` object of the pool's
database. It finds its :class:`objstore.pool.memory.MemoryManager`
through its ``_p_jar`` (the pool's connection). Each of its mutators
wraps the change in :meth:`PoolPersistent._pool_change`: the values about
to be stored are checked (and pool objects made outside any pool join
this one), then the change runs inside the pool's transaction, or, when
none is open, inside one of its own that commits as soon as the change is
made. That is how a single change outside ``pool.transaction()`` is
atomic and durable, as in pmemobj.

An object made with its class directly (``PersistentList([1, 2])``
rather than ``pool.new(PersistentList, [1, 2])``) belongs to no pool: it
is an ordinary in-memory object, checking nothing, until it is stored in
a pool object or as a pool's root; then it (and every object it holds)
joins that pool.
"""
import contextlib
import weakref

from persistent import Persistent
from zope.interface import implementer

from objstore.pool.interfaces import IPoolPersistent

# connection -> MemoryManager of the pool that owns the connection.
_managers = weakref.WeakKeyDictionary()

_NO_CHANGE_CHECK = contextlib.nullcontext()


def register_manager(connection, manager):
    """Make ``manager`` the memory manager of the objects of ``connection``."""
    _managers[connection] = manager


def manager_of(obj):
    """The memory manager of the pool holding ``obj``, or None."""
    jar = obj._p_jar
    if jar is None:
        return None
    return _managers.get(jar)


@implementer(IPoolPersistent)
class PoolPersistent(Persistent):
    """Base of the objects a pool keeps (see the module docstring).

    Subclasses store their state as persistent does and call
    :meth:`_pool_change` around every change, naming the values they are
    about to store, and set ``_p_changed`` inside it.
    """

    # persistent looks attributes named _p_* up without loading the
    # object, so _p_mm works on ghosts too.
    @property
    def _p_mm(self):
        return manager_of(self)

    def _p_new(self, manager):
        """Join ``manager``'s pool (an oid now, stored at commit)."""
        manager._attach(self)

    def _p_traverse(self):
        """The tuple oids of the pool objects this object refers to."""
        manager = manager_of(self)
        for value in _pool_objects(self._pool_values()):
            if value._p_oid is not None and manager is not None:
                yield manager.otuple(value._p_oid)

    def _p_substructures(self):
        """Memory blocks this object owns: none unless a subclass says."""
        return ()

    def _pool_values(self):
        """The values this object holds (checked when it joins a pool)."""
        return ()

    def _pool_change(self, values=()):
        """A context manager around one change storing ``values``."""
        manager = manager_of(self)
        if manager is None:
            return _NO_CHANGE_CHECK
        return manager._changing(values)


def _pool_objects(values):
    """The pool objects among ``values``, looking inside tuples and
    frozensets (the containers a pool stores by value)."""
    for value in values:
        if isinstance(value, PoolPersistent):
            yield value
        elif type(value) in (tuple, frozenset):
            yield from _pool_objects(value)
