"""objstore's DB and Connection against ZODB's, through the same object workload.

``python -m bench db [--quick] [--repeat K] [--json FILE] ...``

Pairs: objstore DB on objstore FileStorage vs ZODB DB on ZODB FileStorage,
objstore DB on objstore MemoryStorage vs ZODB DB on ZODB MappingStorage
(and, on request, ``core``: both DBs on ZODB's MappingStorage, which leaves
the storage out of the comparison). Each repetition runs both sides of a
pair one after the other, the side that goes first alternating; the table
shows medians over the repetitions, and each ratio is the median of the
per-repetition ratios ZODB time / objstore time (>= 1.0: objstore at least
as fast). The phases are described in ``docs/benchmarks.rst`` and in
:mod:`bench.db_workload`.
"""
import argparse
import os
import shutil
import sys

from bench import db_report, db_workload, workload
from bench.storages import Log, common_report, print_report, run_in_workdir

PHASES = db_workload.OBJECT_PHASES

#: pair -> ((DB family, storage system) of the objstore side, of the ZODB side)
PAIRS = {
    'memory': (('objstore', 'objstore-memory'), ('ZODB', 'zodb-mapping')),
    'file': (('objstore', 'objstore-file'), ('ZODB', 'zodb-file')),
    'core': (('objstore', 'zodb-mapping'), ('ZODB', 'zodb-mapping')),
}
DEFAULT_PAIRS = ('memory', 'file')


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog='python -m bench db', description=__doc__.split('\n')[0])
    p.add_argument('--quick', action='store_true',
                   help='N = 1k only, contention for 0.5 s')
    p.add_argument('--repeat', type=int, default=3, metavar='K',
                   help='repetitions per side, interleaved (default 3)')
    p.add_argument('--phases', default=','.join(PHASES + ('contention',)),
                   help='comma-separated subset of: %s,contention'
                        % ','.join(PHASES))
    p.add_argument('--pairs', default=','.join(DEFAULT_PAIRS),
                   help='comma-separated subset of: %s (core: both DBs on '
                        'ZODB MappingStorage, no target)' % ','.join(PAIRS))
    p.add_argument('--sizes', default=None,
                   help='object counts (default 1000,10000; --quick: 1000)')
    p.add_argument('--duration', type=float, default=None, metavar='S',
                   help='seconds of each contention run (default 2; '
                        '--quick: 0.5)')
    p.add_argument('--threads', type=int, default=2,
                   help='threads in the contention phase (2)')
    p.add_argument('--clock', choices=tuple(db_workload.CLOCKS),
                   default='wall',
                   help='wall (default): elapsed time; cpu: the process\'s '
                        'CPU time (steadier on a loaded machine, but blind '
                        'to fsync waits; contention stays wall time)')
    p.add_argument('--json', metavar='FILE', help='write all results here')
    p.add_argument('--dir', default=None,
                   help='parent of the temporary directory (default: the '
                        'system temp dir)')
    p.add_argument('--keep', action='store_true',
                   help='keep the temporary files')
    p.add_argument('--profile', metavar='DIR',
                   help='run both sides under cProfile and write '
                        'DIR/<pair>-<side>-<phase>[-N].pstats (the times '
                        'then include the profiler\'s overhead)')
    p.add_argument('--calibrate', action='store_true',
                   help='run ZODB on both sides (shows the noise of a ratio)')
    opts = p.parse_args(argv)
    phases = _choices(opts.phases, PHASES + ('contention',), '--phases')
    opts.contention = 'contention' in phases
    opts.phases = tuple(ph for ph in phases if ph != 'contention')
    opts.pairs = _choices(opts.pairs, tuple(PAIRS), '--pairs')
    if opts.sizes is None:
        opts.sizes = '1000' if opts.quick else '1000,10000'
    opts.sizes = [int(s) for s in opts.sizes.split(',') if s]
    if opts.duration is None:
        opts.duration = 0.5 if opts.quick else 2.0
    if opts.repeat < 1:
        p.error('--repeat must be at least 1')
    if any(n < 2 for n in opts.sizes):
        p.error('--sizes: at least 2 objects')
    return opts


def _choices(text, allowed, option):
    chosen = [c for c in text.split(',') if c]
    unknown = [c for c in chosen if c not in allowed]
    if unknown:
        raise SystemExit('%s: unknown %s (choose from %s)'
                         % (option, ','.join(unknown), ','.join(allowed)))
    return tuple(c for c in allowed if c in chosen)


class Run:
    """What one benchmark run measured: ``times[pair][side][row]`` is a
    list with one entry per repetition (seconds; seconds per committed
    transaction for contention)."""

    def __init__(self, opts, workdir, log):
        self.opts = opts
        self.workdir = workdir
        self.log = log
        self.pairs = {}      # pair -> {'objstore': Side, 'ZODB': Side}
        self.skipped = {}    # pair -> reason
        self.times = {}
        self.errors = []     # (pair, side, row, message)
        self.notes = []
        self.record_sizes = {}
        self.conflicts = {}  # (pair, side) -> [(commits, retries)]

    def setup_pairs(self):
        for pair in self.opts.pairs:
            specs = PAIRS[pair]
            if self.opts.calibrate:
                specs = (specs[1], specs[1])
            ours = db_workload.Side(*specs[0])
            reason = ours.check()
            if reason is not None:
                self.skipped[pair] = '%s unavailable: %s' % (ours.label, reason)
                self.log('skipping pair %s: %s' % (pair, self.skipped[pair]))
                continue
            self.pairs[pair] = {'objstore': ours,
                                'ZODB': db_workload.Side(*specs[1])}
            self.times[pair] = {'objstore': {}, 'ZODB': {}}

    def record(self, pair, side, row, value):
        self.times[pair][side].setdefault(row, []).append(value)

    def fresh_dir(self, *parts):
        path = os.path.join(self.workdir, *[str(p) for p in parts])
        if os.path.exists(path):
            shutil.rmtree(path)
        os.makedirs(path)
        return path

    def interleaved(self, rep, sides):
        """Both sides, the first alternating with the repetition."""
        order = list(sides.items())
        return order if rep % 2 == 0 else order[::-1]

    def object_rows(self):
        if not self.opts.phases:
            return
        for n in self.opts.sizes:
            for rep in range(self.opts.repeat):
                for pair, sides in self.pairs.items():
                    for name, side in self.interleaved(rep, sides):
                        self.log('N=%d rep %d: %s' % (n, rep + 1, side.label))
                        directory = self.fresh_dir('objects', pair, name)
                        try:
                            results, info = db_workload.object_phases(
                                side, directory, n,
                                self.profile_path(pair, name, n),
                                self.opts.clock)
                        except Exception as exc:
                            self.error(pair, name, 'objects %d' % n,
                                       workload.describe(exc))
                            continue
                        finally:
                            shutil.rmtree(directory, ignore_errors=True)
                        for phase, seconds in results.items():
                            if phase in self.opts.phases:
                                self.record(pair, name, '%s %d' % (phase, n),
                                            seconds)
                        self.record_sizes.setdefault(
                            side.label, info['record_bytes'])

    def contention_rows(self):
        if not self.opts.contention:
            return
        for rep in range(self.opts.repeat):
            for pair, sides in self.pairs.items():
                for name, side in self.interleaved(rep, sides):
                    self.log('rep %d: contention, %d threads, %s'
                             % (rep + 1, self.opts.threads, side.label))
                    directory = self.fresh_dir('contention', pair, name)
                    profile = self.profile_path(pair, name)
                    try:
                        seconds, info = db_workload.contention(
                            side, directory, self.opts.duration,
                            self.opts.threads,
                            profile and profile('contention'))
                    except Exception as exc:
                        self.error(pair, name, 'contention',
                                   workload.describe(exc))
                        continue
                    finally:
                        shutil.rmtree(directory, ignore_errors=True)
                    self.record(pair, name, 'contention', seconds)
                    self.conflicts.setdefault((pair, name), []).append(
                        (info['commits'], info['retries']))

    def finish_notes(self):
        for label, size in self.record_sizes.items():
            self.notes.append('%s: item record %d bytes' % (label, size))
        for (pair, name), runs in self.conflicts.items():
            commits = sum(c for c, _ in runs)
            retries = sum(r for _, r in runs)
            self.notes.append(
                'contention %s/%s: %d commits, %d retried conflicts (%.1f%% '
                'of attempts)' % (pair, name, commits, retries,
                                  100.0 * retries / max(1, commits + retries)))

    def profile_path(self, pair, side, n=None):
        """``phase -> stats file`` under --profile (both sides: reading the
        two profiles of a phase side by side shows where the time differs)."""
        if not self.opts.profile:
            return None
        os.makedirs(self.opts.profile, exist_ok=True)
        suffix = '' if n is None else '-%d' % n
        return lambda phase: os.path.join(
            self.opts.profile, '%s-%s-%s%s.pstats' % (pair, side, phase,
                                                      suffix))

    def error(self, pair, side, row, message):
        self.log('ERROR %s %s %s: %s' % (pair, side, row, message))
        self.errors.append((pair, side, row, message))


def run(opts, log=None):
    """Run the benchmark; the report as a JSON-serializable dict."""
    bench, env = run_in_workdir(
        opts, log or Log(), 'objstore-bench-db-', Run,
        ('setup_pairs', 'object_rows', 'contention_rows', 'finish_notes'))
    result = common_report(opts, bench, env, db_report.summarize(bench))
    result['sides'] = {pair: (s['objstore'].label, s['ZODB'].label)
                       for pair, s in bench.pairs.items()}
    return result


def main(argv=None):
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    return print_report(opts, run(opts), db_report.format_report)


if __name__ == '__main__':
    sys.exit(main())
