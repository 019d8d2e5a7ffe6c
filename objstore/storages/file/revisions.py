"""Finding an object's revision by walking back through its records.

Each data record holds the offset of the object's previous record (the
back pointer), so the revision current at an earlier moment is found by
following pointers from the current record, newest first. The format has
no checksum of a record's header alone: the record's CRC covers header
and data together. Checking that CRC on every record passed over costs
a checksum of the whole record and the copy of its data each time, so
the walk checks most of them less, and still never trusts what it did
not check:

- Every record passed over gets a structural check of its header: the
  oid asked for, known flags, a back pointer and a transaction offset
  before the record, the record inside the committed log, a tid below
  the one of the record visited before it.
- The answer rests only on fully checksummed records: the record whose
  data is returned, and the record visited just before it (its
  successor), whose checksum vouches for its tid (returned as ``end``)
  and for its back pointer (so the two are consecutive revisions,
  whatever way led to the successor). When the walk finds no revision
  early enough, the oldest record, whose back pointer is 0, is
  checksummed before that answer is given.

So damage in a record passed over either fails a structural check, or
is met by a checksum, or is harmless. A damaged back pointer on the last
hop makes its record the successor, which is checksummed; one on an
earlier hop either fails the checks or lands on a genuine record of the
object with a tid of at least ``before``, from which genuine pointers
lead to the same consecutive pair (skipping newer revisions changes
nothing). Structural checks alone would not do: a back pointer damaged
into the offset of an older revision of the same object passes them,
and without the successor's checksum that older revision's data would
be returned. Whenever anything fails, the walk starts again from the
current record, checksumming every record as it goes, so the
``CorruptionError`` names the first damaged record, as it always did.

Cost: the revision just before the current one still takes two
checksummed records (the current record is its successor), as before;
each further record passed over saves its checksum and the copy of its
data, and the walk for a revision older than all saves all but one
checksum. Every record is still read with one ``pread`` of
``scan.READ_SIZE`` bytes: reading headers alone would take a second
system call for each record that must be checksummed, which measured
slower than the bytes it saves.
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


def revision_before(fd, path, pos, oid, before, limit):
    """``(tid, flags, data, end)`` of the newest revision of ``oid`` whose
    tid is below ``before``, walking back from its record at ``pos``.

    ``end`` is the tid of the revision after it, None when it is the one
    at ``pos``; ``data`` is empty for a deletion record (``flags`` say
    so). Returns None when every revision there is has a tid of at least
    ``before``. ``limit`` is the end of the committed log. The record
    returned and its successor are checksum verified; damage raises
    ``CorruptionError`` naming the offset and oid.
    """
    try:
        return _walk(fd, pos, oid, before, limit)
    except _Doubt:
        return _checked_walk(fd, path, pos, oid, before, limit)


def revision_at(fd, path, pos, oid, serial, limit):
    """``(tid, flags, data, end)`` of ``oid``'s revision written by
    ``serial``, walking back from its record at ``pos``; None if there is
    none. Checked as :func:`revision_before`."""
    # serial + b'\0' sorts after serial and before every larger 8-byte
    # tid, so "below it" means "at or before serial", with no overflow
    # at the largest tid.
    found = revision_before(fd, path, pos, oid, serial + b'\0', limit)
    if found is None or found[0] != serial:
        return None
    return found


def _walk(fd, pos, oid, before, limit):
    """:func:`revision_before` without its fallback: raises
    :class:`_Doubt` at the first check that fails."""
    pread = os.pread
    successor = None
    newer_tid = None
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


def _checked_walk(fd, path, pos, oid, before, limit):
    """:func:`revision_before` checksumming every record it reads, so the
    error names the first damaged one."""
    end = None
    while True:
        tid, prev, _tpos, flags, _dt, data = scan.read_record(
            fd, path, pos, oid, limit)
        if tid < before:
            return tid, flags, data, end
        if not prev:
            return None
        end = tid
        pos = prev
