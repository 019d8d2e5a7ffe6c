"""objstore's embedded default storage: one append-only, checksummed file.

See :class:`FileStorage`; the file format is documented in
:mod:`objstore.storages.file.format`. POSIX only: it reads with
``os.pread`` and locks with ``flock``.
"""
from objstore.storages.file.format import TruncatedTailWarning  # noqa: F401
from objstore.storages.file.storage import FileStorage  # noqa: F401

__all__ = ['FileStorage', 'TruncatedTailWarning']
