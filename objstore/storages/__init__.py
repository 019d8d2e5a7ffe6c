"""objstore's storages. Each class's docstring states its durability guarantee."""
from objstore.storages.memory import MemoryStorage  # noqa: F401
from objstore.storages.file import FileStorage  # noqa: F401
