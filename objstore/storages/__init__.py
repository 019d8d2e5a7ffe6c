"""objstore's storages. Each class's docstring states its durability guarantee."""
from objstore.storages.file import FileStorage
from objstore.storages.memory import MemoryStorage
from objstore.storages.pmem import PMemStorage

__all__ = ['FileStorage', 'MemoryStorage', 'PMemStorage']


def __getattr__(name):
    # PostgreSQLStorage needs psycopg (the 'postgresql' extra): imported
    # on first use, so the other storages load without it.
    if name == 'PostgreSQLStorage':
        from objstore.storages.postgresql import PostgreSQLStorage
        return PostgreSQLStorage
    raise AttributeError('module %r has no attribute %r' % (__name__, name))
