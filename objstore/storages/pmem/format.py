"""The pool file's layout, and the checks that guard every read of it.

All numbers are unsigned little-endian; oids and tids are the usual 8
bytes (big-endian integers, compared as bytes). Offsets are from the
start of the file.

1. Header, bytes 0-4095:
   0    magic, 8 bytes: ``b'OSPMEM'`` and the format version as two ASCII
        digits (``b'OSPMEM01'``); a file with the prefix and a higher
        version is refused with ``UnsupportedVersionError``.
   8    clean-shutdown flag, 8 bytes: CLEAN or DIRTY (any other value,
        say a torn write, counts as DIRTY).
   16   node size and fan-out of the object table (u32 each), checked.
   128  root slot A, 128 bytes; 256: root slot B (see ROOT below).
2. Heap, from byte 4096 to the end of the file: records, object-table
   nodes and (after a clean close) the free-space list, each at a
   16-byte aligned offset. Everything no root reaches is free.
3. Root slot (ROOT, 76 bytes used): generation (u64; the valid slot
   with the higher one is in force), tid (8 bytes: the last committed
   transaction), max oid (u64: new_oid continues above it), table
   offset (u64, 0: no objects), table height (u32), reserved (u32),
   file size at commit (u64; a shorter file was truncated), object
   count (u64), free-list offset and length (u64 each; non-zero only in
   a root written by a clean close), CRC-32 of the preceding 72 bytes.
4. Record (RECORD header, 24 bytes, then the data): CRC-32 of the 20
   header bytes after it and the data, data length (u32), oid, tid. A
   deletion record (``deleteObject``) has no data and the CRC-32 of its
   header inverted, so it never passes as an empty record.
5. Table node (NODE_SIZE bytes): CRC-32 of the rest of the node, level
   (u16, 0 for leaves), reserved (u16), then FANOUT u64 entries. A leaf
   entry is the offset of an object's current record (0: none); an
   inner entry the offset of a child node (0: an empty subtree). Oid
   ``n`` sits in leaf ``n // FANOUT`` at entry ``n % FANOUT``; a table
   of height ``h`` holds oids below ``FANOUT ** h``.
6. Free-space list (written by a clean close): CRC-32 of the rest, a
   count (u32), then count pairs (offset, length) as u64, sorted,
   disjoint.
"""
import operator
import struct
import zlib

from objstore import errors

MAGIC_PREFIX = b'OSPMEM'
VERSION = 1
MAGIC = MAGIC_PREFIX + b'%02d' % VERSION

CLEAN = int.from_bytes(b'clean\0\0\0', 'little')
DIRTY = int.from_bytes(b'dirty\0\0\0', 'little')

HEADER_SIZE = 4096
FLAG_OFFSET = 8
GEOMETRY_OFFSET = 16
SLOT_OFFSETS = (128, 256)
SLOT_SIZE = 128

ALIGN = 16
NODE_SIZE = 4096
FANOUT = (NODE_SIZE - 8) // 8
NODE_HEAD = struct.Struct('<IHH')
ENTRY = struct.Struct('<Q')
GEOMETRY = struct.Struct('<II')

ROOT = struct.Struct('<Q8sQQIIQQQQ')
ROOT_CRC = struct.Struct('<I')
RECORD = struct.Struct('<II8s8s')
RECORD_HEAD = RECORD.size
FREE_HEAD = struct.Struct('<II')
EXTENT = struct.Struct('<QQ')

#: Below this a pool has no room worth having (header plus a few nodes).
MIN_POOL_SIZE = 64 << 10
#: The size of a new pool unless another is asked for (libpmemobj's).
DEFAULT_POOL_SIZE = 8 << 20

crc32 = zlib.crc32
#: XORed into a deletion record's checksum.
DELETION = 0xFFFFFFFF


def aligned(size):
    """``size`` rounded up to the heap's alignment."""
    return (size + ALIGN - 1) & ~(ALIGN - 1)


class Root:
    """One root slot's contents: the state a committed transaction left."""

    __slots__ = ('generation', 'tid', 'max_oid', 'table', 'height', 'size',
                 'count', 'free_offset', 'free_length')

    def __init__(self, generation, tid, max_oid, table, height, size, count,
                 free_offset=0, free_length=0):
        self.generation = generation
        self.tid = tid
        self.max_oid = max_oid
        self.table = table
        self.height = height
        self.size = size
        self.count = count
        self.free_offset = free_offset
        self.free_length = free_length

    def pack(self):
        body = ROOT.pack(self.generation, self.tid, self.max_oid, self.table,
                         self.height, 0, self.size, self.count,
                         self.free_offset, self.free_length)
        return body + ROOT_CRC.pack(crc32(body))

    @classmethod
    def unpack(cls, m, offset):
        """The root in the slot at ``offset``, or None if it fails its checksum."""
        body = m[offset:offset + ROOT.size]
        crc, = ROOT_CRC.unpack_from(m, offset + ROOT.size)
        if crc != crc32(body):
            return None
        (generation, tid, max_oid, table, height, _, size, count, free_offset,
         free_length) = ROOT.unpack(body)
        return cls(generation, tid, max_oid, table, height, size, count,
                   free_offset, free_length)

    def replace(self, **changes):
        root = Root(*(getattr(self, name) for name in self.__slots__))
        for name, value in changes.items():
            setattr(root, name, value)
        return root


def new_header():
    """The header of a new pool, without its magic (written last)."""
    header = bytearray(HEADER_SIZE)
    struct.pack_into('<Q', header, FLAG_OFFSET, CLEAN)
    GEOMETRY.pack_into(header, GEOMETRY_OFFSET, NODE_SIZE, FANOUT)
    return header


def check_header(path, m, size):
    """Raise the right ``objstore.errors`` exception unless the header is
    one this version reads; return the clean-shutdown flag (a bool)."""
    if size < HEADER_SIZE + NODE_SIZE:
        if size >= len(MAGIC) and m[:len(MAGIC_PREFIX)] == MAGIC_PREFIX:
            raise errors.CorruptionError(
                path, size, 'the pool is truncated: %d bytes, shorter than'
                ' its header' % size)
        raise errors.FileFormatError(
            path, 'not an objstore pmem pool (%d bytes, too short)' % size)
    magic = m[:len(MAGIC)]
    if magic != MAGIC:
        if magic.startswith(MAGIC_PREFIX) and magic[6:].isdigit():
            raise errors.UnsupportedVersionError(
                path, 'pool format version %d; this objstore reads version'
                ' %d' % (int(magic[6:]), VERSION))
        if magic == b'\0' * len(MAGIC):
            raise errors.FileFormatError(
                path, 'not an objstore pmem pool (no magic: an empty file,'
                ' or a pool whose creation was interrupted)')
        raise errors.FileFormatError(
            path, 'not an objstore pmem pool (magic %r)' % bytes(magic))
    geometry = GEOMETRY.unpack_from(m, GEOMETRY_OFFSET)
    if geometry != (NODE_SIZE, FANOUT):
        raise errors.CorruptionError(
            path, GEOMETRY_OFFSET, 'table geometry %r, expected %r'
            % (geometry, (NODE_SIZE, FANOUT)))
    flag, = ENTRY.unpack_from(m, FLAG_OFFSET)
    return flag == CLEAN


def read_root(path, m, size):
    """The root in force (the valid slot with the higher generation) and
    its slot index; CorruptionError if neither slot is valid or the root
    points outside the file."""
    roots = [Root.unpack(m, offset) for offset in SLOT_OFFSETS]
    valid = [(root.generation, index) for index, root in enumerate(roots)
             if root is not None]
    if not valid:
        raise errors.CorruptionError(
            path, SLOT_OFFSETS[0], 'both root slots fail their checksum')
    index = max(valid)[1]
    root = roots[index]
    if root.size > size:
        raise errors.CorruptionError(
            path, size, 'the pool is truncated: %d bytes, its last commit'
            ' needs %d' % (size, root.size), tid=root.tid)
    if root.table and not valid_node_offset(root.table, root.size):
        raise errors.CorruptionError(
            path, SLOT_OFFSETS[index], 'the root points to a table node at'
            ' %d, outside the pool' % root.table, tid=root.tid)
    if root.height > 8 or (root.table == 0) != (root.height == 0):
        raise errors.CorruptionError(
            path, SLOT_OFFSETS[index], 'impossible table height %d'
            % root.height, tid=root.tid)
    return root, index


def valid_node_offset(offset, size):
    return (offset >= HEADER_SIZE and offset % ALIGN == 0
            and offset + NODE_SIZE <= size)


def pack_node(level, entries_bytes):
    """A node's bytes from its level and its entries (FANOUT * 8 bytes)."""
    tail = struct.pack('<HH', level, 0) + entries_bytes
    return struct.pack('<I', crc32(tail)) + tail


def pack_record(oid, tid, data):
    """A record's bytes; ``data`` None makes a deletion record."""
    if data is None:
        head = struct.pack('<I8s8s', 0, oid, tid)
        return struct.pack('<I', crc32(head) ^ DELETION) + head
    head = struct.pack('<I8s8s', len(data), oid, tid)
    return struct.pack('<I', crc32(data, crc32(head))) + head + data


def pack_free_list(extents):
    body = b''.join(EXTENT.pack(offset, length) for offset, length in extents)
    count = struct.pack('<I', len(extents))
    return struct.pack('<I', crc32(body, crc32(count))) + count + body


def unpack_free_list(m, offset, length, size):
    """``(offsets, lengths)`` of the extents of the free-space list at
    ``offset``, or None if it is damaged (bad checksum, out of bounds,
    overlapping)."""
    if (offset < HEADER_SIZE or length < FREE_HEAD.size
            or offset + length > size):
        return None
    crc, count = FREE_HEAD.unpack_from(m, offset)
    if FREE_HEAD.size + count * EXTENT.size != length:
        return None
    body = m[offset + FREE_HEAD.size:offset + length]
    if crc != crc32(body, crc32(struct.pack('<I', count))):
        return None
    # Checked without a Python loop per extent (an open after a clean
    # close should not slow down with the number of extents): every
    # number aligned (the low byte of each little-endian u64 is a
    # multiple of ALIGN), each extent non-empty, sorted and disjoint,
    # all inside the pool.
    flat = struct.unpack('<%dQ' % (2 * count), body)
    starts, lengths = flat[0::2], flat[1::2]
    if count and (body[::8].translate(None, _ALIGNED_BYTES)
                  or starts[0] < HEADER_SIZE or min(lengths) == 0
                  or starts[-1] + lengths[-1] > size
                  or not all(map(operator.le,
                                 map(operator.add, starts, lengths),
                                 starts[1:]))):
        return None
    return starts, lengths


_ALIGNED_BYTES = bytes(range(0, 256, ALIGN))
