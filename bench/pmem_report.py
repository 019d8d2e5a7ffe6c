"""The table and report of ``python -m bench pmem`` (see bench.pmem)."""
import statistics

from bench import environment
from bench.report import _count, render_table

DB_SIDES = ('pmem', 'objstore-file', 'zodb-file')
SIDES = DB_SIDES + ('lmdb',)
LABELS = {'pmem': 'PMem', 'objstore-file': 'objstore FS',
          'zodb-file': 'ZODB FS', 'lmdb': 'LMDB'}

PHASES = (
    ('build', 'build %s objects (%s per commit)', DB_SIDES,
     ('zodb-file', 'pmem'), None),
    ('load', 'point load via DB, %s: conn.get(oid).count', DB_SIDES,
     ('zodb-file', 'pmem'), ('>=', 2.0)),
    ('raw', 'raw load, %s: storage.load(oid); LMDB get', SIDES,
     ('lmdb', 'pmem'), None),
    ('raw-unpickle', 'raw load + unpickle, %s; LMDB get + unpickle', SIDES,
     ('lmdb', 'pmem'), None),
    ('raw-target', 'PMem storage.load vs LMDB get + unpickle, %s',
     ('pmem', 'lmdb'), ('lmdb', 'pmem'), ('>=', 0.5)),
    ('commit', 'commit 1 small object, %s-object DB (median)', SIDES,
     ('zodb-file', 'pmem'), None),
    ('open', 'open after clean close, %s: storage+DB+1 read', SIDES,
     ('zodb-file', 'pmem'), None),
    ('open-storage', '  of which the storage constructor, %s', DB_SIDES,
     ('zodb-file', 'pmem'), None),
    ('crash', 'open after crash (writer SIGKILLed), %s', DB_SIDES,
     ('zodb-file', 'pmem'), None),
)
SCALING_TARGET = ('<=', 1.5)


def summarize(run):
    """Table rows: dicts with key, label, values {side: median}, runs,
    ratio_of (ref, ours), ratios, ratio, target, status."""
    opts = run.opts
    out = []
    for phase, label, shown, ratio_of, target in PHASES:
        for n in opts.sizes:
            key = '%s %d' % (phase, n)
            words = ((_count(n), _count(opts.batch)) if phase == 'build'
                     else (_count(n),))
            runs = {}
            for side in shown:
                row_key = key
                if phase == 'raw-target':
                    row_key = ('raw %d' if side == 'pmem'
                               else 'raw-unpickle %d') % n
                runs[side] = run.times[side].get(row_key)
            out.append(_row(run, key, label % words, runs, ratio_of, target))
    small, large = min(opts.sizes), max(opts.sizes)
    if small != large:
        runs = {}
        for side in SIDES:
            a = run.times[side].get('open-min %d' % small)
            b = run.times[side].get('open-min %d' % large)
            if a and b:
                runs[side] = [y / x for x, y in zip(a, b)]
        out.append(_row(run, 'open-scaling', 'open after clean close, best '
                        'of %d: %s / %s' % (opts.opens, _count(large),
                                            _count(small)), runs,
                        (None, 'pmem'), SCALING_TARGET, unit='x'))
    return out


def _row(run, key, label, runs, ratio_of, target, unit='s'):
    ref, ours = ratio_of
    row = {'key': key, 'label': label, 'unit': unit,
           'values': {s: statistics.median(v) if v else None
                      for s, v in runs.items()},
           'runs': runs, 'ratio_of': ratio_of, 'ratios': [], 'ratio': None,
           'target': '%s %.2f' % target if target else 'info'}
    if ref is None:
        row['ratios'] = list(runs.get(ours) or [])
    elif runs.get(ours) and runs.get(ref):
        row['ratios'] = [r / o for o, r in zip(runs[ours], runs[ref]) if o]
    if row['ratios']:
        row['ratio'] = statistics.median(row['ratios'])
    row['status'] = _status(run, row, target)
    return row


def _status(run, row, target):
    missing = [s for s in row['ratio_of'] if s is not None
               and s in run.skipped]
    if missing:
        return ('not available' if any(
            run.skipped[s].startswith('not available') for s in missing)
            else 'not run')
    if row['ratio'] is None:
        return 'error' if target else 'info'
    if target is None:
        return 'info'
    op, bound = target
    ok = row['ratio'] >= bound if op == '>=' else row['ratio'] <= bound
    return 'met' if ok else 'missed'


def format_value(value, unit):
    if value is None:
        return '-'
    if unit == 'x':
        return '%.2fx' % value
    if value >= 1:
        return '%.2f s' % value
    if value >= 1e-3:
        return '%.2f ms' % (value * 1e3)
    if value >= 1e-5:
        return '%.1f us' % (value * 1e6)
    return '%.2f us' % (value * 1e6)


def _ratio_of_text(ratio_of):
    ref, ours = ratio_of
    if ref is None:
        return '%s itself' % LABELS[ours]
    return '%s/%s' % (LABELS[ref], LABELS[ours])


def format_table(rows, skipped):
    head = ('row',) + tuple(LABELS[s] for s in SIDES) + (
        'ratio', 'of', 'range', 'target', '')
    lines = []
    for r in rows:
        cells = [r['label']]
        for side in SIDES:
            if side not in r['runs']:
                cells.append('')
            elif side in skipped:
                cells.append('n/a' if skipped[side].startswith('not avail')
                             else 'not run')
            else:
                cells.append(format_value(r['values'][side], r['unit']))
        ratios = r['ratios']
        cells += ['-' if r['ratio'] is None else '%.2f' % r['ratio'],
                  _ratio_of_text(r['ratio_of']),
                  '%.2f-%.2f' % (min(ratios), max(ratios)) if ratios else '-',
                  r['target'], r['status']]
        lines.append(cells)
    return render_table(head, lines, '<>>>>><><<')


def format_report(report):
    env, config = report['environment'], report['config']
    head = environment.format(env).split('\n')
    head[0] = 'objstore pmem storage benchmark, %s' % env['date']
    lines = head + [
        'lmdb:       py-lmdb %s' % report['lmdb_version'],
        '',
        'sides: %s.' % '; '.join(report['sides']),
        'repetitions: %d (the side that goes first rotates); values are '
        'medians over them; ratio = median of the per-repetition ratios '
        '("of" says which), range = their smallest and largest. Loads: %d '
        'random objects per repetition, time per load (%s time); commits: '
        'median of %d per repetition; clean opens: median of %d per '
        'repetition.' % (config['repeat'], config['loads'],
                         {'wall': 'elapsed', 'cpu': 'CPU'}[config['clock']],
                         config['commits'], config['opens']), '']
    lines.append(format_table(report['rows'], report['skipped']))
    for note in report['notes']:
        lines.append('note: ' + note)
    for side, reason in report['skipped'].items():
        lines.append('skipped %s: %s' % (side, reason))
    for side, row, message in report['errors']:
        lines.append('ERROR %s %s: %s' % (side, row, message))
    lines.append('wall time: %.1f s' % env['wall_time_s'])
    return '\n'.join(lines)


# -- main --------------------------------------------------------------------
