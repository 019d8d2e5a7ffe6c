"""The storage-level workload: records, and one timed run of each row.

Every timed region is bracketed by ``time.perf_counter`` and preceded by
``os.sync()`` (untimed: dirty pages of earlier steps are not flushed by
this step's fsyncs); the garbage
collector stays enabled (both systems allocate, and a real application runs
with it on) but ``gc.collect()`` runs just before each region, so no region
pays for garbage the previous one left behind.

Object graph of a data set of ``n`` objects: object ``i`` has oid ``i``
(oid 0 is the root); objects ``0 .. n/2-1`` form a binary tree (object
``i`` refers to ``2i+1`` and ``2i+2`` when they are in that half), so they
are reachable from the root; objects ``n/2 .. n-1`` are referred to by
nobody: the garbage the pack row collects.
"""
import cProfile
import gc
import os
import pstats
import random
import statistics
import time

from ZODB.Connection import TransactionMetaData

from objstore.serialize import dumps_record

z64 = b'\0' * 8

_WORDS = ('object storage revision commit history record transaction index '
          'checkpoint snapshot packing garbage collection durable atomic '
          'isolated consistent python persistent reference').split()


class BenchObject:
    """The class every benchmark record names (storages never load it)."""


class _Ref:
    __slots__ = ('oid',)

    def __init__(self, oid):
        self.oid = oid


def _persistent_id(obj):
    # ZODB's usual reference form: (oid, class), so a reader can make a
    # ghost without loading the target.
    if isinstance(obj, _Ref):
        return (obj.oid, BenchObject)
    return None


def p64(n):
    return n.to_bytes(8, 'big')


def make_record(i, revision, children=()):
    """A ~300-byte record in ZODB's format for object ``i``."""
    rnd = random.Random(i * 2 + revision)
    body = ' '.join(rnd.choice(_WORDS) for _ in range(22))[:150]
    state = {
        'title': 'object %d revision %d' % (i, revision),
        'body': body,
        'count': i,
        'revision': revision,
        'children': [_Ref(p64(c)) for c in children],
    }
    return dumps_record(BenchObject, state, _persistent_id)


def tree_children(i, n):
    half = n // 2
    return [c for c in (2 * i + 1, 2 * i + 2) if c < half]


class Dataset:
    """Two revisions of ``n`` records, built once and shared by every run."""

    def __init__(self, n, batch):
        self.n = n
        self.batch = batch
        self.oids = [p64(i) for i in range(n)]
        self.rev1 = [make_record(i, 1, tree_children(i, n)) for i in range(n)]
        self.rev2 = [make_record(i, 2, tree_children(i, n)) for i in range(n)]
        order = list(range(n))
        random.Random(0).shuffle(order)
        #: the order loads run in (the same for every system)
        self.order = order
        self.record_size = statistics.mean(len(r) for r in self.rev1)

    def batches(self):
        for start in range(0, self.n, self.batch):
            yield range(start, min(self.n, start + self.batch))


class Failure(Exception):
    """A storage did something the benchmark cannot measure around."""


def timed(func, profile=None):
    """``(seconds, result)`` of ``func()``, after ``os.sync()`` and a full
    collection (the sync keeps the writeback of an earlier row's files out
    of this row's fsyncs).

    With ``profile`` (a file name), ``func`` runs under cProfile and the
    stats are added to that file (the time then includes the profiler's
    overhead).
    """
    os.sync()
    gc.collect()
    if profile is None:
        start = time.perf_counter()
        result = func()
        return time.perf_counter() - start, result
    profiler = cProfile.Profile()
    start = time.perf_counter()
    result = profiler.runcall(func)
    elapsed = time.perf_counter() - start
    if os.path.exists(profile):
        stats = pstats.Stats(profile)
        stats.add(profiler)
        stats.dump_stats(profile)
    else:
        profiler.dump_stats(profile)
    return elapsed, result


def commit(storage, items):
    """Store ``(oid, serial, data)`` items in one transaction; its tid."""
    txn = TransactionMetaData()
    storage.tpc_begin(txn)
    try:
        for oid, serial, data in items:
            storage.store(oid, serial, data, '', txn)
        storage.tpc_vote(txn)
        tid = storage.tpc_finish(txn)
    except BaseException:
        storage.tpc_abort(txn)
        raise
    if tid is None:
        # ZODB storages before 5 returned nothing; lastTransaction is it.
        tid = storage.lastTransaction()
    return tid


def store_first_revisions(storage, data):
    """Store revision 1 of every object (oids from ``new_oid``); batch tids."""
    tids = []
    oids = data.oids
    for batch in data.batches():
        txn = TransactionMetaData()
        storage.tpc_begin(txn)
        for i in batch:
            oid = z64 if i == 0 else storage.new_oid()
            if oid != oids[i]:
                raise Failure('new_oid returned %r, expected %r (oids must '
                              'count up from 1)' % (oid, oids[i]))
            storage.store(oid, z64, data.rev1[i], '', txn)
        storage.tpc_vote(txn)
        tid = storage.tpc_finish(txn) or storage.lastTransaction()
        tids.append(tid)
    return tids


def store_second_revisions(storage, data, tids1):
    tids = []
    for batch, serial in zip(data.batches(), tids1):
        tids.append(commit(storage, ((data.oids[i], serial, data.rev2[i])
                                     for i in batch)))
    return tids


def load_all(storage, data):
    load = storage.load
    oids = data.oids
    for i in data.order:
        load(oids[i], '')


def load_before_all(storage, data, tids2):
    load_before = storage.loadBefore
    oids = data.oids
    batch = data.batch
    for i in data.order:
        if load_before(oids[i], tids2[i // batch]) is None:
            raise Failure('loadBefore(%r, tid of revision 2) returned None'
                          % oids[i])


def iterate_all(storage):
    count = 0
    it = storage.iterator()
    try:
        for txn in it:
            for record in txn:
                record.oid, record.data
                count += 1
    finally:
        close = getattr(it, 'close', None)
        if close is not None:
            close()
    return count


def verify_loads(storage, data, tids2):
    """Spot-check what the timed loads returned (not timed)."""
    for i in (0, data.n // 3, data.n - 1):
        got, tid = storage.load(data.oids[i], '')
        if got != data.rev2[i]:
            raise Failure('load(%r) returned other bytes than revision 2'
                          % data.oids[i])
        before = storage.loadBefore(data.oids[i], tids2[i // data.batch])
        if before is None or before[0] != data.rev1[i]:
            raise Failure('loadBefore(%r, tid of revision 2) did not return '
                          'revision 1: %r' % (data.oids[i], before))


def verify_pack(storage, data, poskey_error):
    live, dead = data.oids[data.n // 2 - 1], data.oids[data.n - 1]
    storage.load(live, '')
    try:
        storage.load(dead, '')
    except poskey_error:
        pass
    else:
        raise Failure('after pack with GC, unreachable %r still loads' % dead)


def data_rows(system, directory, data, rows, errors_out, profile=None):
    """Time the data rows for one system; ``{row: seconds}``.

    ``errors_out`` collects ``(row, message)`` for rows that failed;
    ``profile(row)``, when given, names the cProfile stats file of a row.
    """
    def prof(row):
        return None if profile is None else profile(row)

    from ZODB.POSException import POSKeyError
    from objstore.errors import POSKeyError as ObjstorePOSKeyError
    results = {}
    storage = system.create(directory)
    try:
        try:
            results['store'], tids1 = timed(
                lambda: store_first_revisions(storage, data), prof('store'))
            tids2 = store_second_revisions(storage, data, tids1)
        except Exception as exc:
            errors_out.append(('store', describe(exc)))
            return results
        steps = [
            ('load', lambda st: load_all(st, data)),
            ('loadBefore', lambda st: load_before_all(st, data, tids2)),
            ('iterate', iterate_all),
        ]
        for row, func in steps:
            if row not in rows:
                continue
            try:
                storage = system.reopen(storage, directory)
                results[row], result = timed(lambda: func(storage),
                                               prof(row))
                if row == 'iterate' and result != 2 * data.n:
                    raise Failure('iterator yielded %d records, expected %d'
                                  % (result, 2 * data.n))
                if row == 'loadBefore':
                    verify_loads(storage, data, tids2)
            except Exception as exc:
                errors_out.append((row, describe(exc)))
        if 'pack' in rows:
            try:
                storage = system.reopen(storage, directory)
                from objstore.storages.base import tid_time
                # Pack to a moment after the last commit (tids may run a
                # little ahead of the clock when commits are fast).
                t = max(time.time(), tid_time(tids2[-1]) + 0.001)
                ref = system.references()
                results['pack'], _ = timed(lambda: storage.pack(t, ref),
                                           prof('pack'))
                verify_pack(storage, data, (POSKeyError, ObjstorePOSKeyError))
            except Exception as exc:
                errors_out.append(('pack', describe(exc)))
    finally:
        try:
            storage.close()
        except Exception as exc:
            errors_out.append(('close', describe(exc)))
    return results


class Committer:
    """Times one-record update transactions on a fresh storage."""

    def __init__(self, system, directory, profile=None):
        self.storage = system.create(directory)
        self.record = make_record(0, 1)
        self.serial = commit(self.storage, [(z64, z64, self.record)])
        self.profile = profile
        self.profiler = cProfile.Profile() if profile else None

    def __call__(self):
        storage, txn = self.storage, TransactionMetaData()
        if self.profiler is not None:
            self.profiler.enable()
        start = time.perf_counter()
        storage.tpc_begin(txn)
        storage.store(z64, self.serial, self.record, '', txn)
        storage.tpc_vote(txn)
        serial = storage.tpc_finish(txn)
        elapsed = time.perf_counter() - start
        if self.profiler is not None:
            self.profiler.disable()
        self.serial = serial or storage.lastTransaction()
        return elapsed

    def close(self):
        self.storage.close()
        if self.profiler is not None:
            self.profiler.dump_stats(self.profile)


class FsyncProbe:
    """Times ``os.fsync`` after appending 4 KiB to a file in ``directory``
    (a commit appends, too, so both pay for the file's growing size)."""

    def __init__(self, directory):
        self.path = os.path.join(directory, 'fsync-probe')
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                          0o644)
        self.block = b'x' * 4096

    def __call__(self):
        os.write(self.fd, self.block)
        start = time.perf_counter()
        os.fsync(self.fd)
        return time.perf_counter() - start

    def close(self):
        os.close(self.fd)
        os.remove(self.path)


def interleaved_latencies(parties, count, warmup=10):
    """Call each party ``warmup + count`` times, one call of each in turn
    (the first of each round rotates), so that a change in the disk's or
    the machine's load hits every party alike; the last ``count`` seconds
    of each."""
    times = [[] for _ in parties]
    os.sync()
    gc.collect()
    for i in range(warmup + count):
        for j in range(len(parties)):
            k = (i + j) % len(parties)
            elapsed = parties[k]()
            if i >= warmup:
                times[k].append(elapsed)
    return times


def _checkpoint_signature(system, directory):
    signature = []
    for path in system.checkpoint_paths(directory):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        signature.append((path, st.st_ino, st.st_mtime_ns, st.st_size))
    return signature


def write_open_file(system, directory, n, batch, crash_point=0.5):
    """Fill a new file storage with ``n`` objects; ``(storage, info)``,
    the storage left open.

    A storage that writes index checkpoints while running (seen as its
    checkpoint files changing) gets more transactions after the ``n``
    objects: updates of existing objects, until the log after the last
    checkpoint is at least ``crash_point`` of the last interval between
    two checkpoints (more when the ``n`` objects already end further in).
    Without them, where the crash falls would depend on whether ``n``
    happens to end on a checkpoint (a tail of nothing). 0.5 is the
    expected tail of a crash at a random moment; near 1 the worst.
    """
    records = [make_record(i, 1) for i in range(997)]
    data_path = system.path(directory)
    storage = system.create(directory)
    events = []          # data-file size after each checkpoint
    signature = _checkpoint_signature(system, directory)

    def committed():
        nonlocal signature
        now = _checkpoint_signature(system, directory)
        if now != signature:
            events.append(os.path.getsize(data_path))
            signature = now

    serials = []
    for start in range(0, n, batch):
        items = []
        for i in range(start, min(n, start + batch)):
            oid = z64 if i == 0 else storage.new_oid()
            items.append((oid, z64, records[i % 997]))
        serials.append(commit(storage, items))
        committed()
    info = {'checkpoints': len(events), 'updates': 0}
    if events and crash_point:
        interval = events[-1] - (events[-2] if len(events) > 1 else 0)
        # Updates in small transactions, so the tail lands close to target.
        step = max(1, batch // 10)
        updated = {}     # object -> serial of its update
        k = 0
        while os.path.getsize(data_path) - events[-1] < crash_point * interval:
            first = (k * step) % max(1, n - step)
            objects = range(first, min(n, first + step))
            tid = commit(storage, [
                (p64(i), updated.get(i, serials[i // batch]),
                 records[(i + k + 1) % 997]) for i in objects])
            updated.update((i, tid) for i in objects)
            k += 1
            info['updates'] += len(objects)
            committed()
        info['tail_bytes'] = os.path.getsize(data_path) - events[-1]
        info['interval_bytes'] = interval
    return storage, info


def describe(exc):
    """One line naming an exception and where it was raised."""
    tb = exc.__traceback__
    where = ''
    while tb is not None:
        code = tb.tb_frame.f_code
        where = '%s:%d in %s' % (os.path.relpath(code.co_filename),
                                 tb.tb_lineno, code.co_name)
        tb = tb.tb_next
    return '%s: %s (at %s)' % (type(exc).__name__, exc, where)
