"""Fixtures and helpers shared by the pool's tests (tests/test_pool*.py).

Import from here (``from test_pool_support import ...``). Pools run on
every storage kind in :data:`KINDS`: ``pmem`` (the pool's default
storage, PMemStorage) once it can be imported, and ``file`` (objstore
FileStorage through the pool's internal storage-factory hook, without
fsync: a crashed process loses nothing the OS holds).
"""
import pytest

from objstore import pool as pool_mod
from objstore.storages.file import FileStorage


def _pmem_available():
    try:
        from objstore.storages import PMemStorage  # noqa: F401
    except ImportError:
        return False
    return True


PMEM = _pmem_available()
KINDS = ['pmem', 'file']
#: The kinds that can run now (for hypothesis, which cannot skip a draw).
AVAILABLE_KINDS = KINDS if PMEM else ['file']


def file_factory(path, create, pool_size, read_only):
    """The pool's storage-factory hook for FileStorage, without fsync."""
    return FileStorage(path, create=create, read_only=read_only, fsync=False)


def factory_for(kind):
    """The ``_storage_factory`` for a storage kind (None: the default)."""
    if kind == 'pmem':
        if not PMEM:
            pytest.skip('PMemStorage is not available yet')
        return None
    return file_factory


class PoolMaker:
    """Opens pools on one path with one storage kind; closes them all at
    teardown. ``maker(flag='c', **kw)`` opens; ``maker.path`` is the file."""

    def __init__(self, kind, path):
        self.kind = kind
        self.path = path
        self.factory = factory_for(kind)
        self.made = []

    def __call__(self, flag='c', path=None, **kw):
        pool = pool_mod.PersistentObjectPool(
            str(path or self.path), flag, _storage_factory=self.factory, **kw)
        self.made.append(pool)
        return pool

    def reopen(self, pool, **kw):
        """Close ``pool`` and open its file again."""
        pool.close()
        return self('w', path=pool.filename, **kw)

    def close_all(self):
        for pool in self.made:
            if not pool.closed and not pool._depth:
                pool.close()


@pytest.fixture(params=KINDS)
def make_pool(request, tmp_path):
    """A :class:`PoolMaker` for each storage kind."""
    maker = PoolMaker(request.param, tmp_path / 'test.pool')
    yield maker
    maker.close_all()


@pytest.fixture
def pool(make_pool):
    """A new pool, closed after the test."""
    return make_pool('x')


def storage_records(pool):
    """How many records the pool's storage holds."""
    return len(pool._db.storage)
