"""PMemStorage: objstore's storage in one memory-mapped pool file.

See :mod:`objstore.storages.pmem.storage` for the trade-offs and the
commit sequence, :mod:`.format` for the file layout.
"""
from objstore.storages.pmem.format import DEFAULT_POOL_SIZE, MIN_POOL_SIZE
from objstore.storages.pmem.storage import PMemStorage

__all__ = ['PMemStorage', 'DEFAULT_POOL_SIZE', 'MIN_POOL_SIZE', 'open_uri']


def open_uri(parsed, options):
    """``pmem:///abs/path.pool``: the entry point of the ``pmem`` scheme.

    ``read_only`` and ``create`` (create a missing pool; default true) are
    honoured; ``fsync`` is refused (a pmem commit always flushes) and so is
    ``keep_history=true`` (the pool keeps no history). The pool is created
    with the default size and grows as needed.
    """
    from objstore import uri

    uri.reject_options(parsed, options, ('fsync',),
                       'a pmem pool flushes (msync) every commit')
    uri.require_value(parsed, options, 'keep_history', False,
                      'a pmem pool keeps no history (old revisions live only'
                      ' while an open connection reads them)')
    path = uri.local_path(parsed)
    uri.check_exists(parsed, path, options)
    return PMemStorage(path, read_only=options.get('read_only', False))
