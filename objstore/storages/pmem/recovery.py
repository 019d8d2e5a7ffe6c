"""Finding the pool's free space when it was not written down.

After an unclean close (or a damaged free-space list) the free space is
everything between the header and the end of the file that the root in
force does not reach: its table nodes and the records they point to.
Walking them is the only work an open does in proportion to the number
of objects, and only after a crash. Nothing is written.
"""
from objstore import errors
from objstore.storages.pmem import format as fmt
from objstore.storages.pmem import table
from objstore.storages.pmem.allocator import FreeSpace


def used_extents(path, m, root, size):
    """Every (offset, length) the table of ``root`` reaches: its nodes and
    its records, each checked for bounds and for naming its oid."""
    used = []
    count = 0
    for kind, offset, n in table.walk(path, m, root.table, root.height,
                                      size):
        if kind == 'node':
            used.append((offset, fmt.NODE_SIZE))
            continue
        extent = record_extent(path, m, offset, n, size)
        used.append((offset, extent))
        # A deletion record is not an object (see format, item 4).
        if extent > fmt.RECORD_HEAD or not is_deletion(m, offset):
            count += 1
    return used, count


def is_deletion(m, offset):
    crc = fmt.ENTRY.unpack_from(m, offset)[0] & 0xFFFFFFFF
    head = m[offset + 4:offset + fmt.RECORD_HEAD]
    return crc == fmt.crc32(head) ^ fmt.DELETION


def record_extent(path, m, offset, n, size):
    """The aligned length of the record of oid ``n`` at ``offset``."""
    if offset < fmt.HEADER_SIZE or offset % fmt.ALIGN or (
            offset + fmt.RECORD_HEAD > size):
        raise errors.CorruptionError(
            path, offset, 'a table entry points outside the pool',
            oid=n.to_bytes(8, 'big'))
    _, length, oid, _ = fmt.RECORD.unpack_from(m, offset)
    if oid != n.to_bytes(8, 'big') or offset + fmt.RECORD_HEAD + length > size:
        raise errors.CorruptionError(
            path, offset, 'the record names another object or runs past'
            ' the end of the pool', oid=n.to_bytes(8, 'big'))
    return fmt.aligned(fmt.RECORD_HEAD + length)


def rebuild(path, m, root, size):
    """The free space of a pool of ``size`` bytes whose root is ``root``;
    CorruptionError if two things it reaches overlap."""
    used, count = used_extents(path, m, root, size)
    if count != root.count:
        raise errors.CorruptionError(
            path, fmt.SLOT_OFFSETS[0], 'the root counts %d objects, its'
            ' table holds %d' % (root.count, count), tid=root.tid)
    used.sort()
    gaps = []
    end = fmt.HEADER_SIZE
    for offset, length in used:
        if offset < end:
            raise errors.CorruptionError(
                path, offset, 'two items of the table overlap')
        if offset > end:
            gaps.append((end, offset - end))
        end = offset + length
    if size > end:
        gaps.append((end, size - end))
    return FreeSpace(gaps)


def exclusive_extents(path, m, old, new, size):
    """What the table of root ``old`` reaches and that of ``new`` does not
    (a reader's older snapshot against the root in force)."""
    out = []
    for kind, offset, n in table.diff_items(path, m, old.table, old.height,
                                            new.table, new.height, size):
        if kind == 'node':
            out.append((offset, fmt.NODE_SIZE))
        else:
            out.append((offset, record_extent(path, m, offset, n, size)))
    return out
