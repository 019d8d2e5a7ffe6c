"""Everything that needs ZODB at run time (the ``zodb`` extra).

:func:`adapt` hands an objstore storage to ZODB: ``ZODB.DB(adapt(storage))``
runs on it, and ZODB's own tools and storage tests accept it. The adapter
declares ZODB's interface objects for the capabilities the storage provides
(``ZODB.DB`` checks ``ZODB.interfaces.IMVCCStorage.providedBy`` to decide how
to drive a storage) and re-raises objstore's exceptions as classes that are
both the objstore exception and ZODB's (so ``except
ZODB.POSException.ConflictError``, which Zope retries on, catches them).

This is the only module of the core package that imports ZODB.
"""
import functools
import types

import ZODB.interfaces
import ZODB.POSException as POSException
from zope.interface import directlyProvides, providedBy

from objstore import errors
from objstore import interfaces

# Our exception -> ZODB's exception of the same meaning. Order matters:
# subclasses first, so the most specific ZODB class is chosen.
_ERROR_PAIRS = [
    (errors.ReadConflictError, POSException.ReadConflictError),
    (errors.ConflictError, POSException.ConflictError),
    (errors.POSKeyError, POSException.POSKeyError),
    (errors.ReadOnlyError, POSException.ReadOnlyError),
    (errors.TransactionTooLargeError, POSException.TransactionTooLargeError),
    (errors.StorageTransactionError, POSException.StorageTransactionError),
    (errors.MultipleUndoErrors, POSException.MultipleUndoErrors),
    (errors.UndoError, POSException.UndoError),
    (errors.StorageError, POSException.StorageError),
]
_dual_classes = {}


def _dual_class(exc_class):
    """A class that is both ``exc_class`` and its ZODB counterpart."""
    dual = _dual_classes.get(exc_class)
    if dual is None:
        for ours, theirs in _ERROR_PAIRS:
            if issubclass(exc_class, ours):
                break
        else:
            return None
        dual = type(exc_class.__name__, (exc_class, theirs),
                    {'__module__': __name__, '__qualname__': exc_class.__name__})
        _dual_classes[exc_class] = dual
    return dual


def zodb_error(exc):
    """``exc`` as an instance of a class ZODB code catches, or ``exc`` itself."""
    if not isinstance(exc, errors.ObjstoreError) or \
            isinstance(exc, POSException.POSError):
        return exc
    dual = _dual_class(type(exc))
    if dual is None:
        return exc
    new = Exception.__new__(dual)
    new.__dict__.update(exc.__dict__)
    new.args = exc.args
    return new


def _translating(method):
    @functools.wraps(method)
    def call(*args, **kw):
        try:
            result = method(*args, **kw)
        except errors.ObjstoreError as exc:
            translated = zodb_error(exc)
            if translated is exc:
                raise
            raise translated.with_traceback(exc.__traceback__) from None
        if isinstance(result, types.GeneratorType):
            return _translating_iter(result)
        return result
    return call


def _translating_iter(iterator):
    try:
        yield from iterator
    except errors.ObjstoreError as exc:
        translated = zodb_error(exc)
        if translated is exc:
            raise
        raise translated.with_traceback(exc.__traceback__) from None


# objstore interface -> ZODB interface with the same protocol.
_INTERFACE_PAIRS = [
    (interfaces.IStorage, ZODB.interfaces.IStorage),
    (interfaces.IMVCCStorage, ZODB.interfaces.IMVCCStorage),
    (interfaces.IStorageIteration, ZODB.interfaces.IStorageIteration),
    (interfaces.IStorageUndoable, ZODB.interfaces.IStorageUndoable),
    (interfaces.IStorageRestoreable, ZODB.interfaces.IStorageRestoreable),
    (interfaces.IStorageCurrentRecordIteration,
     ZODB.interfaces.IStorageCurrentRecordIteration),
    (interfaces.ReadVerifyingStorage, ZODB.interfaces.ReadVerifyingStorage),
    (interfaces.IExternalGC, ZODB.interfaces.IExternalGC),
]


class ZODBStorageAdapter:
    """An objstore storage as ZODB sees a storage.

    Every attribute of the wrapped storage is reachable; methods re-raise
    objstore's exceptions as ZODB-compatible ones. The wrapped storage is
    ``adapter.objstore_storage``.
    """

    def __init__(self, storage):
        self.objstore_storage = storage
        provided = providedBy(storage)
        zodb_ifaces = [theirs for ours, theirs in _INTERFACE_PAIRS
                       if provided.isOrExtends(ours)]
        if provided.isOrExtends(interfaces.IStorage):
            # tpc_vote returns resolved oids and tpc_finish returns the tid:
            # ZODB's multi-commit protocol.
            zodb_ifaces.append(ZODB.interfaces.IMultiCommitStorage)
        directlyProvides(self, *zodb_ifaces)

    def __getattr__(self, name):
        value = getattr(self.objstore_storage, name)
        if callable(value) and not isinstance(value, type):
            value = _translating(value)
            if name != 'new_instance':
                # Cache the wrapper: ZODB calls load/store in hot loops.
                self.__dict__[name] = value
        return value

    def __len__(self):
        return len(self.objstore_storage)

    def __repr__(self):
        return '<ZODB adapter for %r>' % (self.objstore_storage,)

    def new_instance(self):
        # MVCC storages hand out one instance per connection; each must be
        # adapted too.
        return adapt(self.objstore_storage.new_instance())

    def copyTransactionsFrom(self, other):  # ZODB's protocol name
        source = getattr(other, 'objstore_storage', other)
        return _translating(self.objstore_storage.copyTransactionsFrom)(source)


def adapt(storage):
    """Return ``storage`` as ``ZODB.DB`` and ZODB's tools expect a storage.

    Adapting an adapter returns it unchanged.
    """
    if isinstance(storage, ZODBStorageAdapter):
        return storage
    return ZODBStorageAdapter(storage)
