"""objstore's PostgreSQLStorage against RelStorage: zodbshootout's phases.

``python -m bench postgresql [--quick] [--procs 1,4] [--sizes N] [--repeat K]
[--rounds R] [--json FILE] [--calibrate] [--profile DIR] [--server DSN]``

Sides: objstore's ``DB`` on ``PostgreSQLStorage(dsn, keep_history=True)``
against ZODB's ``DB`` on RelStorage (history-preserving, psycopg2, default
options: a 10 MB local cache per storage, no memcache, no persistent cache
files), both on the same PostgreSQL server. Each run gets its own database,
created for it and dropped after. A run starts ``P`` worker processes (1
and 4 by default); every phase begins at a barrier, so the processes work
concurrently, each on its own ``N`` objects (``bench.db_workload.Item``,
~300-byte records, in a ``PersistentMapping`` of its own, as zodbshootout's
default), and a phase's time is the mean over the processes of the time
each took. The phases, as zodbshootout defines them:

* add: one transaction adds ``N`` new objects to the mapping, commits;
* update: same connection, caches kept, changes every object, commits;
* warm: a new storage and DB, open a connection, read every object
  (zodbshootout starts a new process; a new storage object in the same
  process comes to the same here: both sides keep their caches in the
  storage object, and neither has a persistent or shared cache);
* cold: ghost the connection's objects and clear the storage's caches,
  read every object again;
* hot: ghost the objects only (storage caches kept), read them again;
* steamin: read them again from the connection's cache (mean of 10 passes,
  each its own transaction);
* conflicts: ``T`` small transactions per process, each adding 1 to one
  shared ``BTrees.Length`` (conflicts resolved at commit) and changing one
  object of its own; seconds per committed transaction.

Every read phase is one transaction (begin, reads, abort) and the
transaction's start (the poll for other processes' commits) is timed
with it. Both sides' processes exist side by side during a repetition
and take turns phase by phase (the side that goes first alternates), so
the two times of a ratio are measured seconds apart; the idle side's
processes wait on a pipe. Within one repetition every phase but conflicts
runs ``R`` rounds (add/update on a new mapping each round; warm on a new
storage and DB each round) and the median round counts. Target (issue 6):
objstore >= 1.0x RelStorage in every phase with 1 and 4 processes.
"""
import argparse
import cProfile
import gc
import itertools
import multiprocessing
import os
import re
import statistics
import sys
import threading
import time
import traceback

import transaction
from BTrees.Length import Length
from persistent.mapping import PersistentMapping

from bench import environment
from bench.db_workload import Item
from bench.postgresql_report import (
    PHASES, _key, format_report, summarize)
from bench.storages import Log, common_report, print_report, run_in_workdir
from bench.workload import Failure, describe

STEAMIN_PASSES = 10
DEFAULT_SERVER = 'host=127.0.0.1 port=5432 user=postgres'
#: Databases this benchmark never creates, drops or writes to.
PROTECTED = frozenset(('postgres', 'root', 'test', 'template0', 'template1'))
#: Seconds a worker waits at a barrier before giving up on the others.
BARRIER_TIMEOUT = 600


# -- the server --------------------------------------------------------------

def _connect_admin(server, admin_db):
    """An autocommit connection to the maintenance database (psycopg 3,
    else psycopg2)."""
    dsn = '%s dbname=%s connect_timeout=5' % (server, admin_db)
    try:
        import psycopg
        return psycopg.connect(dsn, autocommit=True)
    except ImportError:
        import psycopg2
        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        return conn


def server_unreachable(server=DEFAULT_SERVER, admin_db='postgres'):
    """None when a PostgreSQL server answers at ``server``, else why not."""
    try:
        conn = _connect_admin(server, admin_db)
    except Exception as exc:
        return '%s: %s' % (type(exc).__name__, str(exc).strip().split('\n')[0])
    conn.close()
    return None


def server_settings(server, admin_db):
    conn = _connect_admin(server, admin_db)
    try:
        cur = conn.cursor()
        out = {}
        for name in ('server_version', 'fsync', 'synchronous_commit',
                     'shared_buffers', 'max_connections'):
            cur.execute('SHOW %s' % name)
            out[name] = cur.fetchone()[0]
        return out
    finally:
        conn.close()


_NAME = re.compile(r'^objstore_bench_[a-z0-9_]+$')


def _checked_name(name):
    if not _NAME.match(name) or name in PROTECTED:
        raise ValueError('refusing to create or drop database %r' % name)
    return name


def create_database(server, admin_db, name):
    conn = _connect_admin(server, admin_db)
    try:
        conn.cursor().execute('CREATE DATABASE %s' % _checked_name(name))
    finally:
        conn.close()


def drop_database(server, admin_db, name):
    # FORCE ends sessions a failed worker left behind, in this database only.
    conn = _connect_admin(server, admin_db)
    try:
        conn.cursor().execute('DROP DATABASE IF EXISTS %s WITH (FORCE)'
                              % _checked_name(name))
    finally:
        conn.close()


# -- sides -------------------------------------------------------------------

def objstore_unavailable():
    """None when objstore's PostgreSQLStorage can be imported, else why."""
    try:
        from objstore.storages import PostgreSQLStorage  # noqa: F401
    except Exception as exc:
        return '%s: %s' % (type(exc).__name__, exc)
    return None


def side_label(kind):
    if kind == 'objstore':
        return ('objstore DB on objstore PostgreSQLStorage (keep_history='
                'True, psycopg %s)' % environment._version('psycopg'))
    return ('ZODB DB on RelStorage %s (history-preserving, psycopg2 %s)'
            % (environment._version('RelStorage'),
               environment._version('psycopg2-binary')))


def open_db(kind, dsn, cache_size):
    """A new storage and DB of ``kind`` ('objstore' or 'relstorage')."""
    if kind == 'objstore':
        import objstore
        from objstore.storages import PostgreSQLStorage
        return objstore.DB(PostgreSQLStorage(dsn, keep_history=True),
                           cache_size=cache_size)
    import ZODB
    from relstorage.adapters.postgresql import PostgreSQLAdapter
    from relstorage.options import Options
    from relstorage.storage import RelStorage
    options = Options(keep_history=True, driver='psycopg2')
    storage = RelStorage(PostgreSQLAdapter(dsn=dsn, options=options),
                         options=options)
    return ZODB.DB(storage, cache_size=cache_size)


def clear_storage_cache(kind, db):
    """Empty every cache below the connections; whether there was one to
    empty (objstore's storage: its ``clear_cache()``, if it has one)."""
    if kind == 'relstorage':
        # RelStorage's own hook for speed tests; False: do not reload the
        # (here unused) persistent cache files.
        db.storage._cache.clear(load_persistent=False)
        return True
    clear = getattr(db.storage, 'clear_cache', None)
    if clear is None:
        return False
    clear()
    return True


# -- the worker processes ------------------------------------------------------

def read_all(container):
    """Read one attribute of every object (loads ghosts); their sum."""
    total = 0
    for item in container.values():
        total += item.count
    return total


class Worker:
    """One worker process's database, objects and phases (in the child).

    The parent calls the methods by name (:class:`Team`); a timed method
    waits at the side's barrier, so the side's processes start it together,
    and returns ``{'wall': s, 'cpu': s}`` for this process.
    """

    def __init__(self, kind, dsn, k, procs, cfg, barrier):
        self.kind, self.dsn, self.k, self.procs = kind, dsn, k, procs
        self.cfg, self.barrier = cfg, barrier
        self.n = cfg['n']
        # Every object fits in the cache: no phase measures eviction.
        self.cache_size = 2 * self.n + 1000
        self.tm = transaction.TransactionManager()
        self.db = self.conn = self.container = None
        self.profilers = {}
        self.retries = 0
        self.cleared = True

    def _timed(self, phase, func, per=1):
        gc.collect()
        self.barrier.wait()
        start, start_cpu = time.perf_counter(), time.process_time()
        if self.cfg['profile']:
            profiler = self.profilers.setdefault(phase, cProfile.Profile())
            result = profiler.runcall(func)
        else:
            result = func()
        out = {'wall': (time.perf_counter() - start) / per,
               'cpu': (time.process_time() - start_cpu) / per}
        return out, result

    def _open(self):
        if self.db is not None:
            self.db.close()
        self.conn = self.container = None
        self.db = open_db(self.kind, self.dsn, self.cache_size)

    def setup(self):
        """Worker 0 makes the schema, the root's containers and the shared
        counter; the others open their storages after it (no race to
        create the schema)."""
        if self.k != 0:
            return None
        self._open()
        conn = self.db.open(transaction_manager=self.tm)
        for j, r in itertools.product(range(self.procs),
                                      range(self.cfg['rounds'])):
            conn.root()['proc-%d-%d' % (j, r)] = PersistentMapping()
        conn.root()['counter'] = Length()
        self.tm.commit()
        self.db.close()
        self.db = None
        return None

    def open(self):
        self._open()
        self.conn = self.db.open(transaction_manager=self.tm)
        self.conn.root()['proc-%d-0' % self.k]
        self.tm.abort()

    def add(self, r):
        container = self.conn.root()['proc-%d-%d' % (self.k, r)]
        self.tm.abort()

        def add():
            self.tm.begin()
            for i in range(self.n):
                container[i] = Item(i)
            self.tm.commit()
        return self._timed('add', add)[0]

    def update(self, r):
        container = self.conn.root()['proc-%d-%d' % (self.k, r)]
        self.tm.abort()

        def update():
            self.tm.begin()
            for item in container.values():
                item.count += 1
                item.revision = 2
            self.tm.commit()
        return self._timed('update', update)[0]

    def reopen(self):
        """A new storage and DB, as a new process has: nothing of the
        objects in any cache of this process."""
        self._open()

    # Every read phase reads the first round's objects.

    def _read(self, passes=1):
        for _ in range(passes):
            self.tm.begin()
            total = read_all(self.container)
            self.tm.abort()
        _check(self.n * (self.n + 1) // 2, total)
        return total

    def warm(self):
        def warm():
            self.conn = self.db.open(transaction_manager=self.tm)
            self.container = self.conn.root()['proc-%d-0' % self.k]
            return self._read()
        return self._timed('warm', warm)[0]

    def cold(self):
        self.conn.cacheMinimize()
        self.cleared &= clear_storage_cache(self.kind, self.db)
        return self._timed('cold', self._read)[0]

    def hot(self):
        self.conn.cacheMinimize()
        return self._timed('hot', self._read)[0]

    def steamin(self):
        return self._timed('steamin', lambda: self._read(STEAMIN_PASSES),
                           STEAMIN_PASSES)[0]

    def conflicts(self):
        txns = self.cfg['conflict_txns']
        tm = self.tm
        counter = self.conn.root()['counter']
        mine = list(self.container.values())
        tm.abort()

        def conflicts():
            for t in range(txns):
                tries = 0
                for attempt in tm.attempts(100):
                    with attempt:
                        tries += 1
                        counter.change(1)
                        mine[t % self.n].count += 1
                self.retries += tries - 1
        return self._timed('conflicts', conflicts, txns)[0]

    def verify(self):
        """After every process's conflicts: the counter has every +1."""
        if self.k == 0:
            self.tm.begin()
            _check(self.procs * self.cfg['conflict_txns'],
                   self.conn.root()['counter']())
            self.tm.abort()
        return {'retries': self.retries, 'cleared': self.cleared}

    def close(self):
        if self.db is not None:
            self.db.close()
            self.db = None
        for phase, profiler in self.profilers.items():
            profiler.dump_stats(os.path.join(
                self.cfg['profile'], '%s-%dp-%s-w%d.pstats'
                % (self.cfg['side'], self.procs, phase, self.k)))


def _check(expected, got):
    if got != expected:
        raise Failure('read %d, expected %d (a lost or unseen write)'
                      % (got, expected))


def _serve(kind, dsn, k, procs, cfg, barrier, pipe):
    """A worker process: run the parent's commands until 'exit'."""
    worker = Worker(kind, dsn, k, procs, cfg, barrier)
    try:
        while True:
            command, args = pipe.recv()
            if command == 'exit':
                break
            try:
                pipe.send(('ok', getattr(worker, command)(*args)))
            except BaseException as exc:
                barrier.abort()
                broken = isinstance(exc, threading.BrokenBarrierError)
                pipe.send(('broken' if broken else 'error',
                           '%s\n%s' % (describe(exc), traceback.format_exc())))
    finally:
        worker.close()


class Team:
    """The worker processes of one side in one run (forked: they start in
    milliseconds with everything imported)."""

    def __init__(self, kind, dsn, procs, cfg):
        ctx = multiprocessing.get_context('fork')
        barrier = ctx.Barrier(procs, timeout=BARRIER_TIMEOUT)
        self.pipes, self.processes = [], []
        for k in range(procs):
            mine, theirs = ctx.Pipe()
            process = ctx.Process(target=_serve, daemon=True, args=(
                kind, dsn, k, procs, cfg, barrier, theirs))
            process.start()
            theirs.close()
            self.pipes.append(mine)
            self.processes.append(process)

    def call(self, command, *args):
        """Every worker's result of ``command``, or :class:`Failure` with
        the first real error (not a barrier another one broke)."""
        for pipe in self.pipes:
            pipe.send((command, args))
        results, failures = [], []
        for k, pipe in enumerate(self.pipes):
            try:
                if not pipe.poll(BARRIER_TIMEOUT * 2):
                    raise Failure('no answer in %d s' % (BARRIER_TIMEOUT * 2))
                status, payload = pipe.recv()
            except (EOFError, OSError, Failure) as exc:
                status, payload = 'error', describe(exc)
            if status == 'ok':
                results.append(payload)
            else:
                failures.append((status == 'broken', k, payload))
        if failures:
            _, k, payload = min(failures)
            raise Failure('%s, worker %d of %d: %s'
                          % (command, k, len(self.pipes), payload.strip()))
        return results

    def close(self):
        for pipe in self.pipes:
            try:
                pipe.send(('exit', ()))
            except OSError:
                pass
        for process in self.processes:
            process.join(30)
            if process.is_alive():
                process.kill()
                process.join()
        for pipe in self.pipes:
            pipe.close()


# -- the run -----------------------------------------------------------------

class Run:
    """What one run measured: ``times[side][row]`` has one entry per
    repetition (seconds: the median over the rounds of the mean over the
    processes), ``cpu`` the same for the processes' CPU time."""

    def __init__(self, opts, workdir, log):
        self.opts = opts
        self.log = log
        self.kinds = {}      # side -> worker kind
        self.skipped = {}    # side -> reason
        self.times = {'objstore': {}, 'RelStorage': {}}
        self.cpu = {'objstore': {}, 'RelStorage': {}}
        self.errors = []     # (side, row, message)
        self.notes = []
        self.retries = {}    # (side, procs) -> [(commits, retries)]
        self.uncleared = set()
        self.server = None
        self.databases = []  # every database made (and dropped) by the run
        self._names = itertools.count()

    def setup(self):
        opts = self.opts
        reason = server_unreachable(opts.server, opts.admin_db)
        if reason is not None:
            for side in self.times:
                self.skipped[side] = 'no PostgreSQL server: %s' % reason
            self.log('no PostgreSQL server at %r: %s' % (opts.server, reason))
            return
        self.server = server_settings(opts.server, opts.admin_db)
        self.kinds['RelStorage'] = 'relstorage'
        if opts.calibrate:
            self.kinds['objstore'] = 'relstorage'
            return
        reason = objstore_unavailable()
        if reason is not None:
            self.skipped['objstore'] = ('objstore PostgreSQLStorage not '
                                        'available: %s' % reason)
            self.log(self.skipped['objstore'])
        else:
            self.kinds['objstore'] = 'objstore'

    def runs(self):
        for rep in range(self.opts.repeat):
            for n in self.opts.sizes:
                for procs in self.opts.procs:
                    self.one_run(rep, n, procs)

    def one_run(self, rep, n, procs):
        """Both sides, each on a new database, taking turns phase by phase
        (the side that goes first alternates), so the two times of a ratio
        are measured seconds apart."""
        opts = self.opts
        sides = [s for s in ('objstore', 'RelStorage') if s in self.kinds]
        if not sides:
            return
        names = {side: 'objstore_bench_%d_%d' % (os.getpid(), next(self._names))
                 for side in sides}
        self.log('rep %d: %d process%s x %d objects, databases %s'
                 % (rep + 1, procs, '' if procs == 1 else 'es', n,
                    ', '.join(names.values())))
        samples = {side: {} for side in sides}
        teams, created = {}, []
        step = itertools.count(rep)

        def each(command, *args):
            first = next(step) % 2
            for side in sides[first:] + sides[:first]:
                team = teams.get(side)
                if team is None:
                    continue
                try:
                    results = team.call(command, *args)
                except Exception as exc:
                    message = (exc.args[0] if isinstance(exc, Failure)
                               else describe(exc))
                    self.error(side, '%d x %d' % (procs, n), message)
                    teams.pop(side).close()
                    continue
                if results and isinstance(results[0], dict) and \
                        'wall' in results[0]:
                    for clock in ('wall', 'cpu'):
                        samples[side].setdefault((command, clock), []).append(
                            statistics.mean(r[clock] for r in results))
                elif command == 'verify':
                    self.retries.setdefault((side, procs), []).append(
                        (procs * opts.conflict_txns,
                         sum(r['retries'] for r in results)))
                    if not all(r['cleared'] for r in results):
                        self.uncleared.add(side)

        try:
            for side in sides:
                create_database(opts.server, opts.admin_db, names[side])
                created.append(names[side])
                self.databases.append(names[side])
                cfg = {'n': n, 'conflict_txns': opts.conflict_txns,
                       'rounds': opts.rounds, 'profile': opts.profile,
                       'side': side}
                teams[side] = Team(self.kinds[side], '%s dbname=%s' % (
                    opts.server, names[side]), procs, cfg)
            each('setup')
            each('open')
            for r in range(opts.rounds):
                each('add', r)
                each('update', r)
            for r in range(opts.rounds):
                each('reopen')
                for phase in ('warm', 'cold', 'hot', 'steamin'):
                    each(phase)
            each('conflicts')
            each('verify')
        except Exception as exc:
            # The server or the process machinery failed, not one side.
            for side in list(teams):
                self.error(side, '%d x %d' % (procs, n), describe(exc))
                teams.pop(side).close()
        finally:
            for team in teams.values():
                team.close()
            for name in created:
                drop_database(opts.server, opts.admin_db, name)
        for side in sides:
            if side not in teams:
                continue
            for phase in PHASES:
                row = _key(phase, n, procs)
                self.times[side].setdefault(row, []).append(
                    statistics.median(samples[side][phase, 'wall']))
                self.cpu[side].setdefault(row, []).append(
                    statistics.median(samples[side][phase, 'cpu']))

    def finish_notes(self):
        for (side, procs), runs in sorted(self.retries.items()):
            commits = sum(c for c, _ in runs)
            retries = sum(r for _, r in runs)
            self.notes.append('conflicts %s, %d process%s: %d commits, %d '
                              'retried (unresolved) conflicts'
                              % (side, procs, '' if procs == 1 else 'es',
                                 commits, retries))
        for side in sorted(self.uncleared):
            self.notes.append('%s: the storage has no clear_cache(), so the '
                              'cold phase emptied the pickle cache only (the '
                              'same as hot unless the storage caches objects '
                              'itself)' % side)

    def error(self, side, row, message):
        self.log('ERROR %s %s: %s' % (side, row, message))
        self.errors.append((side, row, message))


# -- main --------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(
        prog='python -m bench postgresql', description=__doc__.split('\n')[0])
    p.add_argument('--quick', action='store_true',
                   help='100 objects per process, 20 conflict transactions')
    p.add_argument('--sizes', default=None,
                   help='objects per process, comma-separated (default 1000,'
                        ' zodbshootout\'s; --quick: 100)')
    p.add_argument('--procs', default='1,4',
                   help='concurrent processes, comma-separated (1,4)')
    p.add_argument('--phases', default=','.join(PHASES),
                   help='rows shown, a subset of: %s (every phase runs: each '
                        'needs the ones before it)' % ','.join(PHASES))
    p.add_argument('--conflict-txns', type=int, default=None, metavar='T',
                   help='transactions per process in the conflicts phase '
                        '(default 200; --quick: 20)')
    p.add_argument('--repeat', type=int, default=3, metavar='K',
                   help='repetitions per side, the first side alternating (3)')
    p.add_argument('--rounds', type=int, default=None, metavar='R',
                   help='rounds of every phase but conflicts within one '
                        'repetition, the median kept (default 3; --quick: 1)')
    p.add_argument('--server', default=DEFAULT_SERVER, metavar='DSN',
                   help='libpq keywords of the server, without dbname (%r)'
                        % DEFAULT_SERVER)
    p.add_argument('--admin-db', default='postgres',
                   help='database to connect to for CREATE/DROP DATABASE')
    p.add_argument('--json', metavar='FILE', help='write all results here')
    p.add_argument('--profile', metavar='DIR',
                   help='run every timed phase under cProfile, writing '
                        'DIR/<side>-<P>p-<phase>-w<worker>.pstats (the times '
                        'then include the profiler\'s overhead)')
    p.add_argument('--calibrate', action='store_true',
                   help='RelStorage on both sides (shows the noise of a '
                        'ratio); tests the harness without objstore\'s storage')
    p.add_argument('--dir', default=None, help=argparse.SUPPRESS)
    p.add_argument('--keep', action='store_true', help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    try:
        if opts.sizes is None:
            opts.sizes = '100' if opts.quick else '1000'
        opts.sizes = [int(s) for s in opts.sizes.split(',') if s]
        opts.procs = [int(s) for s in opts.procs.split(',') if s]
    except ValueError:
        p.error('--sizes and --procs: comma-separated integers')
    phases = [ph for ph in opts.phases.split(',') if ph]
    unknown = [ph for ph in phases if ph not in PHASES]
    if unknown:
        p.error('--phases: unknown %s' % ','.join(unknown))
    opts.phases = tuple(ph for ph in PHASES if ph in phases)
    if opts.conflict_txns is None:
        opts.conflict_txns = 20 if opts.quick else 200
    if opts.rounds is None:
        opts.rounds = 1 if opts.quick else 3
    if not opts.sizes or min(opts.sizes) < 1:
        p.error('--sizes: at least one object')
    if not opts.procs or min(opts.procs) < 1:
        p.error('--procs: at least one process')
    if min(opts.repeat, opts.conflict_txns, opts.rounds) < 1:
        p.error('--repeat, --rounds and --conflict-txns must be at least 1')
    if opts.profile:
        opts.profile = os.path.abspath(opts.profile)
        os.makedirs(opts.profile, exist_ok=True)
    return opts


def run(opts, log=None):
    """Run the benchmark; the report as a JSON-serializable dict."""
    bench, env = run_in_workdir(opts, log or Log(), 'objstore-bench-pg-', Run,
                                ('setup', 'runs', 'finish_notes'))
    result = common_report(opts, bench, env, summarize(bench))
    result['cpu'] = bench.cpu
    result['server'] = bench.server
    result['databases'] = bench.databases
    result['sides'] = {
        'objstore': side_label(bench.kinds.get('objstore', 'objstore')),
        'RelStorage': side_label('relstorage')}
    return result


def main(argv=None):
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    return print_report(opts, run(opts), format_report)


if __name__ == '__main__':
    sys.exit(main())
