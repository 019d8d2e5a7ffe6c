"""Reading one committed state of the pool: a root and the table it reaches.

A :class:`Snapshot` never changes: its table is copy-on-write and the
storage frees nothing it reaches while the snapshot is pinned. So its
cache of leaf offsets stays valid for its whole life, and a load is one
dict lookup, one entry read, one record header read, one slice and one
checksum.
"""
import struct

from objstore import errors
from objstore.storages.pmem import format as fmt
from objstore.storages.pmem import table

FANOUT = fmt.FANOUT
_ENTRY = fmt.ENTRY.unpack_from
_RECORD = fmt.RECORD.unpack_from
_HEAD = fmt.RECORD_HEAD
_crc32 = fmt.crc32


class Snapshot:
    """The state the root ``root`` (a :class:`format.Root`) describes.

    ``pool`` is the storage's :class:`pool.PoolFile`; ``leaves`` maps a
    leaf index to its offset (0: empty), filled as loads need it.
    """

    __slots__ = ('pool', 'tid', 'table', 'height', 'size', 'count',
                 'max_oid', 'generation', 'leaves', '__weakref__')

    def __init__(self, pool, root, leaves=None):
        self.pool = pool
        self.tid = root.tid
        self.table = root.table
        self.height = root.height
        self.size = root.size
        self.count = root.count
        self.max_oid = root.max_oid
        self.generation = root.generation
        self.leaves = {} if leaves is None else leaves

    def __repr__(self):
        return '<Snapshot tid %s>' % errors.oid_repr(self.tid)

    def load(self, oid):
        """``(data, tid)`` of ``oid``'s record here; POSKeyError if none
        (or a deletion record).

        The bytes are copied out of the map and checked against their
        checksum and oid; damage raises CorruptionError.
        """
        try:
            leaf_index, entry = divmod(int.from_bytes(oid, 'big'), FANOUT)
            leaf = self.leaves.get(leaf_index)
            if leaf is None:
                leaf = self._leaf(leaf_index)
            if leaf:
                m = self.pool.map
                offset, = _ENTRY(m, leaf + 8 + 8 * entry)
                if offset:
                    crc, length, record_oid, tid = _RECORD(m, offset)
                    start = offset + _HEAD
                    if start + length <= self.size:
                        data = m[start:start + length]
                        if record_oid == oid and _crc32(data, _crc32(
                                m[offset + 4:start])) == crc:
                            return data, tid
                    return self._checked(offset, oid)
        except (struct.error, TypeError, ValueError, OverflowError):
            raise self._failed(oid)
        raise errors.POSKeyError(oid)

    def record(self, offset, oid):
        """``(data, tid)`` of the record of ``oid`` at ``offset``, checked;
        data None for a deletion record."""
        m = self.pool.map
        if offset < fmt.HEADER_SIZE or offset + _HEAD > self.size:
            raise self._damaged(offset, oid)
        crc, length, record_oid, tid = _RECORD(m, offset)
        start = offset + _HEAD
        if record_oid != oid or start + length > self.size:
            raise self._damaged(offset, oid)
        data = m[start:start + length]
        check = _crc32(data, _crc32(m[offset + 4:start]))
        if check == crc:
            return data, tid
        if not length and check ^ fmt.DELETION == crc:
            return None, tid
        raise self._damaged(offset, oid)

    def _checked(self, offset, oid):
        """The slow path of :meth:`load`: a deletion record, or damage."""
        data, tid = self.record(offset, oid)
        if data is None:
            raise errors.POSKeyError(oid)
        return data, tid

    def offset(self, n):
        """The record offset of oid ``n`` (an int) here, 0 if none."""
        leaf_index, entry = divmod(n, FANOUT)
        leaf = self.leaves.get(leaf_index)
        if leaf is None:
            leaf = self._leaf(leaf_index)
        if not leaf:
            return 0
        return _ENTRY(self.pool.map, leaf + 8 + 8 * entry)[0]

    def state(self, oid):
        """``(tid, deleted)`` of ``oid``'s record here, or None if it has
        none (``deleted``: a deletion record)."""
        offset = self.offset(int.from_bytes(oid, 'big'))
        if not offset:
            return None
        length, tid = self.header(offset, oid)
        return tid, not length and self.record(offset, oid)[0] is None

    def header(self, offset, oid):
        """``(length, tid)`` of the record of ``oid`` at ``offset``,
        checked against the bounds of the pool."""
        if offset < fmt.HEADER_SIZE or offset + _HEAD > self.size:
            raise self._damaged(offset, oid)
        _, length, record_oid, tid = _RECORD(self.pool.map, offset)
        if record_oid != oid or offset + _HEAD + length > self.size:
            raise self._damaged(offset, oid)
        return length, tid

    def _leaf(self, leaf_index):
        leaf = table.find_leaf(self.pool.path, self.pool.map, self.table,
                               self.height, self.size, leaf_index)
        self.leaves[leaf_index] = leaf
        return leaf

    def _damaged(self, offset, oid):
        return errors.CorruptionError(
            self.pool.path, offset, 'the record fails its checksum, names'
            ' another object or runs past the end of the pool', oid=oid)

    def _failed(self, oid):
        if self.pool.map is None:
            return errors.StorageClosedError(
                'storage %s is closed' % self.pool.path)
        if not isinstance(oid, bytes) or len(oid) != 8:
            return errors.POSKeyError(oid)
        return errors.CorruptionError(
            self.pool.path, 0, 'a table entry points outside the pool',
            oid=oid)
