"""What an invalid transaction at the end of FileStorage's log means.

A scan (opening, a reader catching up) stops at the first transaction
that fails validation. :func:`recover_tail` decides whether the bytes from
there on are a *torn tail*, an append the machine never finished (cut
with ``TruncatedTailWarning`` by a writer, waited for by a reader), or
damage to committed data (``CorruptionError``, never cut).
"""
import os

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
       its last sectors), or its commit trailer is all zeros;
    2. *unwritten sectors*: ``tpc_vote`` writes the body and
       ``tpc_finish`` the trailer, then one fsync flushes both, and a disk
       may write their sectors in any order; a power loss before that
       fsync returned (the transaction was never acknowledged) can leave
       some sectors unwritten, reading as zeros. Such a transaction is
       recognised when every check that fails is explained by an all-zero
       stretch that ends at a 512-byte sector boundary and starts at one,
       or at the start of the transaction or of its trailer (where the
       sector's earlier bytes were written before):

       * its header checksum holds, or lost sectors cover part of the
         header (from its start, or a whole sector inside it) and the
         bytes still there begin like a header;
       * the file ends with its commit trailer, of a length exactly
         ``file_end - good_end`` and a tid after ``last_tid``, both
         agreeing with the header bytes still there; the trailer's bytes
         up to a sector boundary may read as zeros, the rest agreeing
         with that length and the header's tid (unchecked when lost in
         both). Or, only when lost sectors cover part of the header: the
         file does not end with a commit marker and holds no trailer of
         a transaction at ``good_end`` (the vote wrote the body, the
         power went before the trailer);
       * every range of the data records that no record checksum accepts
         overlaps a whole, aligned, all-zero sector;
       * when the header is known whole (its own, or with its lost bytes,
         at most marker, tid and length, restored from the trailer), its
         checksum holds, and so does the transaction checksum (lost
         trailer bytes restored from the header) unless a record was
         refused.

       The previous transaction's bytes in a first sector the two share
       were on disk before, so that transaction stays valid.

    Everything else raises ``CorruptionError``: a transaction whose bytes
    are all there, commit trailer included, whose checksum fails without
    such zero sectors is bit rot in a transaction that was committed and
    may have been acknowledged, so it is never cut; so is a trailer whose
    length or tid does not fit, or a record whose checksum fails with no
    lost sector in it, next to lost sectors or not.

    Why this is safe: a transaction is acknowledged only after its trailer
    is written and (with ``fsync=True``) flushed, so an acknowledged
    transaction is never incomplete in the sense of (1), and its sectors
    are all on disk, so (2) never matches it either unless the disk lost a
    sector it had confirmed. Lengths are believed only once a checksum
    matched or the trailer's length equals the tail's, so a bit flip
    cannot make a complete transaction look cut short; zero sectors count
    only where a checksum refuses the bytes, so data that legitimately
    holds zeros does not. The ambiguities left, each cut with the warning
    every cut gets: damage that zeroes a complete last transaction from a
    sector boundary on, or zeroes a whole sector of it, looks exactly like
    an unfinished append; a flipped bit goes unseen inside a record that
    also lost a sector, in the header bytes after lost header sectors
    when more than marker, tid and length were lost, and in a record
    before the first one whose checksum holds; and a last transaction
    whose header lost sectors and whose commit marker was damaged too is
    cut as one that never got its trailer.

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
    lost = _lost_sectors(fd, good_end, file_end, last_tid)
    if lost is not None:
        invalid.problem += '; %s: sectors of an append that never reached' \
            ' the disk' % lost
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


def _lost_sectors(fd, tpos, file_end, last_tid):
    """Rule 2 of :func:`recover_tail`: which zeros explain the invalid last
    transaction at ``tpos``, or None if zeros do not explain it."""
    size = file_end - tpos
    if size < fmt.MIN_TXN_SIZE:
        return None
    buf = os.pread(fd, size, tpos)
    if len(buf) != size:
        return None
    said = []
    try:
        hlen = fmt.parse_txn_header(buf, 0, tpos, size)[7]
    except fmt.Invalid:
        head = _lost_header(buf, tpos)
        if head is None:
            return None
    else:
        head = None
        seen = buf[:20]
    if head is not None:
        seen = buf[:min(head[0], 20)]
        if not fmt.TXN_MARKER.startswith(seen[:4]):
            return None
        said.append('its bytes from offset %d to the sector boundary at %d,'
                    ' part of its header, read as zeros'
                    % (tpos + head[0], tpos + head[1]))
    end = size - fmt.TRAILER_SIZE
    full = bytearray(buf)
    trailer = _lost_trailer(buf, tpos, seen)
    tid_known = True
    if trailer is not None:
        full[end:end + 20], tid_known = trailer
        said.append('the first %d bytes of its commit trailer read as zeros'
                    % (SECTOR - (tpos + end) % SECTOR))
    elif buf[-8:-4] != fmt.COMMIT_MARKER:
        if head is None or _trailer_in(buf, last_tid):
            return None
        return '%s, and no commit trailer follows' % '; '.join(said)
    tid, tlen, _marker, crc = fmt.TRAILER.unpack_from(full, end)
    known = fmt.TXN_MARKER + tid + _offset(tlen)
    if tlen != size or (tid_known and (
            (last_tid is not None and tid <= last_tid)
            or not known.startswith(seen))):
        return None
    if (tid_known and head is not None and head[0] == 0
            and head[1] <= len(known)):
        if buf[head[1]:len(known)] != known[head[1]:]:
            return None
        full[:len(known)] = known
        try:
            hlen = fmt.parse_txn_header(full, 0, tpos, size)[7]
        except fmt.Invalid:
            return None
        head = None
    if head is None:
        if fmt.crc32(memoryview(full)[:end + 20]) == crc:
            return '; '.join(said) or None
        start = hlen
    else:
        start = _next_record(full, tpos, head[1], end)
        if start is None:
            start = end
    gaps = list(_unvouched(full, tpos, start, end))
    if head is None and not gaps:
        return None     # all vouched for, yet the checksum fails
    for gap_start, gap_stop in gaps:
        sector = _zero_sector(buf, tpos, gap_start, gap_stop)
        if sector is None:
            return None
        said.append('the 512 bytes at offset %d read as zeros where no'
                    ' checksum accepts them' % sector)
    return '; '.join(said)


def _lost_header(buf, tpos):
    """``(start, stop)``: the zeros, up to a sector boundary, that cover
    part of the header of the transaction whose bytes ``buf`` holds (file
    offset ``tpos``), from its start or from a sector boundary inside it;
    or None."""
    start = None
    if buf[0] == 0:
        start = 0
    else:
        lengths = fmt.TXN_FIXED.unpack_from(buf, 0)[5:]
        limit = min(len(buf), fmt.TXN_FIXED_SIZE + 4 + sum(lengths))
        sector = SECTOR - tpos % SECTOR
        while sector < limit and sector + SECTOR <= len(buf):
            if not buf[sector:sector + SECTOR].strip(b'\0'):
                start = sector
                break
            sector += SECTOR
    if start is None:
        return None
    zeros = len(buf) - start - len(buf[start:].lstrip(b'\0'))
    stop = (tpos + start + zeros) // SECTOR * SECTOR - tpos
    return (start, stop) if stop > start else None


def _lost_trailer(buf, tpos, seen):
    """If the file ends with a commit trailer whose bytes up to a sector
    boundary read as zeros and whose other bytes agree with the header
    bytes ``seen`` and the tail's length: ``(first 20 bytes, tid_known)``,
    restored (the tid from the header, zeros if lost with it); else None."""
    size = len(buf)
    end = size - fmt.TRAILER_SIZE
    lost = SECTOR - (tpos + end) % SECTOR
    if lost >= fmt.TRAILER_SIZE or buf[end:end + lost].strip(b'\0'):
        return None
    tid = seen[4:12] if len(seen) >= 12 else None
    if ((tid is None and lost < 8) or (len(seen) >= 20 and
                                       seen[12:20] != _offset(size))):
        return None
    known = (tid or bytes(8)) + _offset(size) + fmt.COMMIT_MARKER
    if buf[end + lost:end + 20] != known[lost:]:
        return None
    return known, tid is not None


def _offset(n):
    return n.to_bytes(8, 'big')


def _zero_sector(buf, tpos, start, stop):
    """The file offset of the first whole aligned all-zero sector of
    ``buf`` (the file from ``tpos``) that overlaps ``buf[start:stop]``,
    or None."""
    sector = -(-tpos // SECTOR) * SECTOR
    sector = max(sector, (tpos + start) // SECTOR * SECTOR)
    while sector < tpos + stop and sector + SECTOR <= tpos + len(buf):
        if not buf[sector - tpos:sector - tpos + SECTOR].strip(b'\0'):
            return sector
        sector += SECTOR
    return None


def _record_end(buf, tpos, o, end):
    """Where the data record at ``buf[o:]`` ends if it belongs to the
    transaction at ``tpos`` and its checksum holds, else None."""
    if o < 0 or o + fmt.MIN_RECORD_SIZE > end:
        return None
    _oid, _tid, _prev, rtpos, flags, dlen = fmt.RECORD.unpack_from(buf, o)
    d = o + fmt.RECORD_SIZE + (8 if flags & fmt.FLAG_DATA_TXN else 0)
    stop = d + dlen + 4
    if (rtpos != tpos or flags & ~3 or stop > end
            or not fmt.record_crc_ok(buf[o:stop], d + dlen - o)):
        return None
    return stop


def _next_record(buf, tpos, start, end):
    """The first offset at or after ``start`` of a data record of the
    transaction at ``tpos`` whose checksum holds, or None."""
    key = _offset(tpos)
    i = buf.find(key, start + 24, end)
    while i >= 0:
        if _record_end(buf, tpos, i - 24, end) is not None:
            return i - 24
        i = buf.find(key, i + 1, end)
    return None


def _unvouched(buf, tpos, start, end):
    """Yield the ``(start, stop)`` ranges of ``buf[start:end]`` that no
    record checksum accepts, walking the records from ``start`` and past
    damage to the next record whose checksum holds."""
    o = start
    while o < end:
        stop = _record_end(buf, tpos, o, end)
        if stop is not None:
            o = stop
            continue
        following = _next_record(buf, tpos, o + 1, end)
        if following is None:
            yield o, end
            return
        yield o, following
        o = following


def _trailer_in(buf, last_tid):
    """Whether ``buf`` (the file from a transaction's offset on) holds a
    commit trailer of a transaction starting there."""
    i = buf.find(fmt.COMMIT_MARKER, 16, len(buf) - 4)
    while i >= 0:
        tid, tlen, _marker, _crc = fmt.TRAILER.unpack_from(buf, i - 16)
        if tlen == i + 8 and (last_tid is None or tid > last_tid):
            return True
        i = buf.find(fmt.COMMIT_MARKER, i + 1, len(buf) - 4)
    return False
