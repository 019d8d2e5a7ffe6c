"""objstore's storages. Each class's docstring states its durability guarantee."""
from objstore.storages.file import FileStorage
from objstore.storages.memory import MemoryStorage

__all__ = ['FileStorage', 'MemoryStorage']
