"""A pool's gc: free what its root does not reach.

Two steps. First, in one transaction, the orphans of the memory manager
go: blocks and boxed values of type ``POBJECT_TYPE_NUM`` whose reference
count is 0 (never counted, or left by a crash). Then the storage packs:
every record the database root no longer reaches is freed (the pool's
header holds the user's root value and the blocks' tree, so those, and
what they reach, stay).

With ``debug`` the records are walked (from the database root, and over
every current record when the storage can list them) to log each object
freed and count, as pmemobj's gc does: ``(type_counts, gc_counts)``, both
dicts. ``type_counts`` maps a class name (``'PersistentList'``,
``'Block'``, ...) to the number of such objects that survive, not
counting the pool's own bookkeeping (the database root, the header, the
blocks' tree). ``gc_counts`` has ``'objects-total'`` (records before),
``'objects-live'`` (records kept), ``'objects-gced'`` (records freed),
``'blocks-total'`` (blocks, boxed values and pins listed before) and
``'orphans0-gced'`` (those freed because their count was 0).
"""
import logging

from objstore.pool.memory import POBJECT_TYPE_NUM
from objstore.serialize import class_name_of, references
from objstore.storages.base import z64

logger = logging.getLogger('objstore.pool')

_BOOKKEEPING = ('persistent.mapping.PersistentMapping',
                'objstore.pool.pool.PoolHeader')


def collect(pool, debug):
    """Run gc on ``pool`` (its lock held, no transaction open)."""
    header = pool._header
    with pool._atomic():
        blocks = header.blocks
        orphans = []
        listed = 0
        for number, (obj, type_num, count) in blocks.items():
            listed += 1
            if count == 0 and type_num == POBJECT_TYPE_NUM:
                orphans.append(number)
        for number in orphans:
            if debug:
                logger.warning('gc: freeing orphan %r (reference count 0)',
                               (pool._pool_id, number))
            del blocks[number]
    if not debug:
        pool._pack()
        return None
    storage = pool._db.storage
    live = _reachable(storage)
    total = _current_records(storage)
    if total is None:
        total_count = len(storage)
    else:
        total_count = len(total)
        for oid in sorted(set(total) - set(live)):
            logger.warning('gc: freeing unreachable %s (oid %r)',
                           total[oid] or 'object',
                           (pool._pool_id, int.from_bytes(oid, 'big')))
    pool._pack()
    type_counts = {}
    for oid, name in live.items():
        if oid == z64 or name in _BOOKKEEPING or name.startswith('BTrees.'):
            continue
        short = name.rpartition('.')[2] or 'object'
        type_counts[short] = type_counts.get(short, 0) + 1
    gc_counts = {
        'objects-total': total_count,
        'objects-live': len(live),
        'objects-gced': max(0, total_count - len(live)),
        'blocks-total': listed,
        'orphans0-gced': len(orphans),
    }
    return type_counts, gc_counts


def _reachable(storage):
    """``{oid: class name}`` of every record the database root reaches."""
    found = {}
    todo = [z64]
    while todo:
        oid = todo.pop()
        if oid in found:
            continue
        try:
            data = storage.load(oid)[0]
        except KeyError:
            continue
        found[oid] = class_name_of(data)
        todo.extend(o for o in references(data) if o not in found)
    return found


def _current_records(storage):
    """``{oid: class name}`` of every current record, or None when the
    storage cannot list them."""
    iternext = getattr(storage, 'record_iternext', None)
    if iternext is None:
        return None
    records = {}
    cursor = None
    while True:
        try:
            oid, _tid, data, cursor = iternext(cursor)
        except KeyError:
            break
        records[oid] = class_name_of(data)
        if cursor is None:
            break
    return records
