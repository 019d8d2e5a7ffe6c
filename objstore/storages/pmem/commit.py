"""Writing to a PMemStorage: stores, conflicts, and the commit itself.

:class:`Committing` is the part of :class:`.storage.PMemStorage` that runs
under the commit lock, between ``tpc_begin`` and ``tpc_finish`` or
``tpc_abort``: steps V1-V3 and F1-F2 of the commit sequence in
:mod:`.storage`'s docstring. It reads the newest snapshot without the
storage's lock: only a commit changes which snapshot is newest, and the
commit lock keeps every other one out.
"""
from objstore import conflict
from objstore import errors
from objstore.storages.base import u64, z64
from objstore.storages.pmem import format as fmt
from objstore.storages.pmem import table
from objstore.storages.pmem.snapshot import Snapshot

_MAX_RECORD = 2 ** 32 - 1 - fmt.RECORD_HEAD
#: In a transaction's data: remove the object from the table (gc), as
#: opposed to None, which writes a deletion record.
REMOVE = object()


class _Chunk:
    """Hands out consecutive offsets of one reserved piece, then falls back
    on the storage's allocator; :meth:`done` gives back the unused tail."""

    def __init__(self, storage, offset, length):
        self._storage = storage
        self._start = self._next = offset
        self._end = None if offset is None else offset + length

    def __call__(self, size):
        if self._end is not None and self._next + size <= self._end:
            offset, self._next = self._next, self._next + size
            return offset
        return self._storage._alloc(size)

    def done(self):
        if self._end is None:
            return
        storage = self._storage
        with storage._lock:
            storage._allocated.remove((self._start, self._end - self._start))
            if self._next > self._start:
                storage._allocated.append(
                    (self._start, self._next - self._start))
            if self._end > self._next:
                storage._free.free(self._next, self._end - self._next)


class Committing:
    """Two-phase commit hooks and writes of :class:`.storage.PMemStorage`."""

    def _begin(self, tid, meta):
        self._tdata = {}
        self._resolved = []
        self._allocated = []
        self._voted = None

    def _check_write(self, transaction, version=''):
        self._check_writable()
        self._check_transaction(transaction)
        if version:
            raise errors.StorageError('versions are not supported')

    def store(self, oid, serial, data, version, transaction):
        """Write ``data`` for ``oid``; see ``IStorage.store``. A stale
        ``serial`` is resolved through ``objstore.conflict`` or raises
        ConflictError."""
        if transaction is not self._transaction or self._closed or version:
            self._check_write(transaction, version)
        if len(data) > _MAX_RECORD:
            raise errors.TransactionTooLargeError(
                'a record of %d bytes for %s; at most %d fit'
                % (len(data), errors.oid_repr(oid), _MAX_RECORD))
        if u64(oid) > self._oid:
            with self._lock:
                self._note_oid(oid)
        # The commit lock keeps other writers out: the current snapshot
        # stays the newest until tpc_finish.
        state = self._window.current.state(oid)
        serial = serial or z64
        committed, deleted = state or (z64, False)
        if committed != serial and (deleted or state is None):
            # As ZODB's FileStorage: over a deletion record only its own
            # tid is current.
            raise errors.ConflictError(
                'the object was deleted by a later transaction',
                oid=oid, serials=(committed, serial), data=data)
        if committed != serial:
            data = conflict.resolve(oid, committed, serial, data,
                                    self.loadSerial)
            self._resolved.append(oid)
        self._tdata[oid] = data

    def restore(self, oid, serial, data, version, prev_txn, transaction):
        """Write a record committed elsewhere (no conflict check); None
        deletes the object."""
        self._check_write(transaction, version)
        if data is not None and len(data) > _MAX_RECORD:
            raise errors.TransactionTooLargeError(
                'a record of %d bytes for %s' % (len(data),
                                                errors.oid_repr(oid)))
        with self._lock:
            self._note_oid(oid)
        self._tdata[oid] = data

    def deleteObject(self, oid, serial, transaction):  # ZODB's name
        """Remove ``oid`` in this transaction; ``serial`` must be current."""
        self._check_write(transaction)
        state = self._window.current.state(oid)
        if state is None or state[1]:
            raise errors.POSKeyError(oid)
        if state[0] != serial:
            raise errors.ConflictError(oid=oid, serials=(state[0], serial))
        self._tdata[oid] = None

    def checkCurrentSerialInTransaction(self, oid, serial, transaction):
        """ReadConflictError unless ``serial`` is current for ``oid``."""
        self._check_open()
        self._check_transaction(transaction)
        state = self._window.current.state(oid)
        if state is None or state[0] != serial or state[1]:
            raise errors.ReadConflictError(
                oid=oid, serials=(state and state[0], serial))

    def _vote(self, transaction):
        """V1-V3: write the records and table nodes into free space and
        flush them. PoolFullError (with ``grow=False``) happens here."""
        current = self._window.current
        pool = self._pool
        records, changes, superseded = [], {}, []
        count = current.count
        for oid, data in self._tdata.items():
            n = u64(oid)
            old = current.offset(n)
            live = False
            if old:
                length, _ = current.header(old, oid)
                superseded.append((old, fmt.aligned(fmt.RECORD_HEAD + length)))
                live = bool(length) or (
                    current.record(old, oid)[0] is not None)
            if data is REMOVE:
                # Garbage collection: the object leaves the table.
                count -= live
                if old:
                    changes[n] = 0
                continue
            count += (data is not None) - live
            records.append((n, fmt.pack_record(oid, self._tid, data)))
            changes[n] = 0
        # One piece of free space for the whole transaction when there is
        # one, so that V3 flushes one range.
        alloc = self._chunk(
            sum(fmt.aligned(len(record)) for _, record in records)
            + table.new_nodes_bound(current.height, changes) * fmt.NODE_SIZE)
        written = []
        for n, record in records:
            offset = alloc(fmt.aligned(len(record)))
            pool.write(offset, record)                          # V2
            written.append((offset, len(record)))
            changes[n] = offset
        root, height, nodes, replaced, leaves = table.update(
            self._path, pool.map, current.table, current.height,
            current.size, changes, lambda: alloc(fmt.NODE_SIZE))
        for offset, node in nodes:
            pool.write(offset, node)                            # V2
            written.append((offset, fmt.NODE_SIZE))
        alloc.done()
        if written:
            pool.flush_ranges(written)                          # V3
        superseded.extend((offset, fmt.NODE_SIZE) for offset in replaced)
        self._voted = (root, height, leaves, superseded, count)
        return list(self._resolved)

    def _chunk(self, total):
        """An allocator for this transaction's writes: from one free piece
        of ``total`` bytes (growing the pool for it when the free space is
        too small altogether), else piece by piece."""
        # The lock: polls in other threads free space meanwhile.
        with self._lock:
            offset = self._free.alloc(total) if total else None
            if offset is None and total and self._free.total() < total:
                if self._grow_ok:
                    self._grow(total)
                    offset = self._free.alloc(total)
            if offset is not None:
                self._allocated.append((offset, total))
        return _Chunk(self, offset, total)

    def _alloc(self, size, may_grow=True):
        """The offset of ``size`` free bytes, growing the pool if needed
        and allowed; recorded so an abort gives them back."""
        with self._lock:
            offset = self._free.alloc(size)
            if offset is None:
                if not may_grow:
                    return None
                self._grow(size)
                offset = self._free.alloc(size)
            self._allocated.append((offset, size))
        return offset

    def _grow(self, size):
        pool = self._pool
        if not self._grow_ok:
            raise errors.PoolFullError(
                '%s is full (%d bytes, grow=False): no %d free bytes in one'
                ' piece for this transaction' % (self._path, pool.size, size))
        old = pool.size
        new = max(old * 2, old + size + fmt.NODE_SIZE)
        pool.grow(new)                                          # V1
        self._free.free(old, pool.size - old)

    def _finish(self, tid):
        """F1-F2: switch the root; then make the commit visible."""
        root_offset, height, leaves, superseded, count = self._voted
        current = self._window.current
        root = self._root.replace(
            generation=self._root.generation + 1, tid=tid,
            max_oid=self._oid, table=root_offset, height=height,
            size=self._pool.size, count=count, free_offset=0, free_length=0)
        try:
            self._pool.write_root(root)                         # F1, F2
        except BaseException:
            self._fail('the root switch of transaction %s failed'
                       % errors.oid_repr(tid))
            raise
        self._root = root
        cache = dict(current.leaves)
        cache.update(leaves)
        self._window.advance(Snapshot(self._pool, root, cache),
                             list(self._tdata), self._committer, self._meta)
        self._pending.add(tid, superseded)
        self._allocated = []
        self._tdata = self._voted = None
        self._collect()

    def _abort(self):
        for offset, size in self._allocated:
            self._free.free(offset, size)
        self._allocated = []
        self._tdata = self._voted = None

    def _end_commit(self):
        self._committer = None
        super()._end_commit()
