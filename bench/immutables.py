"""objstore's immutables against shoobx.immutable, side by side in one run.

``python -m bench immutables [--quick] [--repeat K] [--entries N]
[--revisions R] [--json FILE]``

Dict rows, each repetition on both sides (the side that goes first
alternates): create an ImmutableDict of N small nested dicts in memory;
store it; update one key and store the result, counting the bytes. objstore
stores by committing into a new FileStorage (fsync on, DB defaults) and
counts the growth of its data file (records and transaction headers, not
the ``.index`` checkpoints). shoobx.immutable has no storage: its
immutables are not persistent, so a database keeps one inside the record of
the persistent object holding it, as a pickle of the whole graph. Its
column is therefore ``pickle.dumps`` (protocol 3, as objstore's records) and
the pickle's length: a lower bound of such a commit (no I/O, no fsync).

History rows: one object with R revisions, creators taking turns among ten
users, in ``objstore.container.RevisionedContainer`` (committed every 1,000
revisions) and in shoobx's ``SimpleRevisionedImmutableManager`` (memory).
Timed: ``getRevisionHistory(obj, creator=..., batchStart=...,
batchSize=20)`` at the start, middle and end of that creator's revisions,
warm on both sides, and cold (a newly opened DB) on objstore's.

Ratios are shoobx / objstore per repetition, then the median. Targets
(issue 4): creation no slower than shoobx; one-key update + commit <= 5 ms
and <= 16 KiB; history query <= 2 ms.
"""
import argparse
import gc
import os
import pickle
import shutil
import statistics
import sys
import time

import transaction

import objstore as im
from objstore.serialize import PROTOCOL
from objstore.storages.file import FileStorage

from bench import environment
from bench.report import _count, format_seconds, render_table
from bench.storages import Log, common_report, print_report, run_in_workdir
from bench.workload import Failure, describe, timed

try:
    import shoobx.immutable as shoobx_immutable
except ImportError:     # the shoobx side is then skipped, and says why
    shoobx_immutable = None

CREATORS = tuple('user%d' % i for i in range(10))
#: The creator every history query filters on.
QUERY_CREATOR = CREATORS[3]
BATCH_SIZE = 20
#: objstore commits the history it builds every this many revisions.
BUILD_COMMIT_EVERY = 1000
UPDATED_KEY = 'k5'

KIB = 1024


class Page(im.RevisionedImmutable):
    """The revisioned object of the history rows (objstore side)."""

    def __init__(self, title, count):
        self.title = title
        self.count = count


def _shoobx_page_class(sim):
    class ShoobxPage(sim.RevisionedImmutable):
        def __init__(self, title, count):
            self.title = title
            self.count = count
    return ShoobxPage


def _container_class():
    """``(RevisionedContainer, None)``, or ``(None, why it is missing)``."""
    try:
        from objstore.container import RevisionedContainer
    except ImportError as exc:
        return None, '%s: %s' % (type(exc).__name__, exc)
    return RevisionedContainer, None


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog='python -m bench immutables', description=__doc__.split('\n')[0])
    p.add_argument('--quick', action='store_true',
                   help='10k entries and 10k revisions')
    p.add_argument('--repeat', type=int, default=3, metavar='K',
                   help='repetitions per side, interleaved (default 3)')
    p.add_argument('--entries', type=int, default=None, metavar='N',
                   help='entries of the ImmutableDict (default 100000; '
                        '--quick: 10000)')
    p.add_argument('--revisions', type=int, default=None, metavar='R',
                   help='revisions of the history (default 100000; '
                        '--quick: 10000; 0 leaves the history rows out)')
    p.add_argument('--json', metavar='FILE', help='write all results here')
    p.add_argument('--dir', default=None,
                   help='parent of the temporary directory (default: the '
                        'system temp dir)')
    p.add_argument('--keep', action='store_true',
                   help='keep the temporary files')
    opts = p.parse_args(argv)
    if opts.entries is None:
        opts.entries = 10000 if opts.quick else 100000
    if opts.revisions is None:
        opts.revisions = 10000 if opts.quick else 100000
    if opts.repeat < 1:
        p.error('--repeat must be at least 1')
    if opts.entries <= int(UPDATED_KEY[1:]):
        p.error('--entries: more than %s' % UPDATED_KEY[1:])
    if opts.revisions and opts.revisions < len(CREATORS) * BATCH_SIZE:
        p.error('--revisions: 0 or at least %d' % (len(CREATORS) * BATCH_SIZE))
    return opts


def _make_dict(lib, data):
    """``lib`` is objstore or shoobx.immutable: same API, same call."""
    with lib.create(lib.ImmutableDict) as factory:
        return factory(data)


def _update_dict(lib, d):
    with lib.update(d) as d2:
        d2[UPDATED_KEY] = {'a': -1, 'b': 'changed'}
    return d2


def _two_parts(first, second):
    """``(seconds of first(), of second(its result), both results)``, timed
    back to back after an untimed ``os.sync()`` and ``gc.collect()``."""
    os.sync()
    gc.collect()
    start = time.perf_counter()
    one = first()
    middle = time.perf_counter()
    two = second(one)
    return middle - start, time.perf_counter() - middle, one, two


def _build_history(lib, page_class, r, start, every):
    """The newest of ``r`` revisions of one page (creators take turns);
    ``start(page)`` begins the history, ``every()`` runs after each
    ``BUILD_COMMIT_EVERY`` revisions and at the end."""
    with lib.create(page_class, creator=CREATORS[0],
                    comment='created') as factory:
        page = factory('page', 0)
    start(page)
    for i in range(1, r):
        with lib.update(page, CREATORS[i % len(CREATORS)],
                        'revision %d' % i) as new:
            new.count = i
        page = new
        if i % BUILD_COMMIT_EVERY == 0:
            every()
    every()
    return page


class Run:
    """What one run measured: ``times[group][side][row]`` holds one value
    per repetition (seconds, or bytes for the ``*-bytes`` rows)."""

    def __init__(self, opts, workdir, log):
        self.opts = opts
        self.workdir = workdir
        self.log = log
        self.times = {'dict': {'objstore': {}, 'shoobx': {}},
                      'history': {'objstore': {}, 'shoobx': {}}}
        self.skipped = {}    # side -> reason
        self.errors = []     # (group, side, row, message)
        self.notes = []
        self.sim = None
        self.container_class = None
        self.batch_starts = []

    def record(self, group, side, row, value):
        self.times[group][side].setdefault(row, []).append(value)

    def error(self, group, side, row, message):
        self.log('ERROR %s %s %s: %s' % (group, side, row, message))
        self.errors.append((group, side, row, message))

    def fresh_dir(self, name):
        """An empty directory ``name`` in the work directory."""
        path = os.path.join(self.workdir, name)
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
        return path

    def setup(self):
        self.sim = shoobx_immutable
        if self.sim is None:
            self.skipped['shoobx'] = ('shoobx.immutable is not installed '
                                      '(pip install shoobx.immutable)')
        self.container_class, reason = _container_class()
        if self.container_class is None and self.opts.revisions:
            self.skipped['objstore history'] = (
                'not available: objstore.container.RevisionedContainer '
                'cannot be imported (%s)' % reason)
        for side, reason in self.skipped.items():
            self.log('skipping %s: %s' % (side, reason))

    # -- dict rows ----------------------------------------------------------

    def dict_rows(self):
        n = self.opts.entries
        self.log('building the %d nested dicts both sides start from' % n)
        data = {'k%d' % i: {'a': i, 'b': str(i)} for i in range(n)}
        sides = [('objstore', self.objstore_dict)]
        if self.sim is not None:
            sides.append(('shoobx', self.shoobx_dict))
        for rep in range(self.opts.repeat):
            for side, func in (sides if rep % 2 == 0 else sides[::-1]):
                self.log('rep %d: %s, %d entries' % (rep + 1, side, n))
                try:
                    func(data)
                except Exception as exc:
                    self.error('dict', side, 'sequence', describe(exc))

    def _record_update(self, side, block, store, size):
        self.record('dict', side, 'update', block + store)
        self.record('dict', side, 'update-block', block)
        self.record('dict', side, 'update-commit', store)
        self.record('dict', side, 'update-bytes', size)

    def objstore_dict(self, data):
        seconds, d = timed(lambda: _make_dict(im, data))
        self.record('dict', 'objstore', 'create', seconds)
        path = os.path.join(self.fresh_dir('dict'), 'Data.fs')
        db = im.DB(FileStorage(path))
        try:
            tm = transaction.TransactionManager()
            conn = db.open(tm)
            root = conn.root()

            def commit(obj):
                root['dict'] = obj
                tm.commit()
            before = os.path.getsize(path)
            seconds, _ = timed(lambda: commit(d))
            self.record('dict', 'objstore', 'store', seconds)
            self.record('dict', 'objstore', 'store-bytes',
                        os.path.getsize(path) - before)
            before = os.path.getsize(path)
            block, store, d2, _ = _two_parts(
                lambda: _update_dict(im, d), commit)
            self._record_update('objstore', block, store,
                                os.path.getsize(path) - before)
            if len(d2) != len(data) or d2[UPDATED_KEY]['b'] != 'changed':
                raise Failure('the updated dict has %d entries and %r at %s'
                              % (len(d2), d2[UPDATED_KEY], UPDATED_KEY))
            conn.close()
        finally:
            db.close()

    def shoobx_dict(self, data):
        seconds, d = timed(lambda: _make_dict(self.sim, data))
        self.record('dict', 'shoobx', 'create', seconds)
        seconds, dumped = timed(lambda: pickle.dumps(d, PROTOCOL))
        self.record('dict', 'shoobx', 'store', seconds)
        self.record('dict', 'shoobx', 'store-bytes', len(dumped))
        del dumped
        block, store, _, dumped = _two_parts(
            lambda: _update_dict(self.sim, d),
            lambda d2: pickle.dumps(d2, PROTOCOL))
        self._record_update('shoobx', block, store, len(dumped))

    # -- history rows -------------------------------------------------------

    def history_rows(self):
        r = self.opts.revisions
        if not r:
            return
        count = len(range(CREATORS.index(QUERY_CREATOR), r, len(CREATORS)))
        self.batch_starts = sorted({0, (count - BATCH_SIZE) // 2,
                                    count - BATCH_SIZE})
        expected = {}
        for side, func, ready in (
                ('shoobx', self.shoobx_history, self.sim),
                ('objstore', self.objstore_history, self.container_class)):
            if ready is None:
                continue
            self.log('%s: building a history of %d revisions' % (side, r))
            try:
                func(r, expected)
            except Exception as exc:
                self.error('history', side, 'query', describe(exc))

    def _queries(self, manager, obj, expected, side, starts=None):
        """Seconds of each batch query (at ``starts``, by default all the
        batch starts); checks, untimed, that both sides find the same
        versions."""
        seconds = []
        for start in starts or self.batch_starts:
            began = time.perf_counter()
            batch = list(manager.getRevisionHistory(
                obj, creator=QUERY_CREATOR, batchStart=start,
                batchSize=BATCH_SIZE))
            seconds.append(time.perf_counter() - began)
            versions = [rev.__im_version__ for rev in batch]
            if versions != expected.setdefault(start, versions) or \
                    len(versions) != BATCH_SIZE:
                raise Failure('%s: the batch at %d has versions %s, %s '
                              'expected' % (side, start, versions,
                                            expected[start]))
        return seconds

    def _warm_queries(self, manager, page, expected, side):
        self._queries(manager, page, expected, side)     # warms the caches
        for rep in range(self.opts.repeat):
            os.sync()
            gc.collect()
            self.record('history', side, 'query', statistics.median(
                self._queries(manager, page, expected, side)))

    def shoobx_history(self, r, expected):
        manager = self.sim.SimpleRevisionedImmutableManager()
        seconds, page = timed(lambda: _build_history(
            self.sim, _shoobx_page_class(self.sim), r, manager.addRevision,
            lambda: None))
        self.record('history', 'shoobx', 'build', seconds)
        self._warm_queries(manager, page, expected, 'shoobx')

    def objstore_history(self, r, expected):
        path = os.path.join(self.fresh_dir('history'), 'Data.fs')
        db = im.DB(FileStorage(path))
        try:
            tm = transaction.TransactionManager()
            conn = db.open(tm)
            container = conn.root()['history'] = self.container_class()

            def start(page):
                container['page'] = page
            seconds, page = timed(lambda: _build_history(
                im, Page, r, start, tm.commit))
            self.record('history', 'objstore', 'build', seconds)
            self._warm_queries(container, page, expected, 'objstore')
            conn.close()
        finally:
            db.close()
        self.notes.append('objstore history file: %.1f MB for %d revisions'
                          % (os.path.getsize(path) / 1e6, r))
        middle = self.batch_starts[len(self.batch_starts) // 2]
        for rep in range(self.opts.repeat):
            db = im.DB(FileStorage(path))
            try:
                conn = db.open(transaction.TransactionManager())
                container = conn.root()['history']
                page = container['page']
                os.sync()
                gc.collect()
                self.record('history', 'objstore', 'query-cold', self._queries(
                    container, page, expected, 'objstore', [middle])[0])
                conn.close()
            finally:
                db.close()


# -- report -----------------------------------------------------------------

#: (group, key, label, unit, target): target is None (information only),
#: ('ratio', '>=', bound) on shoobx/objstore, or ('objstore', '<=', bound)
#: on objstore's own value.
ROWS = (
    ('dict', 'create', 'create ImmutableDict, %(n)s nested dicts', 's',
     ('ratio', '>=', 1.0)),
    ('dict', 'store', 'store it: objstore first commit / shoobx pickle',
     's', None),
    ('dict', 'store-bytes', 'store it: bytes', 'bytes', None),
    ('dict', 'update', "update one key + commit / + pickle", 's',
     ('objstore', '<=', 5e-3)),
    ('dict', 'update-bytes', 'update one key + commit: bytes', 'bytes',
     ('objstore', '<=', 16 * KIB)),
    ('dict', 'update-block', '  of which the update block', 's', None),
    ('dict', 'update-commit', '  of which the commit / pickle', 's', None),
    ('history', 'build', 'build %(r)s revisions (objstore: + commits)', 's',
     None),
    ('history', 'query', 'getRevisionHistory(creator=, batch of %(b)d), '
     'warm', 's', ('objstore', '<=', 2e-3)),
    ('history', 'query-cold', 'the same, newly opened DB (cold)', 's', None),
)


def summarize(run):
    """Table rows: dicts with group, key, label, unit, ours, ref, ratio,
    target, status (met, missed, info, not available, error)."""
    opts = run.opts
    words = {'n': _count(opts.entries), 'r': _count(opts.revisions),
             'b': BATCH_SIZE}
    out = []
    for group, key, label, unit, target in ROWS:
        if group == 'history' and not opts.revisions:
            continue
        ours = run.times[group]['objstore'].get(key)
        ref = run.times[group]['shoobx'].get(key)
        row = {'group': group, 'key': key, 'label': label % words,
               'unit': unit, 'target': _target_text(target, unit),
               'target_spec': target, 'ours_runs': ours, 'ref_runs': ref,
               'ours': statistics.median(ours) if ours else None,
               'ref': statistics.median(ref) if ref else None,
               'ratios': [], 'ratio': None}
        if ours and ref and all(ours):
            # Runs pair up unless a side failed in some repetition.
            row['ratios'] = ([b / a for a, b in zip(ours, ref)]
                             if len(ours) == len(ref) else [])
            row['ratio'] = (statistics.median(row['ratios']) if row['ratios']
                            else row['ref'] / row['ours'])
        row['status'] = _status(run, row, target)
        out.append(row)
    return out


def _status(run, row, target):
    if row['ours'] is None:
        if row['group'] == 'history' and 'objstore history' in run.skipped:
            return 'not available'
        if any(e[:2] == (row['group'], 'objstore') for e in run.errors):
            return 'error'
    if target is None:
        return 'info'
    on, op, bound = target
    value = row['ratio'] if on == 'ratio' else row['ours']
    if value is None:
        return 'error'
    return 'met' if (value >= bound if op == '>=' else value <= bound) \
        else 'missed'


def _target_text(target, unit):
    if target is None:
        return 'info'
    on, op, bound = target
    if on == 'ratio':
        return '%s %.2f' % (op, bound)
    return '%s %s' % (op, format_value(bound, unit))


def format_value(value, unit):
    if value is None:
        return '-'
    if unit == 's':
        return format_seconds(value)
    if value >= 1024 * KIB:
        return '%.1f MiB' % (value / (1024 * KIB))
    if value >= KIB:
        return '%.1f KiB' % (value / KIB)
    return '%d B' % value


def _ratio_text(ratio):
    # Two decimals would print 0.00 for a side 300 times slower.
    return '%.2f' % ratio if ratio >= 0.1 else '%.2g' % ratio


def format_table(rows):
    head = ('group', 'row', 'objstore', 'shoobx', 'ratio', 'range', 'target',
            '')
    lines = []
    for r in rows:
        ours = ('n/a' if r['status'] == 'not available'
                else format_value(r['ours'], r['unit']))
        lines.append((
            r['group'], r['label'], ours, format_value(r['ref'], r['unit']),
            '-' if r['ratio'] is None else _ratio_text(r['ratio']),
            '-' if not r['ratios'] else '%s-%s' % (
                _ratio_text(min(r['ratios'])), _ratio_text(max(r['ratios']))),
            r['target'], r['status']))
    return render_table(head, lines)


def format_report(report):
    env, config = report['environment'], report['config']
    head = environment.format(env).split('\n')
    head[0] = 'objstore immutables benchmark, %s' % env['date']
    lines = head + [
        'shoobx:     shoobx.immutable %s' % report['shoobx_version'],
        '',
        'sides: objstore immutables (DB defaults, FileStorage fsync on) vs '
        'shoobx.immutable (in memory; storing = pickle.dumps, protocol %d: '
        'a lower bound of committing it, see the module docstring).'
        % PROTOCOL,
        'repetitions: %d (the side that goes first alternates); times are '
        'medians over them, ratio = median of per-repetition shoobx/objstore'
        ' (>= 1.00: objstore at least as fast or as small); bytes: objstore '
        '= data file growth, shoobx = pickle length; history queries: median'
        ' of batches at %s of the creator\'s %s revisions.'
        % (config['repeat'], report['batch_starts'],
           _count(report['creator_revisions'])), '']
    lines.append(format_table(report['rows']))
    for note in report['notes']:
        lines.append('note: ' + note)
    for side, reason in report['skipped'].items():
        lines.append('skipped %s: %s' % (side, reason))
    for group, side, row, message in report['errors']:
        lines.append('ERROR %s/%s %s: %s' % (group, side, row, message))
    lines.append('wall time: %.1f s' % env['wall_time_s'])
    return '\n'.join(lines)


def run(opts, log=None):
    """Run the benchmark; the report as a JSON-serializable dict."""
    bench, env = run_in_workdir(
        opts, log or Log(), 'objstore-bench-im-', Run,
        ('setup', 'dict_rows', 'history_rows'))
    result = common_report(opts, bench, env, summarize(bench))
    result['shoobx_version'] = environment._version('shoobx.immutable')
    result['batch_starts'] = bench.batch_starts
    result['creator_revisions'] = len(range(
        CREATORS.index(QUERY_CREATOR), opts.revisions, len(CREATORS)))
    return result


def main(argv=None):
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    return print_report(opts, run(opts), format_report)


if __name__ == '__main__':
    sys.exit(main())
