"""PersistentObject: the base class of user-defined pool objects.

Instances behave as plain objects do (attributes, class attributes,
methods, ``hasattr``, identity equality); setting or deleting an
attribute is one change of the pool (atomic and durable on its own
outside a transaction). Attributes named ``_v_*`` are volatile: never
stored, gone when the object is reloaded, which is what
:meth:`PersistentObject._v__init__` is for. ``_p_*`` names belong to
persistent and the pool.
"""
from persistent import Persistent

from objstore.pool.base import PoolPersistent

_PRIVATE = ('_p_', '_v_')


class PersistentObject(PoolPersistent):
    """Subclass it; create instances with ``pool.new(cls, ...)``.

    ``__init__`` runs once, when the object is created. ``_v__init__``
    runs at creation (before ``__init__``) and every time the object's
    state is loaded from the pool: when it is resurrected after the pool
    was reopened, and again whenever the pool dropped it from memory
    (after an abort, a gc, or when its cache made room), since its ``_v_``
    attributes go with it. It should only set ``_v_`` attributes.
    """

    def _v__init__(self):
        """(Re)acquire volatile resources; does nothing by default."""

    def _p_new(self, manager):
        super()._p_new(manager)
        self._v__init__()

    def __setstate__(self, state):
        super().__setstate__(state)
        self._v__init__()

    def __getattribute__(self, name):
        # persistent leaves __dict__ of an unloaded object (a ghost) empty;
        # vars(obj) must show the attributes, as for any object.
        if name == '__dict__':
            Persistent._p_activate(self)
        return super().__getattribute__(name)

    def _pool_values(self):
        return [value for name, value in self.__dict__.items()
                if not name.startswith(_PRIVATE)]

    def __setattr__(self, name, value):
        if name.startswith(_PRIVATE):
            super().__setattr__(name, value)
            return
        with self._pool_change((value,)):
            super().__setattr__(name, value)

    def __delattr__(self, name):
        if name.startswith(_PRIVATE):
            super().__delattr__(name)
            return
        with self._pool_change():
            super().__delattr__(name)
