"""Finding an object's revision by walking back through its records.

Each data record holds the offset of the object's previous record (the
back pointer), so the revision current at an earlier moment is found by
following pointers, newest first. The first hop needs no read: the oid
index keeps, beside the offset of the current record, its tid and back
pointer (:class:`~objstore.storages.file.index.OidIndex`), taken when the
index was built from checksummed bytes (the commit that wrote the
record, or a scan that verified its transaction's checksum). So when the
current revision is too new, the walk starts at the record before it,
and the revision one back costs one read of one record.

The format has no checksum of a record's header alone: the record's CRC
covers header and data together. Checking that CRC on every record
passed over costs a checksum of the whole record and the copy of its
data each time, so the walk checks most of them less, and still never
trusts what it did not check:

- Every record passed over gets a structural check of its header: the
  oid asked for, known flags, a back pointer and a transaction offset
  before the record, the record inside the committed log, a tid below
  the one of the record visited before it (or of the index entry).
- The answer rests only on checksummed bytes: the record whose data is
  returned, and its successor, whose checksum vouches for its tid
  (returned as ``end``) and for its back pointer (so the two are
  consecutive revisions, whatever way led to the successor). When the
  successor is the current record, the index entry stands for it: its
  tid and back pointer came from the same checksummed record. When the
  walk finds no revision early enough, the oldest record, whose back
  pointer is 0, is checksummed before that answer is given (or, when
  that is the current record, its index entry says so).

So damage in a record passed over either fails a structural check, or
is met by a checksum, or is harmless. A damaged back pointer on the last
hop makes its record the successor, which is checksummed; one on an
earlier hop either fails the checks or lands on a genuine record of the
object with a tid of at least ``before``, from which genuine pointers
lead to the same consecutive pair (skipping newer revisions changes
nothing). Structural checks alone would not do: a back pointer damaged
into the offset of an older revision of the same object passes them,
and without the successor's checksum that older revision's data would
be returned. Damage to the current record after the index was built is
met only when its own revision is read. Whenever anything fails, the
walk starts again from where it started, checksumming every record as
it goes, so the ``CorruptionError`` names the first damaged record.

Cost: the current revision, and the revision just before it, each take
one checksummed record, one ``pread``, as a load does; each further
record passed over saves its checksum and the copy of its data, and the
walk for a revision older than all saves all but one checksum. Every
record is read with one ``pread`` of ``scan.READ_SIZE`` bytes: reading
headers alone would take a second system call for each record that must
be checksummed, which measured slower than the bytes it saves.
"""
import os

from objstore.storages.file import format as fmt
from objstore.storages.file import scan

_record = fmt.RECORD.unpack_from
_crc = fmt.CRC.unpack_from
_crc32 = fmt.crc32
_HEADER = fmt.RECORD_SIZE           # 37; 45 with data_txn
_READ_SIZE = scan.READ_SIZE


class _Doubt(Exception):
    """Something did not check out: walk again, checksumming everything."""


def revision_before(fd, path, entry, oid, before, limit):
    """``(tid, flags, data, end)`` of the newest revision of ``oid`` whose
    tid is below ``before``, walking back from its current record, whose
    index entry is ``entry`` (``(offset, tid, previous offset)``).

    ``end`` is the tid of the revision after it, None when it is the
    current one; ``data`` is empty for a deletion record (``flags`` say
    so). Returns None when every revision there is has a tid of at least
    ``before``. ``limit`` is the end of the committed log. The record
    returned and its successor (or the index entry standing for it) are
    checksum verified; damage raises ``CorruptionError`` naming the
    offset and oid.
    """
    pos, newer_tid, prev = entry
    if newer_tid < before:
        newer_tid = None
    elif prev:
        pos = prev
    else:
        return None
    try:
        return _walk(fd, pos, oid, before, limit, newer_tid)
    except _Doubt:
        return _checked_walk(fd, path, pos, oid, before, limit, newer_tid)


def revision_at(fd, path, entry, oid, serial, limit):
    """``(tid, flags, data, end)`` of ``oid``'s revision written by
    ``serial``, walking back from its current record, whose index entry
    is ``entry``; None if there is none. Checked as
    :func:`revision_before`."""
    # serial + b'\0' sorts after serial and before every larger 8-byte
    # tid, so "below it" means "at or before serial", with no overflow
    # at the largest tid.
    found = revision_before(fd, path, entry, oid, serial + b'\0', limit)
    if found is None or found[0] != serial:
        return None
    return found


def _walk(fd, pos, oid, before, limit, newer_tid):
    """:func:`revision_before` from the record at ``pos``, whose successor
    has the tid ``newer_tid`` (None: it has none), without the fallback:
    raises :class:`_Doubt` at the first check that fails."""
    pread = os.pread
    # None: the successor is vouched for by the index, or there is none.
    successor = None
    while True:
        buf = pread(fd, _READ_SIZE, pos)
        if len(buf) < _HEADER:
            raise _Doubt
        roid, tid, prev, tpos, flags, dlen = _record(buf, 0)
        start = 45 if flags & 2 else 37
        end = start + dlen
        if (roid != oid or flags & ~3 or pos + end + 4 > limit
                or prev >= pos or tpos >= pos
                or (newer_tid is not None and tid >= newer_tid)):
            raise _Doubt
        if tid < before:
            buf = _verified(fd, pos, buf, end)
            if successor is not None:
                _verified(fd, *successor)
            return tid, flags, buf[start:end], newer_tid
        if not prev:
            _verified(fd, pos, buf, end)
            return None
        # One record's bytes kept: it is checksummed if it turns out to
        # be the successor of the answer.
        successor = (pos, buf, end)
        newer_tid = tid
        pos = prev


def _verified(fd, pos, buf, end):
    """``buf`` holding the record at ``pos`` whole, its checksum
    verified; ``end`` is where its CRC starts. Raises :class:`_Doubt`."""
    if len(buf) < end + 4:
        buf += os.pread(fd, end + 4 - len(buf), pos + len(buf))
        if len(buf) < end + 4:
            raise _Doubt
    if _crc32(memoryview(buf)[:end]) != _crc(buf, end)[0]:
        raise _Doubt
    return buf


def _checked_walk(fd, path, pos, oid, before, limit, end):
    """:func:`_walk` checksumming every record it reads, so the error
    names the first damaged one."""
    while True:
        tid, prev, _tpos, flags, _dt, data = scan.read_record(
            fd, path, pos, oid, limit)
        if tid < before:
            return tid, flags, data, end
        if not prev:
            return None
        end = tid
        pos = prev
