"""What an invalid transaction at the end of FileStorage's log means.

A scan (opening, a reader catching up) stops at the first transaction
that fails validation. :func:`recover_tail` decides whether the bytes from
there on are a *torn tail*, an append the machine never finished (cut
with ``TruncatedTailWarning`` by a writer, waited for by a reader), or
damage to committed data (``CorruptionError``, never cut).
"""
import os
import struct

from objstore.storages.file import format as fmt
from objstore.storages.file.scan import CHUNK, PAGE, Reader, read_txn

#: The unit a disk writes atomically: a sector the disk never wrote reads
#: as it was before, zeros for a file's new space.
SECTOR = 512


def find_valid_header(fd, start, end, after_tid):
    """Offset of the first well-formed transaction header in ``[start, end)``
    with a tid after ``after_tid``, or None.

    A header counts only if its checksum matches, so bytes of stored data
    that happen to contain the marker are not mistaken for one.
    """
    reader = Reader(fd, end, PAGE)
    pos = start
    overlap = len(fmt.TXN_MARKER) - 1
    while pos < end:
        chunk = os.pread(fd, min(CHUNK, end - pos), pos)
        if not chunk:
            return None
        i = chunk.find(fmt.TXN_MARKER)
        while i >= 0:
            candidate = pos + i
            try:
                txn = read_txn(reader, candidate, full=False)
            except fmt.Invalid:
                pass
            else:
                if after_tid is None or txn.tid > after_tid:
                    return candidate
            i = chunk.find(fmt.TXN_MARKER, i + 1)
        if len(chunk) <= overlap:
            return None
        pos += len(chunk) - overlap
    return None


def recover_tail(fd, path, invalid, good_end, file_end, last_tid):
    """Decide what an invalid transaction at the end of the scan means.

    The rule: the bytes from ``good_end`` (the end of the last valid
    transaction) to the end of the file are a *torn tail*, to be cut, only
    if (b) no well-formed transaction header follows the invalid one, and
    (a) that transaction is incomplete in one of the ways an unfinished
    append leaves it:

    1. the file ends inside it (as its checksummed header declares), or
       everything from a sector boundary inside it to the end of the file
       reads as zeros (a file system that grew the file but never wrote
       its last sectors), or its header or commit trailer is all zeros;
    2. *unwritten sectors*: it is complete (header checksum good, trailer
       agreeing with the header, and nothing but zeros after it) but its
       transaction checksum fails, and it holds at least one whole,
       512-byte-aligned, all-zero sector inside bytes no checksum accepts
       (a data record whose own checksum fails, or what follows a record
       header too damaged to walk past). ``tpc_vote`` writes the body and
       ``tpc_finish`` the trailer, then one fsync flushes both; a power
       loss during that fsync may leave the trailer on disk but not some
       earlier sector of the body, which then reads as zeros. That
       transaction was never acknowledged (its fsync never returned).

    Everything else raises ``CorruptionError``: a transaction whose bytes
    are all there, commit trailer included, whose checksum fails with no
    such zero sector is bit rot in a transaction that was committed and
    may have been acknowledged, so it is never cut.

    Why this is safe: a transaction is acknowledged only after its trailer
    is written and (with ``fsync=True``) flushed, so an acknowledged
    transaction is never incomplete in the sense of (1), and its sectors
    are all on disk, so (2) never matches it either unless the disk lost
    a whole sector it had confirmed. Lengths are believed only once the
    header checksum matched, so a bit flip cannot make a complete
    transaction look cut short; zero sectors count only where a checksum
    refuses the bytes, so data that legitimately holds zeros does not.
    The ambiguities left, each cut with the warning every cut gets:
    damage that zeroes a complete last transaction from a sector boundary
    on, or zeroes a whole sector of it, looks exactly like an unfinished
    append; so does a bit flip in a last transaction's record whose data
    holds an aligned sector of zeros.

    Returns the offset to cut at (``good_end``); the caller cuts and warns.
    """
    later = find_valid_header(fd, invalid.offset + 1, file_end, last_tid)
    if later is not None:
        raise fmt.Invalid(
            invalid.offset, '%s, and a valid transaction follows at offset %d'
            ' (damage in the middle of the log is never cut)'
            % (invalid.problem, later), tid=invalid.tid).error(path)
    if invalid.torn or _zero_filled(fd, invalid.offset, file_end):
        return good_end
    zero = _unwritten_sector(fd, invalid, file_end)
    if zero is not None:
        invalid.problem += ('; the 512 bytes at offset %d read as zeros where'
                            ' no checksum accepts them: sectors of an'
                            ' append that never reached the disk' % zero)
        return good_end
    raise fmt.Invalid(
        invalid.offset, '%s; the transaction is complete and was'
        ' committed, so it is not cut. If the machine crashed while this'
        ' last transaction was committing, truncating the file to offset'
        ' %d drops it' % (invalid.problem, good_end),
        tid=invalid.tid).error(path)


def _zero_filled(fd, start, end):
    """Whether ``[start, end)`` ends in zeros from a sector boundary on: what
    a file system shows for an extended file whose last sectors were never
    written (a torn append)."""
    pos = end
    while pos > start:
        size = min(1 << 16, pos - start)
        data = os.pread(fd, size, pos - size)
        kept = len(data.rstrip(b'\0'))
        if kept:
            last_data = pos - size + kept
            boundary = -(-last_data // SECTOR) * SECTOR
            return boundary < end
        pos -= size
    return True


def _unwritten_sector(fd, invalid, file_end):
    """The offset of a whole aligned all-zero sector inside the bytes of
    the complete transaction ``invalid`` names that no checksum accepts,
    or None (rule 2 of :func:`recover_tail`)."""
    if invalid.tlen is None:
        return None
    pos, tlen = invalid.offset, invalid.tlen
    end = pos + tlen
    if end > file_end or os.pread(fd, file_end - end, end).strip(b'\0'):
        return None
    buf = os.pread(fd, tlen, pos)
    if len(buf) != tlen:
        return None
    try:
        hlen = fmt.parse_txn_header(buf, 0, pos, tlen)[7]
    except fmt.Invalid:
        return None
    for start, stop in _merged(_refused(buf, pos, hlen,
                                        tlen - fmt.TRAILER_SIZE)):
        sector = -(-(pos + start) // SECTOR) * SECTOR
        while sector + SECTOR <= pos + stop:
            if not buf[sector - pos:sector - pos + SECTOR].strip(b'\0'):
                return sector
            sector += SECTOR
    return None


def _merged(ranges):
    """Ranges in order, those that touch joined (a lost sector may span the
    end of one record and the start of the next)."""
    current = None
    for start, stop in ranges:
        if current is not None and start == current[1]:
            current = (current[0], stop)
            continue
        if current is not None:
            yield current
        current = (start, stop)
    if current is not None:
        yield current


def _refused(buf, tpos, start, end):
    """Yield ``(start, stop)`` ranges of ``buf[start:end]`` (the data
    records of the transaction at file offset ``tpos``) that no record
    checksum accepts: each record whose checksum fails, and everything
    from a record header that cannot be walked past to ``end``."""
    o = start
    while o < end:
        try:
            _oid, _tid, _prev, rtpos, flags, dlen = fmt.RECORD.unpack_from(
                buf, o)
        except struct.error:
            break
        d = o + fmt.RECORD_SIZE + (8 if flags & fmt.FLAG_DATA_TXN else 0)
        stop = d + dlen + 4
        if rtpos != tpos or flags & ~3 or stop > end:
            break
        if not fmt.record_crc_ok(buf[o:stop], d + dlen - o):
            yield o, stop
        o = stop
    if o < end:
        yield o, end
