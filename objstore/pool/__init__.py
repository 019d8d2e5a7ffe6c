"""objstore.pool: pmemobj's persistent object pool, on objstore's DB.

The public API is pmemobj's (``nvm.pmemobj``), re-exported here:

* :func:`create`, :func:`open`, :class:`PersistentObjectPool` -- a pool in
  one file (by default a :class:`objstore.storages.PMemStorage`), its
  ``root``, ``new``, ``transaction``, ``gc``, ``persist_via_pickle`` and
  ``close``; ``MIN_POOL_SIZE``;
* :class:`PersistentList`, :class:`PersistentDict`,
  :class:`PersistentObject` -- the objects a pool keeps;
* :class:`MemoryManager` (``pool.mm``), ``OID_NULL``, ``POBJECT_TYPE_NUM``
  -- raw transactional memory blocks.

Where objstore differs from pmemobj: ``mm.direct`` returns a memoryview
(writable inside a transaction, of a shadow copy that becomes the block
at commit), not an address; ``zrealloc`` takes the oid (the seed's
signature lacked it); the pool has its own transaction manager; a pool
grows past ``pool_size`` as it fills; pool objects are
``persistent.Persistent`` objects, so a custom type subclasses
:class:`PersistentObject` rather than implementing pmemobj's raw-memory
protocol; ``gc`` returns counts only with ``debug``. See docs/pool.rst.
"""
from objstore.pool.memory import OID_NULL, POBJECT_TYPE_NUM, MemoryManager
from objstore.pool.pdict import PersistentDict
from objstore.pool.plist import PersistentList
from objstore.pool.pobject import PersistentObject
from objstore.pool.pool import (
    FORMAT_VERSION, MIN_POOL_SIZE, PersistentObjectPool, create, open)

__all__ = [
    'create', 'open', 'PersistentObjectPool', 'MIN_POOL_SIZE',
    'FORMAT_VERSION', 'PersistentList', 'PersistentDict',
    'PersistentObject', 'MemoryManager', 'OID_NULL', 'POBJECT_TYPE_NUM',
]
