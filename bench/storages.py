"""objstore's storages against ZODB's, through the same storage-level workload.

``python -m bench storages [--quick] [--repeat K] [--rows ROWS] [--json FILE]``

Pairs: objstore MemoryStorage vs ZODB MappingStorage, objstore FileStorage
vs ZODB FileStorage. Each repetition runs the objstore side, then the ZODB
side (A B A B …); the table shows medians over the repetitions, and each
ratio is the median of the per-repetition ratios ZODB time / objstore time
(≥ 1.0: objstore at least as fast). What each row does is in
``docs/benchmarks.rst`` and in :mod:`bench.workload`.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from bench import environment, report, systems, workload

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DATA_ROWS = report.DATA_ROWS
ALL_ROWS = DATA_ROWS + ('open', 'commit')


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog='python -m bench storages', description=__doc__.split('\n')[0])
    p.add_argument('--quick', action='store_true',
                   help='N = 1k and 10k, 100k-record open test')
    p.add_argument('--repeat', type=int, default=3, metavar='K',
                   help='repetitions per system, interleaved (default 3)')
    p.add_argument('--rows', default=','.join(ALL_ROWS),
                   help='comma-separated subset of: %s' % ','.join(ALL_ROWS))
    p.add_argument('--pairs', default='memory,file',
                   help='comma-separated subset of: memory,file')
    p.add_argument('--sizes', default=None,
                   help='record counts of the data rows (default 1000,100000;'
                        ' --quick: 1000,10000)')
    p.add_argument('--open-records', type=int, default=None, metavar='N',
                   help='records in the open test file (default 1000000;'
                        ' --quick: 100000)')
    p.add_argument('--batch', type=int, default=1000,
                   help='records per transaction in the data rows (1000)')
    p.add_argument('--commits', type=int, default=200,
                   help='small commits (and fsyncs) per repetition (200)')
    p.add_argument('--crash-point', type=float, default=0.5, metavar='F',
                   help='the simulated crash falls at least this far into '
                        'a checkpoint interval (0.5, the expected case of a '
                        'crash at a random moment; near 1: the worst case)')
    p.add_argument('--json', metavar='FILE', help='write all results here')
    p.add_argument('--dir', default=None,
                   help='parent of the temporary directory (default: the '
                        'system temp dir, e.g. /tmp)')
    p.add_argument('--keep', action='store_true',
                   help='keep the temporary files')
    p.add_argument('--profile', metavar='DIR',
                   help='run the objstore side under cProfile and write '
                        'DIR/<pair>-<row>.pstats (its times then include '
                        'the profiler\'s overhead)')
    p.add_argument('--calibrate', action='store_true',
                   help='run ZODB on both sides (shows the noise of a ratio)')
    opts = p.parse_args(argv)
    opts.rows = _choices(opts.rows, ALL_ROWS, '--rows')
    opts.pairs = _choices(opts.pairs, tuple(systems.PAIRS), '--pairs')
    if opts.sizes is None:
        opts.sizes = '1000,10000' if opts.quick else '1000,100000'
    opts.sizes = [int(s) for s in opts.sizes.split(',') if s]
    if opts.open_records is None:
        opts.open_records = 100000 if opts.quick else 1000000
    if opts.repeat < 1:
        p.error('--repeat must be at least 1')
    return opts


def _choices(text, allowed, option):
    chosen = [c for c in text.split(',') if c]
    unknown = [c for c in chosen if c not in allowed]
    if unknown:
        raise SystemExit('%s: unknown %s (choose from %s)'
                         % (option, ','.join(unknown), ','.join(allowed)))
    return tuple(c for c in allowed if c in chosen)


class Log:
    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self, message):
        print('[%7.1fs] %s' % (time.perf_counter() - self.start, message),
              file=sys.stderr, flush=True)


class Run:
    """What one benchmark run measured: ``times[pair][side][row]`` is a
    list with one entry per repetition (seconds, or a list of seconds for
    latency rows)."""

    def __init__(self, opts, workdir, log):
        self.opts = opts
        self.workdir = workdir
        self.log = log
        self.pairs = {}      # pair -> {'objstore': System, 'ZODB': System}
        self.skipped = {}    # pair -> reason
        self.times = {}
        self.errors = []     # (pair, side, row, message)
        self.notes = []
        self.scanned = {}

    def setup_pairs(self):
        for pair in self.opts.pairs:
            names = systems.PAIRS[pair]
            if self.opts.calibrate:
                names = (systems.CALIBRATION[names[0]], names[1])
            reason = systems.check_available(names[0])
            if reason is not None:
                self.skipped[pair] = '%s unavailable: %s' % (names[0], reason)
                self.log('skipping pair %s: %s' % (pair, self.skipped[pair]))
                continue
            self.pairs[pair] = {'objstore': systems.get(names[0]),
                                'ZODB': systems.get(names[1])}
            self.times[pair] = {'objstore': {}, 'ZODB': {}, 'fsync': {}}

    def record(self, pair, side, row, value):
        self.times[pair][side].setdefault(row, []).append(value)

    def fresh_dir(self, *parts):
        path = os.path.join(self.workdir, *[str(p) for p in parts])
        if os.path.exists(path):
            shutil.rmtree(path)
        os.makedirs(path)
        return path

    # -- rows ---------------------------------------------------------------

    def data_rows(self):
        rows = [r for r in DATA_ROWS if r in self.opts.rows]
        if not rows:
            return
        for n in self.opts.sizes:
            self.log('building %d records (2 revisions each)' % n)
            data = workload.Dataset(n, self.opts.batch)
            self.notes.append('data set %d: mean record %.0f bytes'
                              % (n, data.record_size))
            for rep in range(self.opts.repeat):
                for pair, sides in self.pairs.items():
                    for side, system in sides.items():
                        self.log('N=%d rep %d: %s side: %s'
                                 % (n, rep + 1, side, system.label))
                        directory = self.fresh_dir('data', pair, side)
                        failed = []
                        results = workload.data_rows(
                            system, directory, data, rows, failed,
                            self.profile_path(pair, side, n))
                        for row, seconds in results.items():
                            self.record(pair, side, '%s %d' % (row, n), seconds)
                        for row, message in failed:
                            self.error(pair, side, '%s %d' % (row, n), message)
                        shutil.rmtree(directory)

    def commit_rows(self):
        """Small commits of both sides and raw fsyncs, call by call in turn."""
        if 'commit' not in self.opts.rows:
            return
        count = self.opts.commits
        for rep in range(self.opts.repeat):
            for pair, sides in self.pairs.items():
                self.log('rep %d: %d small commits on each side of %s%s'
                         % (rep + 1, count, pair,
                            ', and raw fsyncs' if pair == 'file' else ''))
                parties, names = [], []
                try:
                    for side, system in sides.items():
                        profile = self.profile_path(pair, side)
                        parties.append(workload.Committer(
                            system, self.fresh_dir('commit', pair, side),
                            profile and profile('commit')))
                        names.append(side)
                    if pair == 'file':
                        parties.append(workload.FsyncProbe(
                            self.fresh_dir('commit', pair, 'fsync')))
                        names.append('fsync')
                    latencies = workload.interleaved_latencies(parties, count)
                except Exception as exc:
                    side = names[len(parties) - 1] if parties else 'objstore'
                    self.error(pair, side, 'commit', workload.describe(exc))
                    continue
                finally:
                    for party in parties:
                        party.close()
                for name, times in zip(names, latencies):
                    self.record(pair, name, 'fsync' if name == 'fsync'
                                else 'commit', times)

    def open_rows(self):
        if 'open' not in self.opts.rows or 'file' not in self.pairs:
            return
        n = self.opts.open_records
        prepared = {}
        for side, system in self.pairs['file'].items():
            try:
                prepared[side] = self.prepare_open(side, system, n)
            except Exception as exc:
                self.error('file', side, 'open %d' % n, workload.describe(exc))
        for rep in range(self.opts.repeat):
            for side, states in prepared.items():
                system = self.pairs['file'][side]
                for state, pristine in states.items():
                    self.log('rep %d: open %s (%s)' % (rep + 1, system.label,
                                                       state))
                    try:
                        profile = self.profile_path('file', side, n)
                        seconds = self.time_open(
                            system, pristine, n,
                            profile and profile('open-' + state))
                    except Exception as exc:
                        self.error('file', side, 'open-%s %d' % (state, n),
                                   workload.describe(exc))
                        continue
                    self.record('file', side, 'open-%s %d' % (state, n),
                                seconds)

    def prepare_open(self, side, system, n):
        """Pristine file sets: 'crash' (writer killed), 'clean' (then
        opened and closed), 'scan' (clean minus index checkpoints)."""
        base = self.fresh_dir('open', side)
        build = os.path.join(base, 'clean')
        os.makedirs(build)
        name = [k for k, v in systems.SYSTEMS.items()
                if v is type(system)][0]
        self.log('writing %d records with %s in a child process, then '
                 'killing it' % (n, system.label))
        started = time.perf_counter()
        info = kill_after_write(name, build, n, self.opts.batch,
                                self.opts.crash_point)
        note = ('%s: wrote the %d-object open-test file in %.1f s, %d '
                'checkpoints while writing' % (system.label, n,
                                                time.perf_counter() - started,
                                                info['checkpoints']))
        if info.get('tail_bytes') is not None:
            note += ('; then %d updates so the crash falls %.2f into a '
                     'checkpoint interval (%.1f MB after the last checkpoint,'
                     ' interval %.1f MB)' % (
                         info['updates'],
                         info['tail_bytes'] / info['interval_bytes'],
                         info['tail_bytes'] / 1e6,
                         info['interval_bytes'] / 1e6))
        self.notes.append(note)
        crash = os.path.join(base, 'crash')
        shutil.copytree(build, crash)
        system.open(build).close()
        scan = os.path.join(base, 'scan')
        shutil.copytree(build, scan)
        stripped = system.strip_checkpoints(scan)
        self.notes.append('%s: %d-object file set %s; full scan = without %s'
                          % (system.label, n, _sizes(build),
                             ', '.join(stripped) or 'NOTHING (no checkpoint'
                             ' file found: the scan row is not a scan)'))
        return {'clean': build, 'crash': crash, 'scan': scan}

    def time_open(self, system, pristine, n, profile=None):
        work = os.path.join(os.path.dirname(pristine), 'work')
        if os.path.exists(work):
            shutil.rmtree(work)
        shutil.copytree(pristine, work)
        try:
            seconds, storage = workload.timed(lambda: system.open(work),
                                             profile)
            try:
                scanned = getattr(storage, 'records_scanned', None)
                state = os.path.basename(pristine)
                if scanned is not None and state not in self.scanned:
                    self.scanned[state] = scanned
                    self.notes.append('%s open (%s) scanned %d records'
                                      % (system.label, state, scanned))
                if len(storage) != n:
                    raise workload.Failure('opened with %d objects, wrote %d'
                                           % (len(storage), n))
            finally:
                storage.close()
        finally:
            shutil.rmtree(work)
        return seconds

    def profile_path(self, pair, side, n=None):
        """``row -> stats file`` for the objstore side under --profile."""
        if not self.opts.profile or side != 'objstore':
            return None
        os.makedirs(self.opts.profile, exist_ok=True)
        suffix = '' if n is None else '-%d' % n
        return lambda row: os.path.join(
            self.opts.profile, '%s-%s%s.pstats' % (pair, row, suffix))

    def error(self, pair, side, row, message):
        self.log('ERROR %s %s %s: %s' % (pair, side, row, message))
        self.errors.append((pair, side, row, message))


def kill_after_write(name, directory, n, batch, crash_point):
    """Have a child process write the file, then SIGKILL it; the child's
    summary (see :func:`bench.workload.write_open_file`)."""
    env = dict(os.environ)
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    errpath = os.path.join(os.path.dirname(directory), 'child.stderr')
    with open(errpath, 'wb') as err:
        proc = subprocess.Popen(
            [sys.executable, '-m', 'bench._child', name, directory, str(n),
             str(batch), str(crash_point)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
            stderr=err)
        line = proc.stdout.readline()
        proc.kill()
        proc.wait()
        proc.stdout.close()
    if not line.startswith(b'ready'):
        with open(errpath, 'rb') as f:
            tail = f.read().decode('utf-8', 'replace').strip().splitlines()
        raise workload.Failure('the writer process failed: %s'
                               % (tail[-1] if tail else 'no output'))
    return json.loads(line.split(None, 1)[1])


def _sizes(directory):
    parts = []
    for name in sorted(os.listdir(directory)):
        size = os.path.getsize(os.path.join(directory, name))
        parts.append('%s %.1f MB' % (name, size / 1e6))
    return ', '.join(parts)


# -- main --------------------------------------------------------------------

def run_in_workdir(opts, log, prefix, make_run, steps):
    """Run ``steps`` (method names) of ``make_run(opts, workdir, log)`` in a
    new temporary directory under ``opts.dir``, removed unless
    ``opts.keep``; returns ``(run, environment)`` with the wall time and
    the load average at the end filled in."""
    parent = opts.dir
    if parent is not None:
        os.makedirs(parent, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix=prefix, dir=parent)
    env = environment.describe(workdir)
    started = time.perf_counter()
    bench = make_run(opts, workdir, log)
    try:
        for step in steps:
            getattr(bench, step)()
    finally:
        if not opts.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    env['wall_time_s'] = round(time.perf_counter() - started, 1)
    env['load_average_end'] = environment.load_average()
    return bench, env


def common_report(opts, bench, env, rows):
    """The parts of a report every benchmark has, as a JSON-ready dict."""
    return {'environment': env, 'config': dict(vars(opts)), 'rows': rows,
            'errors': bench.errors, 'skipped': bench.skipped,
            'notes': bench.notes, 'times': bench.times}


def print_report(opts, result, format_report):
    """Print the table; write the whole report to ``opts.json`` if given."""
    print(format_report(result))
    if opts.json:
        with open(opts.json, 'w') as f:
            json.dump(result, f, indent=1, default=str)
    return 0


def run(opts, log=None):
    """Run the benchmark; the report as a JSON-serializable dict."""
    bench, env = run_in_workdir(
        opts, log or Log(), 'objstore-bench-', Run,
        ('setup_pairs', 'data_rows', 'commit_rows', 'open_rows'))
    return common_report(opts, bench, env, report.summarize(bench))


def main(argv=None):
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    return print_report(opts, run(opts), report.format_report)


if __name__ == '__main__':
    sys.exit(main())
