"""PersistentObjectPool: pmemobj's one-file object pool on objstore's DB.

A pool is an objstore database (by default on a
:class:`objstore.storages.PMemStorage` file) whose root mapping holds a
:class:`PoolHeader` under the reserved key ``'objstore.pool'``: the format
version, the pool's random id (part of every memory-manager oid), the
clean-close flag, the user's root value and the memory blocks' tree.
The pool opens one connection on its own
``transaction.TransactionManager`` (explicit mode), so nothing it does
commits or aborts the application's other transactions.

Transactions. ``pool.transaction()`` blocks commit when the outermost
one ends. Outside them, every change of a pool object (see
:mod:`objstore.pool.base`), every ``pool.root = ...`` and every
memory-manager call that changes something commits on its own as soon as
it is made: one database transaction per change. A lock makes threads
take turns: a transaction block holds it from start to end, so another
thread's change waits for the block instead of joining it. Reads take no
lock: all threads share the pool's one connection, so a thread may read
what another thread's open block has changed but not yet committed.

Open and close. The header's ``clean`` flag is cleared (committed) when
the pool opens and set when it closes after gc; a pool found not clean
(the flag, or the storage's own ``clean_shutdown``) was not closed: the
storage recovered what was committed, and the pool runs gc to free what
the crash left unreachable. Before anything is written, the file is
opened read-only and checked to be a pool of a version this code reads.
"""
import errno
import logging
import os
import threading
import time

import transaction as transaction_package
from BTrees.LOBTree import LOBTree
from persistent import Persistent
from zope.interface import implementer

from objstore import errors
from objstore.db import DB
from objstore.pool import gc as gc_mod
from objstore.pool.base import PoolPersistent, register_manager
from objstore.pool.interfaces import IPersistentObjectPool
from objstore.pool.memory import MemoryManager
from objstore.pool.transactions import Change, TransactionBlock
from objstore.storages.base import tid_time

logger = logging.getLogger('objstore.pool')

#: The smallest pool_size (libpmemobj's PMEMOBJ_MIN_POOL, 8 MiB); the
#: default. A pool grows past its size as it fills.
MIN_POOL_SIZE = 8 * 1024 * 1024
#: The pool layout this code writes, and the newest it reads.
FORMAT_VERSION = 1
#: The key of the database root that holds the pool's header.
POOL_KEY = 'objstore.pool'


class PoolHeader(Persistent):
    """The pool's own record (see the module docstring)."""

    def __init__(self, pool_id):
        self.format_version = FORMAT_VERSION
        self.pool_id = pool_id
        self.clean = False
        self.root = None
        self.blocks = LOBTree()


def pmem_storage(path, create, pool_size, read_only):
    """The default storage factory: a PMemStorage on ``path``."""
    from objstore.storages.pmem import PMemStorage
    if create:
        return PMemStorage(path, pool_size=pool_size, create=True)
    return PMemStorage(path, read_only=read_only)


def file_storage(path, create, pool_size, read_only):
    """A storage factory for objstore FileStorage (``pool_size`` unused)."""
    from objstore.storages.file import FileStorage
    return FileStorage(path, create=create, read_only=read_only)


@implementer(IPersistentObjectPool)
class PersistentObjectPool:
    """``PersistentObjectPool(filename, flag='w', pool_size=MIN_POOL_SIZE,
    mode=0o666, debug=False)``: open or create a pool.

    ``flag`` ``'w'``: open an existing pool (``FileNotFoundError``, an
    ``OSError``, if the file is missing); ``'x'``: create a new one
    (``FileExistsError`` if the file exists); ``'c'``: open, creating it
    when missing. ``'r'`` raises ``ValueError`` (no read-only pools).
    A new file gets ``pool_size`` bytes (``ValueError`` below
    ``MIN_POOL_SIZE``) and permissions ``mode`` (less the umask). A file
    that is not a pool raises ``FileFormatError``, one of a newer layout
    ``UnsupportedVersionError``, a damaged one ``CorruptionError``;
    nothing is written to it. ``debug`` is gc()'s default.
    ``_storage_factory(path, create, pool_size, read_only)`` (internal)
    makes the storage; the default is :func:`pmem_storage`.
    """

    closed = False
    recovered = False

    def __init__(self, filename, flag='w', pool_size=MIN_POOL_SIZE,
                 mode=0o666, debug=False, *, _storage_factory=None):
        self.filename = filename
        self.debug = debug
        self._factory = _storage_factory or pmem_storage
        self._lock = threading.RLock()
        self._tm = transaction_package.TransactionManager(explicit=True)
        self._depth = 0             # open transaction blocks (+ changes)
        self._owner = None          # the thread whose transaction is open
        self._doomed = None         # why a nested block rolled back
        self._pickled_types = set()
        self._db = self._connection = self._header = None
        self.mm = MemoryManager(self)
        path = os.fspath(filename)
        if flag == 'r':
            raise ValueError('Read-only mode is not supported')
        if flag not in ('w', 'x', 'c'):
            raise ValueError('Invalid flag value %r (w, x or c)' % (flag,))
        exists = os.path.exists(path)
        if flag == 'w' and not exists:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT),
                                    path)
        if flag == 'x' and exists:
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST),
                                  path)
        if exists:
            self._open(path)
        else:
            self._create(path, pool_size, mode)

    def __repr__(self):
        return '<PersistentObjectPool %r%s>' % (
            self.filename, ' closed' if self.closed else '')

    # -- opening ---------------------------------------------------------------

    def _create(self, path, pool_size, mode):
        if type(pool_size) is not int:
            raise TypeError('pool_size is an int, not %r' % (pool_size,))
        if pool_size < MIN_POOL_SIZE:
            raise ValueError('pool size %d smaller than %d'
                             % (pool_size, MIN_POOL_SIZE))
        # O_EXCL: the name is ours (or FileExistsError), with ``mode``.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
        try:
            self._start(self._factory(path, True, pool_size, False))
            pool_id = int.from_bytes(os.urandom(8), 'big') >> 1 or 1
            with self._atomic():
                self._connection.root()[POOL_KEY] = PoolHeader(pool_id)
            self._header = self._connection.root()[POOL_KEY]
        except BaseException:
            self._abandon()
            os.remove(path)
            raise

    def _open(self, path):
        _check_pool_file(path, self._factory)
        storage = self._factory(path, False, None, False)
        try:
            self._start(storage)
            self._header = _read_header(self._connection, path)
            unclean = (not self._header.clean
                       or getattr(storage, 'clean_shutdown', True) is False)
            with self._atomic():
                self._header.clean = False
        except BaseException:
            self._abandon()
            raise
        if unclean:
            logger.warning('%s was not closed cleanly: running gc', path)
            self.recovered = True
            self.gc()

    def _start(self, storage):
        try:
            self._db = DB(storage, cache_size=10000,
                          database_name=os.path.basename(
                              os.fspath(self.filename)))
        except BaseException:
            storage.close()
            raise
        self._connection = self._db.open(self._tm)
        register_manager(self._connection, self.mm)

    def _abandon(self):
        """Close what an open that failed had opened."""
        self.closed = True
        if self._depth:
            self._tm.abort()
            self._depth = 0
        if self._db is not None:
            self._db.close()

    @property
    def _pool_id(self):
        return self._header.pool_id

    # -- transactions ------------------------------------------------------

    def transaction(self):
        """A context manager around one transaction (see the module
        docstring and ``IPersistentObjectPool.transaction``)."""
        return TransactionBlock(self)

    def _atomic(self):
        """The context of one change: joins the open transaction, else
        commits on its own at the end."""
        return Change(self)

    def _in_transaction(self):
        # Another thread's open transaction is not ours to join.
        return self._depth > 0 and self._owner == threading.get_ident()

    def _require_transaction(self, doing):
        if not self._in_transaction():
            raise errors.TransactionError(
                'mm.%s must be called inside pool.transaction()' % doing)

    def _check_open(self):
        if self.closed:
            raise errors.StorageClosedError(
                'the pool %s is closed' % (self.filename,))

    def _begin(self):
        self._check_open()
        self._tm.begin()
        self._depth = 1
        self._owner = threading.get_ident()

    def _finish(self, commit):
        """End the outermost transaction: commit, or abort."""
        try:
            if commit:
                self.mm._store_shadows()
                self._tm.commit()
            else:
                self._tm.abort()
        except BaseException:
            self._tm.abort()
            raise
        finally:
            self._depth = 0
            self._doomed = None
            self.mm._end_transaction()

    # -- the API -------------------------------------------------------------

    @property
    def root(self):
        """The root value (None in a new pool)."""
        self._check_open()
        return self._header.root

    @root.setter
    def root(self, value):
        with self.mm._changing((value,)):
            self._header.root = value

    def new(self, typ, *args, **kw):
        """A new ``typ(*args, **kw)`` in this pool, created atomically;
        ``_v__init__`` runs before ``__init__``."""
        if not (isinstance(typ, type) and issubclass(typ, PoolPersistent)):
            raise TypeError(
                '%r is not a pool type (subclass PersistentObject, or use'
                ' PersistentList or PersistentDict)' % (typ,))
        with self._atomic():
            obj = typ.__new__(typ)
            obj._p_new(self.mm)
            obj.__init__(*args, **kw)
        return obj

    def persist_via_pickle(self, *types):
        """Let pool objects hold instances of exactly these types (stored
        by pickle, as all values are; meant for immutable, non-container
        types: changes inside such a value are not seen)."""
        for typ in types:
            if not isinstance(typ, type):
                raise TypeError('persist_via_pickle takes types, not %r'
                                % (typ,))
        self._pickled_types.update(types)

    def gc(self, debug=None):
        """Free every object the root does not reach, and every orphan
        block; with ``debug`` (default: the pool's) log what is freed and
        return ``(type_counts, gc_counts)``, else return None. Raises
        TransactionError inside a transaction."""
        debug = self.debug if debug is None else debug
        with self._lock:
            self._check_open()
            if self._depth:
                raise errors.TransactionError(
                    'gc cannot run inside pool.transaction()')
            return gc_mod.collect(self, debug)

    def _pack(self):
        """Let the storage free what the database root does not reach."""
        # After the last commit, even if its tid ran ahead of the clock.
        last = self._db.lastTransaction()
        when = time.time()
        if any(last):
            when = max(when, tid_time(last) + 0.001)
        self._db.pack(when)

    def close(self):
        """gc(), mark the pool clean, close the file; again: nothing."""
        with self._lock:
            if self.closed:
                return
            if self._depth:
                raise errors.TransactionError(
                    'cannot close the pool inside pool.transaction()')
            try:
                self.gc()
                with self._atomic():
                    self._header.clean = True
            finally:
                self.closed = True
                self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def create(filename, pool_size=MIN_POOL_SIZE, mode=0o666, debug=False):
    """A new pool in ``filename``: ``FileExistsError`` if it exists."""
    return PersistentObjectPool(filename, flag='x', pool_size=pool_size,
                                mode=mode, debug=debug)


def open(filename, debug=False):  # noqa: A001 -- pmemobj's name
    """The existing pool in ``filename``: ``FileNotFoundError`` if it is
    missing; gc runs first if it was not closed cleanly."""
    return PersistentObjectPool(filename, flag='w', debug=debug)


# -- checking a file ------------------------------------------------------


def _read_header(connection, path):
    """The pool's header in the database, checked; raises FileFormatError
    or UnsupportedVersionError when it is not a pool this code reads."""
    try:
        root = connection.root()
    except KeyError:
        raise errors.FileFormatError(
            path, 'an objstore storage without a database root, not a'
            ' pool') from None
    header = root.get(POOL_KEY) if hasattr(root, 'get') else None
    if header is None:
        raise errors.FileFormatError(
            path, 'an objstore database, not a pool (its root has no %r)'
            % POOL_KEY)
    if not isinstance(header, PoolHeader):
        raise errors.FileFormatError(
            path, 'the pool header is a %s.%s, not a PoolHeader'
            % (type(header).__module__, type(header).__qualname__))
    version = getattr(header, 'format_version', None)
    if type(version) is not int or version < 1:
        raise errors.FileFormatError(
            path, 'the pool header has no valid format version (%r)'
            % (version,))
    if version > FORMAT_VERSION:
        raise errors.UnsupportedVersionError(
            path, 'pool format version %d; this objstore reads up to %d'
            % (version, FORMAT_VERSION))
    return header


def _check_pool_file(path, factory):
    """Open ``path`` read-only and check it is a pool (writing nothing)."""
    try:
        storage = factory(path, False, None, True)
    except (errors.ObjstoreError, OSError):
        raise
    except Exception as exc:
        raise errors.FileFormatError(
            path, 'cannot be read as a pool: %s: %s'
            % (type(exc).__name__, exc)) from exc
    try:
        db = DB(storage)
    except BaseException:
        storage.close()
        raise
    try:
        connection = db.open(transaction_package.TransactionManager())
        try:
            _read_header(connection, path)
        finally:
            connection.close()
    finally:
        db.close()
