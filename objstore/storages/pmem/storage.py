"""PMemStorage: a pool file mapped with mmap, copy-on-write commits.

Trade-offs, candidly. Against FileStorage it reads straight from the map
(no system call per load) and opens in constant time after a clean close,
but it keeps no history: an old revision lives only while a snapshot that
an open instance (a connection) reads can still reach it, so there is no
undo and ``db.open(at=...)`` works only inside that window. Against
MemoryStorage it is durable and holds more than memory.

Commit sequence and flush points
--------------------------------
Every change to the pool file goes through :mod:`.pmemio`; the numbered
points below are the calls a crash test can kill at. A *flush* is a
barrier: what it covers is durable when it returns.

Creating a pool (``create=True`` or a missing file):

  C1. ``open`` the file (``O_CREAT``; ``O_TRUNC`` with ``create=True``),
      ``truncate`` it to ``pool_size``, ``fsync``.
  C2. ``map``; ``write`` the header fields (flag CLEAN) and root slot A
      (empty database, tid ``z64``, generation 1) but not the magic;
      ``flush`` the header page.
  C3. ``write`` the magic; ``flush`` it. Before C3 completes the file is
      not a pool: opening it raises ``FileFormatError`` and nothing is
      written to it.

Opening a pool for writing (after every check, which only reads):

  O1. ``write`` the DIRTY flag; ``flush`` it. If the flag was not CLEAN
      (the last writer did not close), the free space is rebuilt in
      memory from the table (nothing written) and ``recovered`` is true.

Committing (``tpc_vote`` does V1-V3, ``tpc_finish`` does F1-F2):

  V1. Only when the free space is too small: ``truncate`` the file to
      the new size, ``fsync``, ``map`` the larger file (old maps stay
      open until ``close``, so loads in flight finish). With
      ``grow=False`` this raises ``PoolFullError`` instead and the
      transaction aborts having written nothing reachable.
  V2. ``write`` each new record and each new object-table node
      (copy-on-write: into free space that no root slot's table reaches
      and no open snapshot reads).
  V3. ``flush`` the written ranges, one call per run of nearby writes.
      After the last one the transaction's bytes are durable but still
      unreachable: a crash now leaves the pool as before the commit.
  F1. ``write`` the new root (generation + 1, tid, table, size, checksum)
      into the slot that does not hold the current root.
  F2. ``flush`` that slot: the commit point. A crash before F2 returns
      leaves the previous root in force (a torn slot fails its checksum
      and the other slot wins); after it, the transaction is durable.
      Then, in memory only: loads of new snapshots see it, and space it
      superseded is freed once no open snapshot can read it.

``pack`` (garbage collection) commits the same way, as a transaction that
deletes the unreachable objects.

Closing a writable pool (skipped if a commit failed in ``tpc_finish``):

  X1. ``write`` the free-space list into free space; ``flush`` it.
  X2. ``write`` a root with the same tid, generation + 1 and the list's
      location into the other slot; ``flush`` it.
  X3. ``write`` the CLEAN flag; ``flush`` it; ``unmap``; ``close``.
      A crash before X3 completes leaves the flag DIRTY: the next open
      ignores the list and rebuilds the free space from the table.

Processes: one writer process at a time (an exclusive lock on
``<path>.lock``, as FileStorage); any number of read-only processes may
open the pool meanwhile. A read-only process writes nothing to the pool
file: it publishes the tid and table of each snapshot it reads in a slot
of ``<path>.readers``, and the writer keeps what those snapshots reach.
"""
