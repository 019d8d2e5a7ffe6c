"""Pack: drop old revisions and unreachable objects by copying the file.

``pack(t)`` keeps, for every object, the revision current at ``t`` and
every later one, and (with ``gc``) only objects reachable from the root's
state at ``t`` or from a revision written after ``t``; an object whose
revision current at ``t`` is a deletion record goes too. Reachability
follows the ``referencesf`` the caller passes, applied to the kept
revisions only.

How: one pass over the log finds each object's revision current at ``t``
(kept in a compact :class:`OidIndex`), the garbage collector walks the
references, and a second pass copies what stays into ``<log>.pack``,
re-linking the back-pointers. Transactions after ``t`` are copied
unchanged (tids, metadata, data); earlier ones keep their surviving
records and get status ``'p'`` (no longer undoable), or vanish when
nothing of them survives (as in ZODB's FileStorage), except the last
transaction of the file, kept empty so the file keeps its last tid. The copy is fsynced and renamed over the log in
one atomic step, then the storage switches its descriptor and writes a
checkpoint. A crash at any moment leaves either the old file or the new
one, never a mix; a leftover ``.pack`` file is removed on the next open.

Trade-off: pack holds the commit lock from start to end, so commits wait
for it (loads do not). That is the simple, obviously correct choice: a
commit made during the copy could make a collected object reachable again.
Reader processes notice the new file (another inode) at their next sync
and reopen it.
"""
import os
import stat

from objstore.storages.base import time_tid, z64
from objstore.storages.file import format as fmt
from objstore.storages.file import fsio
from objstore.storages.file import log
from objstore.storages.file import scan
from objstore.storages.file.index import OidIndex

#: Bytes of packed log gathered before each write to the new file.
WRITE_CHUNK = 8 << 20


def pack(storage, t, referencesf, gc=True):
    """Pack ``storage`` to epoch seconds ``t`` (see the module docstring)."""
    pack_tid = time_tid(t)
    with storage._commit_lock:
        with storage._lock:
            storage._check_writable()
            fd, path, end = storage._fd, storage._path, storage._pos
        if end == fmt.FILE_HEADER_SIZE:
            return
        try:
            current, deleted, later = _current_at(fd, end, pack_tid,
                                                  referencesf if gc else None)
        except fmt.Invalid as invalid:
            raise invalid.error(path) from None
        reachable = None
        if gc:
            reachable = _reachable(storage, current, deleted, later,
                                   referencesf)
        new_path = path + '.pack'
        # The copy replaces the file: it keeps the file's permission bits.
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        nfd = fsio.open(new_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, mode)
        try:
            file_id = os.urandom(8)
            index, pos, max_oid = _copy(fd, nfd, end, pack_tid, file_id,
                                        current, deleted, reachable, path)
            fsio.fsync(nfd)
            with storage._lock:
                fsio.replace(new_path, path)
        except BaseException:
            fsio.close(nfd)
            fsio.remove(new_path)
            raise
        with storage._lock:
            fsio.fsync_dir(path)
            log.replace_file(storage, nfd, file_id, index, pos, max_oid)


def _current_at(fd, end, pack_tid, referencesf):
    """Pass 1: ``(current, deleted, later)``.

    ``current`` maps each oid to its record current at the pack time,
    ``deleted`` holds the oids whose such record is a deletion, ``later``
    lists the oids written after the pack time and (when ``referencesf``
    is given) every oid those revisions refer to.
    """
    current = OidIndex()
    deleted = set()
    later = []
    for txn in scan.transactions(fd, fmt.FILE_HEADER_SIZE, end):
        buf = txn.buf
        if txn.tid < pack_tid:
            found = {}
            for (pos, oid, tid, prev, flags, _dt, _ds,
                 _de) in txn.records():
                found[oid] = (pos, tid, prev)
                if flags & fmt.FLAG_DELETED:
                    deleted.add(oid)
                elif deleted:
                    deleted.discard(oid)
            current.update(found)
        else:
            for (_pos, oid, _tid, _prev, flags, _dt, ds,
                 de) in txn.records():
                later.append(oid)
                if referencesf is not None and not flags & fmt.FLAG_DELETED:
                    referencesf(buf[ds:de], later)
    return current, deleted, later


def _reachable(storage, current, deleted, later, referencesf):
    """Oids reachable from the root at the pack time or from later revisions."""
    # A set: GC visits every live object once, and a set is the fastest
    # membership test Python has; it is dropped when pack returns.
    seen = set()
    stack = [z64] + later
    read = storage._read
    while stack:
        oid = stack.pop()
        if oid in seen:
            continue
        seen.add(oid)
        pos = current.get(oid)
        if pos is None or oid in deleted:
            continue
        with storage._lock:
            data = read(pos, oid)[5]
        referencesf(data, stack)
    return seen


def _copy(fd, nfd, end, pack_tid, file_id, current, deleted, reachable,
          path):
    """Pass 2: write the packed log to ``nfd``; return ``(index, end,
    max_oid)`` of the new file."""
    header = fmt.encode_file_header(file_id)
    out = [header]
    out_size = len(header)
    written = 0
    index = OidIndex()
    max_oid = z64
    pos = fmt.FILE_HEADER_SIZE
    try:
        for txn in scan.transactions(fd, fmt.FILE_HEADER_SIZE, end):
            keep_all = txn.tid >= pack_tid
            buf = txn.buf
            kept = [
                (oid, (rtid, None if flags & fmt.FLAG_DELETED else buf[ds:de],
                       data_txn, index.get(oid, 0)))
                for (rpos, oid, rtid, _prev, flags, data_txn, ds,
                     de) in txn.records()
                if keep_all or (
                    current.get(oid) == rpos and oid not in deleted
                    and (reachable is None or oid in reachable))]
            if not kept and not keep_all and txn.end != end:
                # Nothing of it survives. The last transaction stays even
                # then, so the file keeps its last tid.
                continue
            status = txn.status if keep_all else fmt.STATUS_PACKED
            body, trailer, offsets = fmt.encode_transaction(
                pos, txn.tid, status, txn.user, txn.description,
                txn.extension, kept)
            out.append(body)
            out.append(trailer)
            size = len(body) + len(trailer)
            out_size += size
            pos += size
            index.update(offsets)
            if offsets:
                max_oid = max(max_oid, max(offsets))
            if out_size >= WRITE_CHUNK:
                data = b''.join(out)
                fsio.write(nfd, data, written)
                written += len(data)
                out = []
                out_size = 0
    except fmt.Invalid as invalid:
        raise invalid.error(path) from None
    if out:
        fsio.write(nfd, b''.join(out), written)
    return index, pos, max_oid
