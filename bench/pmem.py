"""PMemStorage against objstore FileStorage, ZODB FileStorage and LMDB.

``python -m bench pmem [--quick] [--sizes N,N,...] [--repeat K] [--loads L]
[--commits C] [--opens O] [--sides S,S] [--clock cpu] [--json FILE]
[--profile DIR]``

Each database is built once per size (N small objects, ``bench.db_workload
.Item``, in an ``OOBTree`` under the root, ``--batch`` objects per commit)
and every phase reuses it; the files go when the size is done. Sides: the
objstore DB on PMemStorage, the objstore DB on objstore FileStorage, ZODB's
DB on ZODB FileStorage, and py-lmdb holding the very records PMemStorage
holds (under the same oids), as the near-physical limit of a load. Each
repetition runs every side, the one that goes first rotating. Phases:

* point loads: a new DB on a newly opened storage (page cache warm: its
  files are read first, untimed), one fresh connection, ``L`` random
  ``conn.get(oid).count`` (the same objects in the same order on every
  side); the time per load;
* raw loads: ``storage.load(oid)`` of the same objects (LMDB: ``get`` in
  one read transaction), alone and followed by unpickling the record's two
  pickles (class and state);
* commits: one object changed per transaction, the sides taking turns call
  by call, the median of ``C`` (LMDB: ``put`` of one record, durable
  commit);
* open after a clean close: storage, DB, first connection and one object
  read, the median of ``O`` opens; its scaling from the smallest to the
  largest size, on the best of the ``O`` (other processes' disk traffic
  only adds to an open's one or two flushes);
* open after a crash: a writer process committing in a loop is killed with
  SIGKILL at a random moment, then the same open (and a check that every
  acknowledged commit is there).

Targets (issue 5): point loads through the DB >= 2x ZODB FileStorage; raw
``PMemStorage.load`` >= 0.5x LMDB get + unpickle; open after a clean close
independent of the number of objects (here: largest / smallest <= 1.5).
``--profile DIR`` writes the PMem side's profiles, one per phase and size.
"""
import argparse
import io
import os
import pickle
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time

import transaction
from BTrees.OOBTree import OOBTree

from bench import environment, systems
from bench import db_workload
from bench.db_workload import Item
from bench.pmem_report import (
    DB_SIDES, SIDES, format_report, summarize)
from bench.report import _count
from bench.storages import ROOT, Log, common_report, print_report, \
    run_in_workdir
from bench.workload import Failure, describe, interleaved_latencies, timed

try:
    import lmdb
except ImportError:     # the LMDB column then reads n/a and says why
    lmdb = None

#: commits the crash writer makes before it says it is ready to be killed
READY_AFTER = 5


# -- sides -------------------------------------------------------------------

class PMemSystem(systems.System):
    """objstore's PMemStorage on one pool file, with its defaults."""

    family = 'objstore'
    kind = 'file'
    label = 'PMemStorage'

    def storage_class(self):
        from objstore.storages import PMemStorage
        return PMemStorage

    def path(self, directory):
        return os.path.join(directory, 'Data.pool')

    def create(self, directory):
        return self.storage_class()(self.path(directory), create=True)

    def open(self, directory):
        return self.storage_class()(self.path(directory))


class DBSide:
    """A database class on a storage system, as every phase drives it."""

    def __init__(self, name):
        self.name = name
        self.system = PMemSystem() if name == 'pmem' else systems.get(name)
        self.label = '%s DB on %s' % (self.system.family, self.system.label)

    def check(self):
        """None when this side can run, else a one-line reason."""
        try:
            self.system.storage_class()
            self.db_class()
        except Exception as exc:
            return '%s: %s' % (type(exc).__name__, exc)
        return None

    def db_class(self):
        if self.system.family == 'ZODB':
            from ZODB import DB
            return DB
        from objstore import DB
        return DB

    def make_db(self, storage, cache_size=1000):
        return self.db_class()(storage, cache_size=cache_size)

    def files(self, directory):
        return [os.path.join(directory, f)
                for f in sorted(os.listdir(directory))]


def build(side, directory, n, batch):
    """Fill a new database with ``n`` items; ``(item oids, counter oid)``.

    Item ``i`` has ``count == i``; the counter (another Item) is the one
    object the commit and crash phases change.
    """
    db = side.make_db(side.system.create(directory))
    try:
        tm = transaction.TransactionManager()
        conn = db.open(transaction_manager=tm)
        root = conn.root()
        tree = root['items'] = OOBTree()
        root['counter'] = Item(0)
        oids = []
        for start in range(0, n, batch):
            items = [Item(i) for i in range(start, min(n, start + batch))]
            for item in items:
                tree[item.count] = item
            tm.commit()
            oids.extend(item._p_oid for item in items)
            del items
            conn.cacheMinimize()
        counter = root['counter']._p_oid
        conn.close()
    finally:
        db.close()
    return oids, counter


def open_and_read(side, directory, oid):
    """Open storage, DB and a connection, read ``oid``'s count; returns
    ``(seconds of the storage constructor, storage, db, conn, count)``."""
    start = time.perf_counter()
    storage = side.system.open(directory)
    constructed = time.perf_counter() - start
    db = side.make_db(storage)
    conn = db.open(transaction_manager=transaction.TransactionManager())
    return constructed, storage, db, conn, conn.get(oid).count


def raw_loader(storage):
    """``oid -> record bytes`` of the storage's current revisions."""
    load = storage.load

    def load_record(oid):
        return load(oid)[0]
    return load_record


def unpickle(record):
    """The class and the state of a record (its two pickles)."""
    reader = pickle.Unpickler(io.BytesIO(record))
    return reader.load(), reader.load()


def crash_writer(name, directory, counter_hex):
    """Commit +1 to the counter forever; after ``READY_AFTER`` commits
    print ``ready <count>`` (then each acknowledged count): the parent
    kills this process at a random moment of a commit stream."""
    side = DBSide(name)
    db = side.make_db(side.system.open(directory))
    tm = transaction.TransactionManager()
    conn = db.open(transaction_manager=tm)
    counter = conn.get(bytes.fromhex(counter_hex))
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and os.getppid() != 1:
        counter.count += 1
        tm.commit()
        done += 1
        if done >= READY_AFTER:
            sys.stdout.write('ready %d\n' % counter.count)
            sys.stdout.flush()
    os._exit(1)


# -- the run -----------------------------------------------------------------

class Run:
    """What one run measured: ``times[side][row]`` holds one value per
    repetition (seconds; commits: the median latency of the repetition)."""

    def __init__(self, opts, workdir, log):
        self.opts = opts
        self.workdir = workdir
        self.log = log
        self.sides = {}
        self.times = {side: {} for side in SIDES}
        self.latencies = {}      # 'side commit N' -> [[seconds]] per rep
        self.skipped = {}
        self.errors = []         # (side, row, message)
        self.notes = []
        self.rnd = random.Random(5)

    def record(self, side, row, value):
        self.times[side].setdefault(row, []).append(value)

    def error(self, side, row, message):
        self.log('ERROR %s %s: %s' % (side, row, message))
        self.errors.append((side, row, message))

    def rotated(self, names, rep):
        names = list(names)
        k = rep % len(names)
        return names[k:] + names[:k]

    def setup(self):
        for name in SIDES:
            if name not in self.opts.sides:
                self.skipped[name] = 'not run (--sides)'
        for name in DB_SIDES:
            if name in self.skipped:
                continue
            side = DBSide(name)
            reason = side.check()
            if reason is None:
                self.sides[name] = side
            else:
                self.skipped[name] = 'not available: %s' % reason
        if lmdb is None and 'lmdb' not in self.skipped:
            self.skipped['lmdb'] = ('not available: py-lmdb is not installed '
                                    '(pip install lmdb)')
        for name, reason in self.skipped.items():
            self.log('skipping %s: %s' % (name, reason))

    def profile(self, side, row, n):
        if not self.opts.profile or side != 'pmem':
            return None
        os.makedirs(self.opts.profile, exist_ok=True)
        return os.path.join(self.opts.profile, 'pmem-%s-%d.pstats' % (row, n))

    def sizes(self):
        for n in self.opts.sizes:
            base = os.path.join(self.workdir, str(n))
            built = {}
            for name, side in self.sides.items():
                directory = os.path.join(base, name)
                os.makedirs(directory)
                self.log('N=%d: building %s' % (n, side.label))
                try:
                    seconds, built[name] = timed(lambda: build(
                        side, directory, n, self.opts.batch))
                except Exception as exc:
                    self.error(name, 'build %d' % n, describe(exc))
                    continue
                self.record(name, 'build %d' % n, seconds)
                self.notes.append('%s, %s objects: %s' % (
                    side.label, _count(n), _file_sizes(directory)))
            if 'lmdb' not in self.skipped:
                self.build_lmdb(base, n, built)
            try:
                self.phases(base, n, built)
            finally:
                if not self.opts.keep:
                    shutil.rmtree(base, ignore_errors=True)

    def build_lmdb(self, base, n, built):
        source = next((s for s in ('pmem', 'objstore-file') if s in built),
                      None)
        if source is None:
            return
        directory = os.path.join(base, 'lmdb')
        storage = self.sides[source].system.open(os.path.join(base, source))
        try:
            load = raw_loader(storage)
            env = lmdb.open(directory, map_size=max(1 << 26, n * 4096))
            oids = built[source][0]
            for start in range(0, n, self.opts.batch):
                with env.begin(write=True) as txn:
                    for oid in oids[start:start + self.opts.batch]:
                        txn.put(oid, load(oid))
            env.close()
        except Exception as exc:
            self.error('lmdb', 'build %d' % n, describe(exc))
            return
        finally:
            storage.close()
        built['lmdb'] = (built[source][0], source)
        if n == self.opts.sizes[0]:
            self.notes.append('LMDB holds the records %s holds, under the '
                              'same keys (its oids)' % self.sides[source]
                              .system.label)

    def phases(self, base, n, built):
        order = self.rnd.sample(range(n), min(n, self.opts.loads))
        expected = sum(order)
        for rep in range(self.opts.repeat):
            for name in self.rotated(built, rep):
                directory = os.path.join(base, name)
                oids = built[name][0]
                for row, func in (('load', self.point_loads),
                                  ('raw', self.raw_loads)):
                    if name == 'lmdb' and row == 'load':
                        continue
                    self.log('N=%d rep %d: %s, %s' % (n, rep + 1, row, name))
                    try:
                        func(name, directory, n, oids, order, expected)
                    except Exception as exc:
                        self.error(name, '%s %d' % (row, n), describe(exc))
            self.commits(base, n, built)
            for name in self.rotated(built, rep):
                self.opens(name, os.path.join(base, name), n, built[name])
            for name in self.rotated([s for s in built if s != 'lmdb'], rep):
                self.log('N=%d rep %d: crash and reopen %s'
                         % (n, rep + 1, name))
                try:
                    self.crash(name, os.path.join(base, name), n, built[name])
                except Exception as exc:
                    self.error(name, 'crash %d' % n, describe(exc))

    def point_loads(self, name, directory, n, oids, order, expected):
        side = self.sides[name]
        _warm(side.files(directory))
        db = side.make_db(side.system.open(directory), len(order) + 1000)
        try:
            conn = db.open(
                transaction_manager=transaction.TransactionManager())
            get = conn.get

            def loads():
                total = 0
                for i in order:
                    total += get(oids[i]).count
                return total
            seconds, total = db_workload.timed(
                loads, self.profile(name, 'load', n), self.opts.clock)
            if total != expected:
                raise Failure('the loaded counts add up to %d, not %d'
                              % (total, expected))
            conn.close()
        finally:
            db.close()
        self.record(name, 'load %d' % n, seconds / len(order))

    def raw_loads(self, name, directory, n, oids, order, expected):
        if name == 'lmdb':
            env = lmdb.open(directory, readonly=True, lock=False)
            txn = env.begin()
            load, close = txn.get, lambda: (txn.abort(), env.close())
        else:
            side = self.sides[name]
            _warm(side.files(directory))
            storage = side.system.open(directory)
            load, close = raw_loader(storage), storage.close
        try:
            def plain():
                for i in order:
                    load(oids[i])

            def unpickled():
                total = 0
                for i in order:
                    total += unpickle(load(oids[i]))[1]['count']
                return total
            seconds, _ = db_workload.timed(
                plain, self.profile(name, 'raw', n), self.opts.clock)
            self.record(name, 'raw %d' % n, seconds / len(order))
            seconds, total = db_workload.timed(unpickled,
                                               clock=self.opts.clock)
            self.record(name, 'raw-unpickle %d' % n, seconds / len(order))
            if total != expected:
                raise Failure('the unpickled counts add up to %d, not %d'
                              % (total, expected))
        finally:
            close()

    def commits(self, base, n, built):
        parties, names = [], []
        try:
            for name in built:
                try:
                    parties.append(_committer(
                        self.sides.get(name), os.path.join(base, name),
                        built[name], self.profile(name, 'commit', n)))
                    names.append(name)
                except Exception as exc:
                    self.error(name, 'commit %d' % n, describe(exc))
            self.log('N=%d: %d commits on each of %s' % (
                n, self.opts.commits, ', '.join(names)))
            latencies = interleaved_latencies(parties, self.opts.commits)
        except Exception as exc:
            self.error(','.join(names), 'commit %d' % n, describe(exc))
            return
        finally:
            for party in parties:
                party.close()
        for name, seconds in zip(names, latencies):
            self.record(name, 'commit %d' % n, statistics.median(seconds))
            self.latencies.setdefault('%s commit %d' % (name, n), []).append(
                seconds)

    def opens(self, name, directory, n, built):
        runs, constructors = [], []
        try:
            for _ in range(self.opts.opens):
                if name == 'lmdb':
                    seconds, _ = timed(lambda: _lmdb_open_read(
                        directory, built[0][0]))
                    runs.append(seconds)
                    continue
                side = self.sides[name]
                seconds, (constructed, storage, db, conn, _) = timed(
                    lambda: open_and_read(side, directory, built[1]),
                    self.profile(name, 'open', n))
                self.check_flags(name, storage, n, crashed=False)
                conn.close()
                db.close()
                runs.append(seconds)
                constructors.append(constructed)
        except Exception as exc:
            self.error(name, 'open %d' % n, describe(exc))
            return
        self.record(name, 'open %d' % n, statistics.median(runs))
        self.record(name, 'open-min %d' % n, min(runs))
        if constructors:
            self.record(name, 'open-storage %d' % n,
                        statistics.median(constructors))

    def crash(self, name, directory, n, built):
        env = dict(os.environ)
        env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
        proc = subprocess.Popen(
            [sys.executable, '-c', 'import sys; from bench.pmem import '
             'crash_writer; crash_writer(*sys.argv[1:])', name, directory,
             built[1].hex()], cwd=ROOT, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        try:
            line = proc.stdout.readline()
            time.sleep(self.rnd.uniform(0, 0.02))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            err = proc.stderr.read().decode('utf-8', 'replace').strip()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        if not line.startswith(b'ready'):
            raise Failure('the writer failed: %s'
                          % (err.splitlines()[-1] if err else 'no output'))
        acknowledged = int(line.split()[1])
        side = self.sides[name]
        seconds, (_, storage, db, conn, count) = timed(
            lambda: open_and_read(side, directory, built[1]),
            self.profile(name, 'crash', n))
        try:
            self.check_flags(name, storage, n, crashed=True)
            if count < acknowledged:
                raise Failure('after the crash the counter reads %d; the '
                              'writer was told %d committed'
                              % (count, acknowledged))
        finally:
            conn.close()
            db.close()
        self.record(name, 'crash %d' % n, seconds)

    def check_flags(self, name, storage, n, crashed):
        """PMemStorage's clean_shutdown / recovered say what happened."""
        if name != 'pmem':
            return
        clean = getattr(storage, 'clean_shutdown', None)
        recovered = getattr(storage, 'recovered', None)
        if clean is crashed or recovered is not crashed:
            message = ('after a %s, clean_shutdown=%r recovered=%r'
                       % ('crash' if crashed else 'clean close', clean,
                          recovered))
            if ('pmem', 'flags %d' % n, message) not in self.errors:
                self.error('pmem', 'flags %d' % n, message)


class _DBCommitter:
    """One small object changed and committed per call, through the DB."""

    def __init__(self, side, directory, built, profile):
        import cProfile
        self.db = side.make_db(side.system.open(directory))
        self.tm = transaction.TransactionManager()
        self.conn = self.db.open(transaction_manager=self.tm)
        self.counter = self.conn.get(built[1])
        self.profile = profile
        self.profiler = cProfile.Profile() if profile else None

    def __call__(self):
        if self.profiler is not None:
            self.profiler.enable()
        start = time.perf_counter()
        self.counter.count += 1
        self.tm.commit()
        elapsed = time.perf_counter() - start
        if self.profiler is not None:
            self.profiler.disable()
        return elapsed

    def close(self):
        self.conn.close()
        self.db.close()
        if self.profiler is not None:
            self.profiler.dump_stats(self.profile)


class _LmdbCommitter:
    """One record put per call, in a durable write transaction."""

    def __init__(self, directory, built):
        self.env = lmdb.open(directory)
        self.key = built[0][0]
        with self.env.begin() as txn:
            self.record = txn.get(self.key)

    def __call__(self):
        start = time.perf_counter()
        with self.env.begin(write=True) as txn:
            txn.put(self.key, self.record)
        return time.perf_counter() - start

    def close(self):
        self.env.close()


def _committer(side, directory, built, profile):
    if side is None:
        return _LmdbCommitter(directory, built)
    return _DBCommitter(side, directory, built, profile)


def _lmdb_open_read(directory, key):
    env = lmdb.open(directory, readonly=True, lock=False)
    try:
        with env.begin() as txn:
            return unpickle(txn.get(key))
    finally:
        env.close()


def _warm(paths):
    """Read files whole, so their pages are in the page cache."""
    for path in paths:
        with open(path, 'rb') as f:
            while f.read(1 << 20):
                pass


def _file_sizes(directory):
    return ', '.join('%s %.1f MB' % (os.path.basename(p),
                                      os.path.getsize(p) / 1e6)
                     for p in sorted(os.path.join(directory, f)
                                     for f in os.listdir(directory)))


# -- report ------------------------------------------------------------------

#: (phase, label, sides shown, (ref, ours) of the ratio, target): a target
#: is None (information) or (op, bound) on the ratio ref/ours.
def parse_args(argv):
    p = argparse.ArgumentParser(
        prog='python -m bench pmem', description=__doc__.split('\n')[0])
    p.add_argument('--quick', action='store_true',
                   help='N = 1k and 10k, 2,000 loads, 20 commits, 3 opens')
    p.add_argument('--sizes', default=None,
                   help='object counts, comma-separated (default '
                        '10000,100000,1000000; --quick: 1000,10000)')
    p.add_argument('--repeat', type=int, default=3, metavar='K',
                   help='repetitions per side, the first side rotating (3)')
    p.add_argument('--loads', type=int, default=None, metavar='L',
                   help='random point loads per repetition (default 20000; '
                        '--quick: 2000)')
    p.add_argument('--commits', type=int, default=None, metavar='C',
                   help='small commits per side and repetition (default '
                        '200; --quick: 20)')
    p.add_argument('--opens', type=int, default=None, metavar='O',
                   help='opens after a clean close per side and repetition '
                        '(default 10; --quick: 3)')
    p.add_argument('--clock', choices=tuple(db_workload.CLOCKS),
                   default='wall',
                   help='wall (default): elapsed time; cpu: the process\'s '
                        'CPU time for the load rows (steadier when other '
                        'processes share the CPUs; commits and opens stay '
                        'in elapsed time, they wait for the disk)')
    p.add_argument('--sides', default=','.join(SIDES),
                   help='comma-separated subset of: %s' % ','.join(SIDES))
    p.add_argument('--batch', type=int, default=10000,
                   help='objects per commit while building (10000)')
    p.add_argument('--json', metavar='FILE', help='write all results here')
    p.add_argument('--dir', default=None,
                   help='parent of the temporary directory (default: the '
                        'system temp dir)')
    p.add_argument('--keep', action='store_true',
                   help='keep the temporary files')
    p.add_argument('--profile', metavar='DIR',
                   help='run the PMem side\'s timed regions under cProfile, '
                        'writing DIR/pmem-<row>-<N>.pstats (its times then '
                        'include the profiler\'s overhead)')
    opts = p.parse_args(argv)
    opts.sides = [s for s in opts.sides.split(',') if s]
    unknown = [s for s in opts.sides if s not in SIDES]
    if unknown:
        p.error('--sides: unknown %s (choose from %s)'
                % (','.join(unknown), ','.join(SIDES)))
    if opts.sizes is None:
        opts.sizes = '1000,10000' if opts.quick else '10000,100000,1000000'
    try:
        opts.sizes = [int(s) for s in opts.sizes.split(',') if s]
    except ValueError:
        p.error('--sizes: comma-separated integers')
    for name, quick, full in (('loads', 2000, 20000), ('commits', 20, 200),
                              ('opens', 3, 10)):
        if getattr(opts, name) is None:
            setattr(opts, name, quick if opts.quick else full)
    if not opts.sizes or any(n < 1 for n in opts.sizes):
        p.error('--sizes: at least one object')
    for name in ('repeat', 'loads', 'commits', 'opens', 'batch'):
        if getattr(opts, name) < 1:
            p.error('--%s must be at least 1' % name)
    return opts


def run(opts, log=None):
    """Run the benchmark; the report as a JSON-serializable dict."""
    bench, env = run_in_workdir(opts, log or Log(), 'objstore-bench-pmem-',
                                Run, ('setup', 'sizes'))
    result = common_report(opts, bench, env, summarize(bench))
    result['latencies'] = bench.latencies
    result['sides'] = [DBSide(name).label for name in DB_SIDES
                       if name in opts.sides]
    if 'lmdb' in opts.sides:
        result['sides'].append('LMDB (py-lmdb, default durable commits)')
    result['lmdb_version'] = environment._version('lmdb')
    return result


def main(argv=None):
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    return print_report(opts, run(opts), format_report)


if __name__ == '__main__':
    sys.exit(main())
