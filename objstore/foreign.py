"""ZODB's storages seen from objstore: interfaces and exceptions by name.

objstore's core drives ZODB storages too (``objstore.DB(ZODB storage)``)
without importing ZODB: this module recognises ZODB's interfaces by their
names and turns ZODB's exceptions into objstore's, so the layers above
catch one family whatever storage sits below.
"""
from zope.interface import alsoProvides
from zope.interface import providedBy

from objstore import errors
from objstore.interfaces import IMVCCStorage

__all__ = ['provides', 'is_mvcc', 'translate', 'passing_errors',
           'translating']


def provides(obj, iface):
    """Whether ``obj`` provides ``iface``, objstore's or ZODB's namesake."""
    if iface.providedBy(obj):
        return True
    return any(i.__name__ == iface.__name__
               for i in providedBy(obj).flattened())


def is_mvcc(storage):
    """True if ``storage`` provides IMVCCStorage (objstore's or ZODB's)."""
    return provides(storage, IMVCCStorage)


# ZODB's exceptions, by class name, and the objstore ones they become, so
# the layers above catch one family whatever storage sits below.
_FOREIGN = (('ReadConflictError', errors.ReadConflictError),
            ('ConflictError', errors.ConflictError),
            ('POSKeyError', errors.POSKeyError),
            ('ReadOnlyError', errors.ReadOnlyError),
            ('StorageTransactionError', errors.StorageTransactionError))


def translate(exc):
    """The objstore exception for a ZODB storage's ``exc``, or None."""
    if isinstance(exc, errors.ObjstoreError):
        return None
    names = {k.__name__ for k in type(exc).__mro__
             if k.__module__.startswith('ZODB')}
    for name, ours in _FOREIGN:
        if name in names and issubclass(ours, errors.ConflictError):
            return ours(getattr(exc, 'message', None),
                        oid=getattr(exc, 'oid', None),
                        serials=getattr(exc, 'serials', None),
                        class_name=getattr(exc, 'class_name', None))
        if name in names:
            return ours(*exc.args)
    return None


def passing_errors(method):
    """Wrap a method so ZODB storages' errors come out as objstore's."""
    def wrapper(*args, **kw):
        try:
            return method(*args, **kw)
        except Exception as exc:
            ours = translate(exc)
            if ours is None:
                raise
            raise ours from exc
    wrapper.__name__ = getattr(method, '__name__', 'method')
    wrapper.__doc__ = getattr(method, '__doc__', None)
    return wrapper


class _Translating:
    """A natively MVCC storage of ZODB's (or one of its instances) whose
    errors come out as objstore's, so code above catches one family."""

    def __init__(self, storage):
        self._storage = storage
        alsoProvides(self, *providedBy(storage))

    def __getattr__(self, name):
        if name.startswith('__'):
            # zope.interface looks up __provides__ and friends: this
            # view's own declarations answer those, not the storage's.
            raise AttributeError(name)
        attr = getattr(self._storage, name)
        if not callable(attr):
            return attr
        if name in ('new_instance', 'before_instance'):
            def make(*args, _make=attr):
                return _Translating(_make(*args))
            return passing_errors(make)
        return passing_errors(attr)

    _drop_cache = False

    def drop_cache_at_next_poll(self):
        """Make the next ``poll_invalidations()`` return None (drop the
        whole cache): what ``DB.invalidateCache`` asks of an instance."""
        self._drop_cache = True

    def poll_invalidations(self):
        """The storage's poll, translated; None once after
        ``drop_cache_at_next_poll``."""
        changed = passing_errors(self._storage.poll_invalidations)()
        if self._drop_cache:
            self._drop_cache = False
            return None
        return changed

    def __len__(self):
        return len(self._storage)

    def __bool__(self):
        return True


def translating(storage):
    """``storage`` itself when it is objstore's, else a view of it whose
    ZODB exceptions become objstore's (see ``_FOREIGN``)."""
    if IMVCCStorage.providedBy(storage) or isinstance(storage, _Translating):
        return storage
    return _Translating(storage)
