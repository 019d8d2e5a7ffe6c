"""The oid index of FileStorage, and its checkpoint files.

:class:`OidIndex` keeps, for every oid, the *entry* of its current
record: the record's file offset, its tid, and the offset of the oid's
previous record (the current record's back pointer, 0 if none). The tid
and back pointer let ``loadBefore`` go straight to the revision before
the current one, with one read instead of two (see
:mod:`objstore.storages.file.revisions`). They are taken from checksummed
bytes only: the records a commit writes, or a scan of transactions whose
checksums were verified.

The index is compact: oids are grouped by their first six bytes; a group
is a ``BTrees.fsBTree.fsBucket`` mapping the last two bytes to a 6-byte
slot number, and a ``bytearray`` of 24-byte rows, one per slot: offset
(8), tid (8), previous offset (8). A new oid appends a row; a commit
overwrites its row in place. A million objects take about 32 MB, where a
dict of tuples would take over 200 MB, and a group serializes to and from
flat bytes in C.

A checkpoint file (``<log>.index``) holds the index as of one log
position, so that opening reads the checkpoint plus only the log written
after it. It is written to a temporary file, fsynced and renamed over the
old one. Layout (numbers unsigned big-endian):

1. ``b'OBJX'``, format version (2 bytes, :data:`CHECKPOINT_VERSION`),
   reserved (2 bytes, zero)
2. the log's file id (8), the log offset the checkpoint covers (8), the
   tid of the transaction ending there (8), the largest oid (8), the
   number of entries (8), the number of groups ``G`` (4)
3. ``G`` directory entries: the 6-byte oid prefix, the entry count ``n``
   (4), the CRC-32 of the group's bytes (4)
4. CRC-32 of sections 1-3 (4)
5. the groups' bytes in directory order, ``32 n`` per group: the 2-byte
   oid suffixes then their 6-byte slot numbers (``fsBucket.toString``),
   then the ``n`` rows in slot order

Version history: version 2 held offsets alone (``8 n`` bytes per group).
A checkpoint of any other version than this code's is ignored, like any
unusable checkpoint: the log is scanned instead, and the next checkpoint
is written in the current version.

Opening verifies sections 1-4 only; a group is read and its checksum
verified the first time it is used, so opening costs the same for a
thousand objects as for a million. A checkpoint that does not belong to
the log (another file id, a log shorter than its position, no committed
transaction with its tid ending there) or fails a checksum at open is
ignored and the log scanned instead; a group found damaged later is
replaced, with every group not read yet, from a scan of the log up to the
checkpoint's position.
"""
import bisect
import os
import struct
import threading
import zlib

from BTrees.fsBTree import fsBucket

from objstore.storages.file import fsio

CHECKPOINT_MAGIC = b'OBJX'
#: Checkpoints of other versions are ignored (the log is scanned).
CHECKPOINT_VERSION = 3
_HEAD = struct.Struct('>4sHH8sQ8s8sQI')
_ENTRY = struct.Struct('>6sII')
_CRC = struct.Struct('>I')
#: A row: offset, tid, previous offset.
_ROW = struct.Struct('>Q8sQ')
_ROW_SIZE = _ROW.size
_row = _ROW.unpack_from
_offset = struct.Struct('>Q').unpack_from
#: Bytes per entry in a checkpoint: suffix, slot number, row.
_ENTRY_BYTES = 8 + _ROW_SIZE


class OidIndex:
    """Maps 8-byte oids to the entries of their current records.

    :meth:`get` gives the record's offset, :meth:`entry` the whole entry
    ``(offset, tid, previous offset)``; :meth:`update` takes entries.
    Iteration is in oid order. Thread-safe for one writer and any number of readers: the first use
    of a group still in the checkpoint file loads it under a lock.
    """

    __slots__ = ('_groups', '_prefixes', '_count', '_lazy', '_source',
                 '_mutex')

    def __init__(self):
        self._groups = {}
        self._prefixes = None
        self._count = 0
        self._lazy = {}
        self._source = None
        self._mutex = threading.Lock()

    def __len__(self):
        return self._count

    def _group(self, prefix):
        """The group of ``prefix`` (loading it if still lazy), or None."""
        group = self._groups.get(prefix)
        if group is not None or not self._lazy:
            return group
        with self._mutex:
            group = self._groups.get(prefix)
            if group is None and prefix in self._lazy:
                group = self._source.load(self._lazy[prefix])
                if group is None:
                    self._recover()
                    return self._groups.get(prefix)
                # Published before it leaves _lazy: a reader that misses
                # it in _groups comes here and waits for the lock.
                self._groups[prefix] = group
                del self._lazy[prefix]
                if not self._lazy:
                    self._release_source()
            return group

    def _recover(self):
        """A lazy group failed its checksum: take every group still lazy
        from a scan of the log the checkpoint covered."""
        fresh = self._source.rebuild()
        for prefix in list(self._lazy):
            group = fresh._groups.get(prefix)
            if group is not None:
                self._groups[prefix] = group
        self._lazy = {}
        self._prefixes = None
        self._count = sum(len(group[0]) for group in self._groups.values())
        self._release_source()

    def _release_source(self):
        source, self._source = self._source, None
        if source is not None:
            source.close()

    def close(self):
        """Release the checkpoint file a lazy index still reads from."""
        with self._mutex:
            self._release_source()

    def get(self, oid, default=None):
        """The offset of ``oid``'s current record, else ``default``."""
        group = self._groups.get(oid[:6])
        if group is None:
            if not self._lazy:
                return default
            group = self._group(oid[:6])
            if group is None:
                return default
        slot = group[0].get(oid[6:])
        if slot is None:
            return default
        return _offset(group[1], int.from_bytes(slot, 'big') * _ROW_SIZE)[0]

    def entry(self, oid):
        """``(offset, tid, previous offset)`` of ``oid``'s current record,
        or None."""
        group = self._groups.get(oid[:6])
        if group is None:
            if not self._lazy:
                return None
            group = self._group(oid[:6])
            if group is None:
                return None
        slot = group[0].get(oid[6:])
        if slot is None:
            return None
        return _row(group[1], int.from_bytes(slot, 'big') * _ROW_SIZE)

    def __contains__(self, oid):
        group = self._group(oid[:6])
        return group is not None and oid[6:] in group[0]

    def __setitem__(self, oid, entry):
        self.update({oid: entry})

    def update(self, mapping):
        """Set the entries ``{oid: (offset, tid, previous offset)}``."""
        groups = self._groups
        pack = _ROW.pack
        added = 0
        for oid, entry in mapping.items():
            group = groups.get(oid[:6])
            if group is None:
                group = self._new_group(oid[:6])
            bucket = group[0]
            suffix = oid[6:]
            slot = bucket.get(suffix)
            if slot is None:
                # The row first: a reader never finds a slot without one.
                group[1].extend(pack(*entry))
                bucket[suffix] = len(bucket).to_bytes(6, 'big')
                added += 1
            else:
                at = int.from_bytes(slot, 'big') * _ROW_SIZE
                group[1][at:at + _ROW_SIZE] = pack(*entry)
        self._count += added

    def _new_group(self, prefix):
        """The group of ``prefix``, created empty if there is none."""
        group = self._group(prefix)
        if group is None:
            group = self._groups[prefix] = (fsBucket(), bytearray())
            self._prefixes = None
        return group

    def _sorted_prefixes(self):
        prefixes = self._prefixes
        if prefixes is None:
            prefixes = self._prefixes = sorted(set(self._groups)
                                               | set(self._lazy))
        return prefixes

    def min_key(self, start=None):
        """The smallest oid >= ``start`` (any oid if None), or None."""
        prefixes = self._sorted_prefixes()
        i = 0 if start is None else bisect.bisect_left(prefixes, start[:6])
        while i < len(prefixes):
            prefix = prefixes[i]
            group = self._group(prefix)
            try:
                if start is not None and prefix == start[:6]:
                    return prefix + group[0].minKey(start[6:])
                return prefix + group[0].minKey()
            except ValueError:
                i += 1
        return None

    def items(self):
        """``(oid, offset)`` pairs in oid order."""
        for prefix in list(self._sorted_prefixes()):
            bucket, rows = self._group(prefix)
            for suffix, slot in bucket.items():
                yield prefix + suffix, _offset(
                    rows, int.from_bytes(slot, 'big') * _ROW_SIZE)[0]

    # -- serialization -------------------------------------------------

    def chunks(self):
        """``(prefix, count, crc, bytes)`` per group, in prefix order;
        groups never loaded are copied from the checkpoint unread."""
        out = []
        with self._mutex:
            for prefix in self._sorted_prefixes():
                group = self._groups.get(prefix)
                if group is not None:
                    data = group[0].toString() + group[1]
                    out.append((prefix, len(group[0]), zlib.crc32(data),
                                data))
                else:
                    entry = self._lazy[prefix]
                    out.append((prefix, entry[1], entry[2],
                                self._source.raw(entry)))
        return out


class _CheckpointSource:
    """The checkpoint file a lazy :class:`OidIndex` loads its groups from."""

    def __init__(self, fd, rebuild):
        self.fd = fd
        self.rebuild = rebuild

    def raw(self, entry):
        offset, count, _crc = entry
        return os.pread(self.fd, _ENTRY_BYTES * count, offset)

    def load(self, entry):
        """The group at ``entry``, or None if its bytes fail the checksum."""
        data = self.raw(entry)
        count = entry[1]
        if len(data) != _ENTRY_BYTES * count or zlib.crc32(data) != entry[2]:
            return None
        bucket = fsBucket().fromString(data[:8 * count])
        rows = bytearray(data[8 * count:])
        if len(bucket) != count:
            return None
        return bucket, rows

    def close(self):
        os.close(self.fd)


class Checkpoint:
    """What a checkpoint file says: the index as of log offset ``pos``."""

    __slots__ = ('file_id', 'pos', 'tid', 'max_oid', 'index', 'size')

    def __init__(self, file_id, pos, tid, max_oid, index, size=0):
        self.file_id = file_id
        self.pos = pos
        self.tid = tid
        self.max_oid = max_oid
        self.index = index
        self.size = size


def write_checkpoint(path, checkpoint):
    """Write ``checkpoint`` to ``path`` atomically (temp file, fsync, rename).

    Returns the number of bytes written.
    """
    index = checkpoint.index
    chunks = index.chunks()
    head = _HEAD.pack(CHECKPOINT_MAGIC, CHECKPOINT_VERSION, 0,
                      checkpoint.file_id, checkpoint.pos, checkpoint.tid,
                      checkpoint.max_oid, len(index), len(chunks))
    directory = b''.join(_ENTRY.pack(prefix, count, crc)
                         for prefix, count, crc, _data in chunks)
    parts = [head, directory, _CRC.pack(zlib.crc32(directory,
                                                   zlib.crc32(head)))]
    parts.extend(chunk[3] for chunk in chunks)
    data = b''.join(parts)
    tmp = path + '.tmp'
    fd = fsio.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        fsio.write(fd, data, 0)
        fsio.fsync(fd)
    finally:
        fsio.close(fd)
    fsio.replace(tmp, path)
    fsio.fsync_dir(path)
    return len(data)


def read_checkpoint(path, file_id, rebuild):
    """The checkpoint at ``path`` if its header and directory are intact
    and it names ``file_id``, else None; whether it matches the log is for
    the caller to check. Its index loads groups lazily, calling
    ``rebuild(pos)`` (a full index as of the checkpoint's position ``pos``)
    if one turns out damaged.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        checkpoint = _read(fd, file_id, rebuild)
    except Exception:
        checkpoint = None
    if checkpoint is None or not checkpoint.index._lazy:
        os.close(fd)
    return checkpoint


def _read(fd, file_id, rebuild):
    size = os.fstat(fd).st_size
    head = os.pread(fd, _HEAD.size, 0)
    if len(head) < _HEAD.size:
        return None
    (magic, version, _reserved, fid, pos, tid, max_oid, count,
     groups) = _HEAD.unpack(head)
    if (magic != CHECKPOINT_MAGIC or version != CHECKPOINT_VERSION
            or fid != file_id or groups > size):
        return None
    dir_size = groups * _ENTRY.size
    directory = os.pread(fd, dir_size + 4, _HEAD.size)
    if (len(directory) != dir_size + 4
            or zlib.crc32(directory[:dir_size], zlib.crc32(head))
            != _CRC.unpack_from(directory, dir_size)[0]):
        return None
    index = OidIndex()
    offset = _HEAD.size + dir_size + 4
    total = 0
    for prefix, n, crc in _ENTRY.iter_unpack(directory[:dir_size]):
        index._lazy[prefix] = (offset, n, crc)
        offset += _ENTRY_BYTES * n
        total += n
    if offset != size or total != count or len(index._lazy) != groups:
        return None
    index._count = count
    if index._lazy:
        index._source = _CheckpointSource(fd, lambda: rebuild(pos))
    return Checkpoint(fid, pos, tid, max_oid, index, size)
