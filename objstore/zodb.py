"""Everything that needs ZODB at run time (the ``zodb`` extra).

Both directions between objstore and ZODB:

* :func:`adapt` hands an objstore storage to ZODB: ``ZODB.DB(adapt(storage))``
  runs on it, and ZODB's own tools and storage tests accept it. The adapter
  declares ZODB's interface objects for the capabilities the storage
  provides (``ZODB.DB`` checks ``ZODB.interfaces.IMVCCStorage.providedBy``
  to decide how to drive a storage) and re-raises objstore's exceptions as
  classes that are both the objstore exception and ZODB's (so ``except
  ZODB.POSException.ConflictError``, which Zope retries on, catches them).
* :func:`from_zodb` hands a ZODB storage to objstore: ``objstore.DB`` sees
  objstore's interface declarations and gets exceptions that are both
  ZODB's and objstore's (the same dual classes). :func:`open_zodb_file` is
  the ``zodb+file://`` URI scheme of :func:`objstore.open`.

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
# ZODB's exceptions with no storage counterpart in _ERROR_PAIRS, for the
# other direction (ZODB -> objstore); the catch-all POSError comes last.
_FROM_ZODB_PAIRS = _ERROR_PAIRS + [
    (errors.ReadOnlyHistoryError, POSException.ReadOnlyHistoryError),
    (errors.InvalidObjectReference, POSException.InvalidObjectReference),
    (errors.ConnectionStateError, POSException.ConnectionStateError),
    (errors.Unsupported, POSException.Unsupported),
    (errors.ObjstoreError, POSException.POSError),
]
_dual_classes = {}


def _combine(ours, theirs, name):
    """The class deriving from ``ours`` then ``theirs`` (one per pair).

    objstore's class comes first in either direction, so its ``__str__``
    and attributes (``referenced_by``, ``reason``...) are the ones used.
    """
    dual = _dual_classes.get((ours, theirs))
    if dual is None:
        dual = type(name, (ours, theirs),
                    {'__module__': __name__, '__qualname__': name})
        _dual_classes[(ours, theirs)] = dual
    return dual


def _dual_class(exc_class):
    """A class that is both ``exc_class`` and its ZODB counterpart."""
    for ours, theirs in _ERROR_PAIRS:
        if issubclass(exc_class, ours):
            return _combine(exc_class, theirs, exc_class.__name__)
    return None


def _retyped(exc, cls):
    new = Exception.__new__(cls)
    new.__dict__.update(exc.__dict__)
    new.args = exc.args
    return new


def zodb_error(exc):
    """``exc`` as an instance of a class ZODB code catches, or ``exc`` itself."""
    if not isinstance(exc, errors.ObjstoreError) or \
            isinstance(exc, POSException.POSError):
        return exc
    dual = _dual_class(type(exc))
    if dual is None:
        return exc
    return _retyped(exc, dual)


def objstore_error(exc):
    """``exc`` as an instance of a class objstore code catches, or ``exc``.

    A ZODB exception becomes one whose class is both objstore's exception of
    the same meaning and ZODB's exact class; anything else is returned as is.
    """
    if not isinstance(exc, POSException.POSError) or \
            isinstance(exc, errors.ObjstoreError):
        return exc
    theirs = type(exc)
    for ours, paired in _FROM_ZODB_PAIRS:
        if issubclass(theirs, paired):
            break
    new = _retyped(exc, _combine(ours, theirs, theirs.__name__))
    if isinstance(exc, POSException.MultipleUndoErrors):
        new.errors = [_undo_error(pair) for pair in getattr(exc, '_errs', ())]
        new.reason = '; '.join(str(e) for e in new.errors)
        new.oid = None
    elif isinstance(exc, POSException.UndoError):
        # ZODB keeps these private; objstore's UndoError publishes them.
        new.reason = getattr(exc, '_reason', None)
        new.oid = getattr(exc, '_oid', None)
    return new


def _undo_error(pair):
    """One entry of ZODB's MultipleUndoErrors as objstore's UndoError.

    ZODB's FileStorage lists ``(oid, UndoError)`` pairs although the
    class documents ``(reason, oid)``; both are accepted.
    """
    first, second = pair
    if isinstance(second, POSException.POSError):
        return objstore_error(second)
    if isinstance(second, BaseException):
        return errors.UndoError(str(second), first)
    return errors.UndoError(first, second)


def _translating(method, translate=zodb_error, source=errors.ObjstoreError):
    """``method`` re-raising ``source`` exceptions through ``translate``."""
    @functools.wraps(method)
    def call(*args, **kw):
        try:
            result = method(*args, **kw)
        except source as exc:
            translated = translate(exc)
            if translated is exc:
                raise
            raise translated.with_traceback(exc.__traceback__) from None
        if isinstance(result, types.GeneratorType):
            return _translating_iter(result, translate, source)
        return result
    return call


def _translating_iter(iterator, translate, source):
    try:
        yield from iterator
    except source as exc:
        translated = translate(exc)
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


# -- ZODB storages under objstore -----------------------------------------

class ZODBStorageWrapper:
    """A ZODB storage as objstore sees a storage.

    Every attribute of the wrapped storage is reachable; it declares the
    objstore interfaces matching the ZODB ones the storage provides, and
    its methods re-raise ZODB's exceptions as classes that are both
    objstore's and ZODB's. The wrapped storage is ``wrapper.zodb_storage``.
    """

    def __init__(self, storage):
        self.zodb_storage = storage
        provided = providedBy(storage)
        ours = [ours for ours, theirs in _INTERFACE_PAIRS
                if provided.isOrExtends(theirs)]
        # ZODB storages rarely declare ReadVerifyingStorage, though most
        # inherit the method from ZODB's BaseStorage.
        if interfaces.ReadVerifyingStorage not in ours and callable(
                getattr(storage, 'checkCurrentSerialInTransaction', None)):
            ours.append(interfaces.ReadVerifyingStorage)
        directlyProvides(self, *ours)
        # transaction -> the ZODB TransactionMetaData standing for it.
        self._metadata = {}

    def __getattr__(self, name):
        value = getattr(self.zodb_storage, name)
        if not callable(value) or isinstance(value, type):
            return value
        value = _translating(value, objstore_error, POSException.POSError)
        if name in ('new_instance', 'before_instance'):
            # MVCC instances are storages too: wrap them as well.
            return _wrapping_result(value)
        value = self._passing_metadata(value, name)
        # Cache the wrapper: the DB calls load/store in hot loops.
        self.__dict__[name] = value
        return value

    def __len__(self):
        return len(self.zodb_storage)

    def __repr__(self):
        return '<objstore wrapper for %r>' % (self.zodb_storage,)

    def copyTransactionsFrom(self, other):  # ZODB's protocol name
        source = getattr(other, 'zodb_storage', other)
        return _translating(self.zodb_storage.copyTransactionsFrom,
                            objstore_error, POSException.POSError)(source)

    # -- transaction metadata ----------------------------------------------
    # ZODB storages read ``extension_bytes`` and bytes ``user`` and
    # ``description`` off the transaction object, as ZODB's Connection hands
    # them a TransactionMetaData. A caller may pass the ``transaction``
    # package's Transaction instead (objstore's storages accept both); the
    # storage must then see one metadata object in every call of that
    # commit, so the one made at tpc_begin stands for the transaction in
    # every later call (store, tpc_vote, undo, ...) until tpc_finish
    # succeeds or tpc_abort is called.

    def tpc_begin(self, transaction, tid=None, status=' '):  # ZODB's name
        call = _translating(self.zodb_storage.tpc_begin, objstore_error,
                            POSException.POSError)

        def begin(meta, tid, status):
            # Some ZODB storages (MappingStorage) take no status argument.
            if status != ' ':
                return call(meta, tid, status)
            return call(meta) if tid is None else call(meta, tid)

        if getattr(transaction, 'extension_bytes', None) is not None:
            return begin(transaction, tid, status)
        from ZODB.Connection import TransactionMetaData
        meta = TransactionMetaData(
            getattr(transaction, 'user', ''),
            getattr(transaction, 'description', ''),
            dict(getattr(transaction, 'extension', None) or {}))
        self._metadata[id(transaction)] = (transaction, meta)
        try:
            return begin(meta, tid, status)
        except BaseException:
            del self._metadata[id(transaction)]
            raise

    def _passing_metadata(self, method, name):
        """``method`` with each transaction replaced by its metadata."""
        metadata = self._metadata
        forget = name in ('tpc_finish', 'tpc_abort')

        def swap(value):
            entry = metadata.get(id(value))
            return entry[1] if entry is not None and entry[0] is value else value

        @functools.wraps(method)
        def call(*args, **kw):
            if not metadata:
                return method(*args, **kw)
            given = list(args) + list(kw.values())
            try:
                result = method(*[swap(a) for a in args],
                                **{k: swap(v) for k, v in kw.items()})
            except BaseException:
                if name == 'tpc_abort':
                    _forget(metadata, given)
                raise
            if forget:
                _forget(metadata, given)
            return result
        return call


def _forget(metadata, values):
    for value in values:
        entry = metadata.get(id(value))
        if entry is not None and entry[0] is value:
            del metadata[id(value)]


def _wrapping_result(method):
    @functools.wraps(method)
    def call(*args, **kw):
        return from_zodb(method(*args, **kw))
    return call


def from_zodb(storage):
    """Return the ZODB ``storage`` as ``objstore.DB`` expects a storage.

    Wrapping a wrapper returns it unchanged, and an objstore storage that
    :func:`adapt` handed to ZODB comes back unwrapped.
    """
    if isinstance(storage, ZODBStorageWrapper):
        return storage
    if isinstance(storage, ZODBStorageAdapter):
        return storage.objstore_storage
    return ZODBStorageWrapper(storage)


def open_zodb_file(parsed, options):
    """``zodb+file:///abs/Data.fs``: a ZODB FileStorage, for objstore.

    Parameters: ``read_only``; ``create`` (default true: create the file
    when it is missing; never truncates one). ZODB's FileStorage always
    keeps history and always fsyncs at commit, so ``keep_history`` and
    ``fsync`` accept true only.
    """
    import zc.lockfile
    from ZODB.FileStorage import FileStorage

    from objstore import uri

    path = uri.local_path(parsed)
    uri.require_value(parsed, options, 'keep_history', True,
                      "ZODB's FileStorage always keeps history")
    uri.require_value(parsed, options, 'fsync', True,
                      "ZODB's FileStorage always fsyncs at commit")
    uri.check_exists(parsed, path, options)
    try:
        # create=False: ZODB's create=True would truncate an existing file.
        storage = FileStorage(path, read_only=options.get('read_only', False),
                              create=False)
    except zc.lockfile.LockError as exc:
        raise errors.StorageLockedError(
            '%s: another process has %s open for writing (%s)'
            % (uri.uri_text(parsed), path, exc)) from exc
    except POSException.POSError as exc:
        raise objstore_error(exc) from None
    return from_zodb(storage)
