"""Reading FileStorage's log: forward scans, tail recovery, backward walks.

Forward scans read the log in large chunks (``os.pread``) and verify each
transaction's checksums before anything in it is used. They serve opening
(index the tail after the checkpoint), reader processes catching up, the
iterator and pack. Backward walks follow the redundant length in each
trailer; undo and the undo log use them to reach recent transactions
without reading the whole file.

The recovery rule, applied when a scan stops at an invalid transaction,
is in :mod:`objstore.storages.file.recovery`.
"""
import os
import struct

from objstore import errors
from objstore.storages.base import (DataRecord, TransactionMeta,
                                    TransactionRecord)
from objstore.storages.file import format as fmt

CHUNK = 8 << 20
PAGE = 4096
#: Bytes read at once for a load; records up to about this size take one
#: system call.
READ_SIZE = 1024

_fixed = fmt.TXN_FIXED.unpack_from
_record = fmt.RECORD.unpack_from
_crc = fmt.CRC.unpack_from
_crc32 = fmt.crc32


class Reader:
    """Buffered positional reads of one file descriptor, up to ``end``."""

    __slots__ = ('fd', 'end', 'buf', 'base', 'chunk')

    def __init__(self, fd, end, chunk=CHUNK):
        self.fd = fd
        self.end = end
        self.buf = b''
        self.base = 0
        # Scans read ahead a lot; lookups of single headers only a page.
        self.chunk = chunk

    def window(self, pos, n):
        """Return ``(buf, off, avail)``: ``buf[off:]`` holds the file from
        ``pos``, at least ``min(n, avail)`` bytes, ``avail`` being what the
        file has from ``pos`` to ``end``."""
        avail = self.end - pos
        need = min(n, avail)
        off = pos - self.base
        if off < 0 or off + need > len(self.buf):
            size = min(max(need, self.chunk), avail)
            self.buf = os.pread(self.fd, size, pos)
            self.base = pos
            off = 0
            if len(self.buf) < size:
                # The file shrank under us (a writer cut an aborted
                # transaction); what is gone does not count.
                self.end = pos + len(self.buf)
                avail = len(self.buf)
        return self.buf, off, avail


class Txn:
    """One verified transaction; its bytes are ``buf[off:off + tlen]``
    unless it was read header-only (then ``buf`` holds the header)."""

    __slots__ = ('pos', 'tid', 'tlen', 'count', 'status', 'user',
                 'description', 'extension', 'hlen', 'buf', 'off')

    def __init__(self, pos, header, buf, off):
        self.pos = pos
        (self.tid, self.tlen, self.count, self.status, self.user,
         self.description, self.extension, self.hlen) = header
        self.buf = buf
        self.off = off

    @property
    def end(self):
        return self.pos + self.tlen

    def meta(self):
        return TransactionMeta(self.tid, self.user, self.description,
                               self.extension, self.status.decode('ascii'))

    def records(self):
        """The data records, as :func:`format.iter_records` yields them, in
        a list; needs the whole transaction."""
        buf = self.buf
        o = self.off + self.hlen
        end = self.off + self.tlen - fmt.TRAILER_SIZE
        delta = self.pos - self.off
        tpos = self.pos
        out = []
        append = out.append
        try:
            for _ in range(self.count):
                oid, tid, prev, rtpos, flags, dlen = _record(buf, o)
                d = o + 37
                data_txn = None
                if flags & 2:
                    data_txn = buf[d:d + 8]
                    d += 8
                if flags & ~3 or rtpos != tpos:
                    break
                append((o + delta, oid, tid, prev, flags, data_txn, d,
                        d + dlen))
                o = d + dlen + 4
        except struct.error:
            o = -1
        if o != end or len(out) != self.count:
            # The checksum matched, so only a writer bug gets here; the
            # careful walk names the offset.
            return list(self._careful_records())
        return out

    def _careful_records(self):
        return fmt.iter_records(self.buf, self.off + self.hlen,
                                self.off + self.tlen - fmt.TRAILER_SIZE,
                                self.pos + self.hlen, self.pos, self.count,
                                self.tid)

    def data_records(self):
        """The transaction's records as :class:`DataRecord` objects."""
        buf = self.buf
        o = self.off + self.hlen
        end = self.off + self.tlen - fmt.TRAILER_SIZE
        out = []
        append = out.append
        try:
            for _ in range(self.count):
                oid, tid, _prev, _tpos, flags, dlen = _record(buf, o)
                d = o + 37
                data_txn = None
                if flags:
                    if flags & ~3:
                        break
                    if flags & 2:
                        data_txn = buf[d:d + 8]
                        d += 8
                append(DataRecord(oid, tid, None if flags & 1
                                  else buf[d:d + dlen], data_txn))
                o = d + dlen + 4
        except struct.error:
            o = -1
        if o != end or len(out) != self.count:
            # Only a writer bug gets here (the checksum matched); the
            # careful walk names the offset.
            for _ in self._careful_records():
                pass
        return out

    def index_entries(self):
        """``{oid: (record offset, tid, previous offset)}`` of the
        transaction (last record wins): what :class:`OidIndex` keeps."""
        buf = self.buf
        o = self.off + self.hlen
        end = self.off + self.tlen - fmt.TRAILER_SIZE
        delta = self.pos - self.off
        found = {}
        try:
            for _ in range(self.count):
                oid, tid, prev, _tpos, flags, dlen = _record(buf, o)
                found[oid] = (o + delta, tid, prev)
                o += (45 if flags & 2 else 37) + dlen + 4
        except struct.error:
            o = -1
        if o != end:
            # The checksum matched, so only a writer bug gets here; the
            # slow walk names the offset.
            for _ in self._careful_records():
                pass
        return found


def read_record(fd, path, pos, oid, limit):
    """``(tid, prev, tpos, flags, data_txn, data)`` of ``oid``'s data record
    at ``pos``, checksum verified; ``limit`` is the end of the committed log.
    Raises ``CorruptionError`` naming the offset and oid."""
    buf = os.pread(fd, READ_SIZE, pos)
    if len(buf) >= 37:
        roid, tid, prev, tpos, flags, dlen = _record(buf, 0)
        start = 45 if flags & 2 else 37
        end = start + dlen
        if (roid == oid and not flags & ~3 and pos + end + 4 <= limit
                and prev < pos and tpos < pos):
            if end + 4 > len(buf):
                buf += os.pread(fd, end + 4 - len(buf), pos + len(buf))
            if (len(buf) >= end + 4
                    and _crc32(memoryview(buf)[:end]) == _crc(buf, end)[0]):
                return (tid, prev, tpos, flags,
                        buf[37:45] if flags & 2 else None, buf[start:end])
    raise _record_damage(buf, fd, path, pos, oid, limit)


def _record_damage(buf, fd, path, pos, oid, limit):
    """The ``CorruptionError`` for a record :func:`read_record` refused."""
    try:
        (roid, _tid, _prev, _tpos, _flags, _dt, _start,
         end) = fmt.decode_record(buf, pos, limit)
        if end + 4 > len(buf):
            buf += os.pread(fd, end + 4 - len(buf), pos + len(buf))
        if end + 4 > len(buf):
            problem = 'data record runs past the end of the file'
        elif not fmt.record_crc_ok(buf, end):
            problem = 'data record checksum mismatch'
        else:
            problem = ('the index points at a record of oid %s'
                       % errors.oid_repr(roid))
    except fmt.Invalid as invalid:
        problem = invalid.problem
    return errors.CorruptionError(path, pos, problem, oid=oid)


def read_txn(reader, pos, full=True):
    """The transaction at ``pos``, checksums verified; raises ``fmt.Invalid``.

    With ``full`` false only the header is read and checked.
    """
    buf, off, avail = reader.window(pos, PAGE)
    if avail >= fmt.TXN_FIXED_SIZE:
        fixed = _fixed(buf, off)
        hlen = fmt.TXN_FIXED_SIZE + fixed[5] + fixed[6] + fixed[7] + 4
        want = fixed[2] if full and fixed[2] < (1 << 40) else hlen
        if off + min(want, avail) > len(buf):
            buf, off, avail = reader.window(pos, want)
    header = fmt.parse_txn_header(buf, off, pos, avail)
    if full:
        if off + min(header[1], avail) > len(buf):
            buf, off, avail = reader.window(pos, header[1])
        fmt.check_txn_body(buf, off, pos, avail, header[0], header[1])
    return Txn(pos, header, buf, off)


def transactions(fd, start, end, after_tid=None, full=True):
    """Yield the verified transactions in ``[start, end)`` in order.

    Raises ``fmt.Invalid`` at the first one that fails, also when its tid
    is not after the one before (``after_tid`` for the first).
    """
    reader = Reader(fd, end)
    pos = start
    last = after_tid
    while pos < reader.end:
        txn = read_txn(reader, pos, full)
        if last is not None and txn.tid <= last:
            raise fmt.Invalid(pos, 'tid does not increase', tid=txn.tid)
        last = txn.tid
        yield txn
        pos += txn.tlen


def index_tail(fd, start, end, after_tid, index):
    """Add the records of the transactions in ``[start, end)`` to ``index``.

    Stops at the first invalid transaction. Returns ``(pos, last_tid,
    max_oid, records, invalid)``: where valid data ends, the last tid and
    largest oid seen (or None), how many records were indexed, and the
    :class:`fmt.Invalid` that stopped the scan (None at ``end``).
    """
    pos = start
    last_tid = None
    max_oid = None
    records = 0
    try:
        for txn in transactions(fd, start, end, after_tid):
            found = txn.index_entries()
            if found:
                index.update(found)
                top = max(found)
                if max_oid is None or top > max_oid:
                    max_oid = top
            records += txn.count
            last_tid = txn.tid
            pos = txn.end
    except fmt.Invalid as invalid:
        return pos, last_tid, max_oid, records, invalid
    return pos, last_tid, max_oid, records, None


def txn_before(fd, path, pos):
    """The transaction ending at ``pos`` (header read and checked), found
    through its trailer. Raises ``CorruptionError``."""
    tail = os.pread(fd, fmt.TRAILER_SIZE, pos - fmt.TRAILER_SIZE)
    if len(tail) < fmt.TRAILER_SIZE:
        raise fmt.Invalid(pos - fmt.TRAILER_SIZE,
                          'transaction trailer missing').error(path)
    tid, tlen, marker, _crc = fmt.TRAILER.unpack(tail)
    at = pos - fmt.TRAILER_SIZE
    start = pos - tlen
    if (marker != fmt.COMMIT_MARKER or tlen < fmt.MIN_TXN_SIZE
            or start < fmt.FILE_HEADER_SIZE):
        raise fmt.Invalid(at, 'transaction trailer is damaged').error(path)
    try:
        txn = read_txn(Reader(fd, pos, PAGE), start, full=False)
    except fmt.Invalid as invalid:
        # The trailer or the header it leads to is damaged; both belong to
        # the transaction whose trailer this is, so that is where to look.
        raise fmt.Invalid(at, 'transaction trailer leads to offset %d: %s'
                          % (start, invalid.problem), tid=tid).error(path)
    if txn.tid != tid or txn.tlen != tlen:
        raise fmt.Invalid(at, 'transaction trailer does not match its header'
                          ' at offset %d' % start).error(path)
    return txn


def transactions_backward(fd, path, pos):
    """Yield header-only transactions ending at or before ``pos``, newest
    first."""
    while pos > fmt.FILE_HEADER_SIZE:
        txn = txn_before(fd, path, pos)
        yield txn
        pos = txn.pos


def read_full(fd, path, txn):
    """Re-read a header-only transaction whole, checksums verified."""
    try:
        return read_txn(Reader(fd, txn.end), txn.pos)
    except fmt.Invalid as invalid:
        raise invalid.error(path)


class FileIterator:
    """Iterates over the transactions of a log snapshot, oldest first.

    Reads through its own descriptor (a ``dup``), so a pack replacing the
    file meanwhile does not disturb it; :meth:`close` releases it, as does
    reaching the end.
    """

    def __init__(self, fd, path, end, start=None, stop=None):
        self._fd = fd
        self._path = path
        self._items = self._generate(end, start, stop)

    def __iter__(self):
        return self

    def __next__(self):
        if self._items is None:
            raise StopIteration
        try:
            return next(self._items)
        except BaseException:
            self.close()
            raise

    def close(self):
        items, self._items = self._items, None
        if items is not None:
            items.close()
            os.close(self._fd)

    def __del__(self):
        # An iterator dropped half-way still gives its descriptor back.
        self.close()

    def _first(self, end, start):
        """Offset of the first transaction with a tid >= ``start``."""
        pos = end
        for txn in transactions_backward(self._fd, self._path, end):
            if txn.tid < start:
                break
            pos = txn.pos
        return pos

    def _generate(self, end, start, stop):
        pos = fmt.FILE_HEADER_SIZE
        if start is not None:
            pos = self._first(end, start)
        try:
            for txn in transactions(self._fd, pos, end):
                if stop is not None and txn.tid > stop:
                    return
                records = txn.data_records()
                yield TransactionRecord(txn.meta(), records)
        except fmt.Invalid as invalid:
            raise invalid.error(self._path) from None
