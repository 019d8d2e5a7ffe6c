"""Open a database from a path, a URI or a storage object.

:func:`open` is the one call most applications need::

    db = objstore.open('data.fs')                        # objstore FileStorage
    db = objstore.open('file:///srv/app/data.fs?fsync=false')
    db = objstore.open('memory://')
    db = objstore.open('zodb+file:///srv/old/Data.fs')   # needs objstore[zodb]

A URI's scheme names a storage factory registered under the entry-point
group ``objstore.storages``: the entry point's name is the scheme, its value
a callable ``factory(parsed, options) -> storage`` where ``parsed`` is the
URI as a :class:`urllib.parse.SplitResult` and ``options`` a dict of the
storage parameters (already converted to bool and int). A plugin package
adds a scheme by registering one, as objstore registers its own.

Parameters come from the URI's query string or as keyword arguments (which
win over the query string): ``cache_size``, ``cache_size_bytes``,
``pool_size`` and ``database_name`` go to :class:`objstore.DB`;
``read_only``, ``fsync``, ``keep_history`` and ``create`` go to the storage
factory. Booleans are written ``true``/``false``, ``1``/``0`` or
``yes``/``no``. ``create`` (default true) means "create the file when it
is missing": no URI or path ever truncates an existing file.
"""
import contextlib
import importlib.metadata
import os
import re
import socket
import urllib.parse

from objstore import errors

__all__ = ['open', 'connection', 'open_storage', 'schemes', 'parse',
           'as_objstore_storage', 'URIError', 'ENTRY_POINT_GROUP']

ENTRY_POINT_GROUP = 'objstore.storages'

#: The factories objstore itself registers (pyproject.toml). They are also
#: used when the package metadata is missing, as when objstore runs from a
#: source tree that was never installed.
_BUILTIN_SCHEMES = {
    'memory': 'objstore.uri:open_memory',
    'file': 'objstore.uri:open_file',
    'zodb+file': 'objstore.zodb:open_zodb_file',
}

DB_OPTIONS = ('cache_size', 'cache_size_bytes', 'pool_size', 'database_name')
STORAGE_OPTIONS = ('read_only', 'fsync', 'keep_history', 'create')

_TRUE = ('true', '1', 'yes')
_FALSE = ('false', '0', 'no')
_BOOLEANS = ('read_only', 'fsync', 'keep_history', 'create')
_INTEGERS = ('cache_size', 'cache_size_bytes', 'pool_size')
_URI = re.compile(r'^[A-Za-z][A-Za-z0-9+.-]*://')


# Defined in objstore.errors; kept importable from here for plugin code.
URIError = errors.URIError


# -- public API -------------------------------------------------------------

def open(target, **options):  # noqa: A001 -- objstore.open, as zodburi's
    """Return an :class:`objstore.DB` on ``target``.

    ``target`` is a path (``str`` or ``os.PathLike``: an objstore
    FileStorage, created when missing, never truncated), a URI
    (``scheme://...``), or a storage object (anything with ``loadBefore``
    and ``tpc_begin``), which the DB takes over: closing the DB closes it.
    Raises :class:`URIError` for a malformed URI, an unknown scheme or
    parameter, or a bad value; ``objstore.errors.Unsupported`` when the
    scheme's storage needs an extra that is not installed.
    """
    from objstore.db import DB

    if _is_storage(target):
        given = sorted(set(options) & set(STORAGE_OPTIONS))
        if given:
            raise URIError('%s object: storage parameters (%s) do not apply '
                           'to a storage object; give them to its constructor'
                           % (type(target).__name__, ', '.join(given)))
        db_options = _options({}, options, '%s object' % type(target).__name__)
        return DB(as_objstore_storage(target), **db_options)

    storage, db_options = _open_storage(target, options)
    try:
        return DB(storage, **db_options)
    except BaseException:
        storage.close()
        raise


@contextlib.contextmanager
def connection(target, transaction_manager=None, **options):
    """Open ``target`` as :func:`open` does and yield an open connection.

    On exit, whether the block succeeded or raised, the current transaction
    of the connection's transaction manager is aborted (so whatever the
    block did not commit is discarded; committing is the caller's, as in
    ZODB), then the connection and the DB are closed.
    """
    db = open(target, **options)
    try:
        conn = db.open(transaction_manager=transaction_manager)
        try:
            yield conn
        finally:
            if conn.opened:     # the block may have closed it already
                try:
                    conn.transaction_manager.abort()
                finally:
                    conn.close()
    finally:
        db.close()


def open_storage(target, **options):
    """Return the storage :func:`open` would build a DB on, without the DB.

    ``target`` is a path or a URI; DB parameters (``cache_size``...) are
    checked and left out. Useful to hand objstore's storages to ZODB:
    ``ZODB.DB(objstore.zodb.adapt(open_storage(uri)))``.
    """
    return _open_storage(target, options)[0]


def schemes():
    """Return ``{scheme: entry point}`` for every storage scheme known."""
    found = {name: importlib.metadata.EntryPoint(name, value, ENTRY_POINT_GROUP)
             for name, value in _BUILTIN_SCHEMES.items()}
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found[entry_point.name] = entry_point
    return found


def parse(uri, options=None):
    """Split ``uri`` into ``(parsed, storage_options, db_options)``.

    ``options`` are keyword parameters that override the query string.
    Raises :class:`URIError` for anything malformed or unknown.
    """
    parsed = urllib.parse.urlsplit(uri)
    if parsed.fragment:
        raise URIError('%s: a storage URI has no fragment (#%s)'
                       % (uri, parsed.fragment))
    query = {}
    for name, value in urllib.parse.parse_qsl(parsed.query,
                                              keep_blank_values=True):
        if name in query:
            raise URIError('%s: parameter %r is given twice' % (uri, name))
        query[name] = value
    merged = _options(query, options or {}, uri)
    return parsed, _storage_part(merged), _db_part(merged)


# -- helpers for storage factories ----------------------------------------

def uri_text(parsed):
    """``parsed`` as written, for messages (``geturl()`` drops the ``//``
    of ``memory://``)."""
    if isinstance(parsed, _PathTarget):
        return parsed.path
    text = '%s://%s%s' % (parsed.scheme, parsed.netloc, parsed.path)
    return text + ('?' + parsed.query if parsed.query else '')


def local_path(parsed):
    """The absolute local path of a ``file``-like URI (``scheme:///abs``).

    Refuses relative paths and hosts other than this machine with a
    :class:`URIError` that says how to write the URI.
    """
    uri = uri_text(parsed)
    host = parsed.hostname or ''
    path = urllib.parse.unquote(parsed.path)
    if parsed.netloc.startswith(('.', '~')) or (host and not parsed.path):
        raise URIError(
            '%s: %r reads as a host name, not a file: write an absolute path '
            'after three slashes, as in %s:///absolute/path/to/file '
            '(relative paths are not accepted)' % (uri, parsed.netloc, parsed.scheme))
    if host not in ('', 'localhost') and host != socket.gethostname():
        raise URIError('%s: host %r is not this machine; only local files can '
                       'be opened' % (uri, host))
    if not path.startswith('/'):
        raise URIError('%s: the path %r is relative; write an absolute path, '
                       'as in %s:///absolute/path/to/file'
                       % (uri, path, parsed.scheme))
    return path


def reject_options(parsed, options, unsupported, reason):
    """Raise :class:`URIError` if ``options`` sets one of ``unsupported``."""
    for name in unsupported:
        if name in options:
            raise URIError('%s: parameter %r does not apply: %s'
                           % (uri_text(parsed), name, reason))


def require_value(parsed, options, name, value, reason):
    """Raise :class:`URIError` unless ``options[name]`` (if set) is ``value``."""
    if name in options and options[name] != value:
        raise URIError('%s: %s=%s is not supported: %s'
                       % (uri_text(parsed), name, str(options[name]).lower(),
                          reason))


def check_exists(parsed, path, options):
    """Refuse a missing ``path`` when ``create`` is false or ``read_only``."""
    if os.path.exists(path):
        return
    if not options.get('create', True):
        raise URIError('%s: %s does not exist and create=false'
                       % (uri_text(parsed), path))
    if options.get('read_only', False):
        raise URIError('%s: %s does not exist and cannot be created '
                       'read-only' % (uri_text(parsed), path))


# -- the storages objstore registers ---------------------------------------

def open_memory(parsed, options):
    """``memory://[name]``: a new, empty :class:`MemoryStorage` each time."""
    from objstore.storages import MemoryStorage

    reject_options(parsed, options, ('read_only', 'fsync', 'create'),
                   'a memory storage lives in this process only')
    require_value(parsed, options, 'keep_history', True,
                  'memory storages always keep history')
    if parsed.path not in ('', '/'):
        raise URIError('%s: a memory URI is memory:// or memory://name, '
                       'without a path' % uri_text(parsed))
    name = urllib.parse.unquote(parsed.netloc)
    return MemoryStorage(name) if name else MemoryStorage()


def open_file(parsed, options):
    """``file:///abs/path.fs``: an objstore :class:`FileStorage`."""
    return _file_storage(local_path(parsed), options, parsed)


# -- internals ---------------------------------------------------------------

def _file_storage(path, options, parsed):
    from objstore.storages import FileStorage

    require_value(parsed, options, 'keep_history', True,
                  'objstore file storages always keep history')
    check_exists(parsed, path, options)
    # Never FileStorage(create=True): that starts a new, empty file.
    return FileStorage(path, read_only=options.get('read_only', False),
                       fsync=options.get('fsync', True))


def _open_storage(target, options):
    """``(storage, db_options)`` for a path or URI ``target``."""
    if isinstance(target, os.PathLike):
        target = os.fspath(target)
    if isinstance(target, bytes):
        target = os.fsdecode(target)
    if not isinstance(target, str):
        raise TypeError('objstore.open needs a path, a URI or a storage '
                        'object (with loadBefore and tpc_begin), not %r'
                        % (target,))
    if not _URI.match(target):
        merged = _options({}, options, target)
        path = os.path.abspath(target)
        return (_file_storage(path, _storage_part(merged), _PathTarget(target)),
                _db_part(merged))

    parsed, storage_options, db_options = parse(target, options)
    known = schemes()
    entry_point = known.get(parsed.scheme)
    if entry_point is None:
        raise URIError('%s: unknown storage scheme %r; known schemes: %s '
                       '(plugins add more under the entry-point group %r)'
                       % (target, parsed.scheme, ', '.join(sorted(known)),
                          ENTRY_POINT_GROUP))
    factory = _load(entry_point, target)
    storage = factory(parsed, storage_options)
    return as_objstore_storage(storage), db_options


def _load(entry_point, uri):
    """The factory of ``entry_point``; Unsupported naming the missing extra."""
    try:
        return entry_point.load()
    except ImportError as exc:
        missing = exc.name or str(exc)
        extra = _extra_providing(missing)
        if extra:
            hint = "install objstore's %r extra: pip install 'objstore[%s]'" % (
                extra, extra)
        else:
            hint = 'install the package that provides it'
        raise errors.Unsupported(
            '%s: the %s:// storage needs %s, which is not installed; %s'
            % (uri, entry_point.name, missing, hint)) from exc


def _extra_providing(module_name):
    """The objstore extra whose requirements include ``module_name``."""
    wanted = _normalize(module_name.split('.')[0])
    try:
        requirements = importlib.metadata.requires('objstore') or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for requirement in requirements:
        extra = re.search(r'''extra\s*==\s*["']([^"']+)["']''', requirement)
        name = re.match(r'[A-Za-z0-9._-]+', requirement)
        if extra and name and _normalize(name.group()) == wanted:
            return extra.group(1)
    return None


def _normalize(name):
    return re.sub(r'[-_.]+', '-', name).lower()


def _options(query, keywords, where):
    """Validate and convert parameters; keywords override the query."""
    merged = {}
    for source in (query, keywords):
        for name, value in source.items():
            if name not in DB_OPTIONS and name not in STORAGE_OPTIONS:
                raise URIError('%s: unknown parameter %r; known parameters: %s'
                               % (where, name, ', '.join(
                                   sorted(DB_OPTIONS + STORAGE_OPTIONS))))
            merged[name] = _convert(name, value, where)
    return merged


def _convert(name, value, where):
    if name in _BOOLEANS:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise URIError('%s: parameter %s=%r is not a boolean (write true or '
                       'false, 1 or 0, yes or no)' % (where, name, value))
    if name in _INTEGERS:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and value.strip().isdigit():
            number = int(value)
        else:
            raise URIError('%s: parameter %s=%r is not a whole number'
                           % (where, name, value))
        if number < 0:
            raise URIError('%s: parameter %s=%r must not be negative'
                           % (where, name, value))
        return number
    if not isinstance(value, str) or not value:
        raise URIError('%s: parameter %s=%r must be a non-empty string'
                       % (where, name, value))
    return value


def _storage_part(options):
    return {k: v for k, v in options.items() if k in STORAGE_OPTIONS}


def _db_part(options):
    return {k: v for k, v in options.items() if k in DB_OPTIONS}


def _is_storage(target):
    return hasattr(target, 'loadBefore') and hasattr(target, 'tpc_begin')


def as_objstore_storage(storage):
    """``storage`` as objstore's DB expects it: a ZODB storage wrapped by
    :func:`objstore.zodb.from_zodb`, any other storage unchanged.

    ZODB storages are recognized by the ZODB interfaces they declare, so
    ZODB is imported only when the storage came from it (and ZODB is then
    loaded already).
    """
    from zope.interface import providedBy

    if any(iface.__module__.startswith('ZODB.')
           for iface in providedBy(storage).flattened()):
        from objstore.zodb import from_zodb
        return from_zodb(storage)
    return storage


class _PathTarget:
    """Stands for a plain path where factories expect a parsed URI."""

    scheme = 'file'

    def __init__(self, path):
        self.path = path

