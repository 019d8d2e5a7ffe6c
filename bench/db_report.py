"""The table of ``python -m bench db``: rows, ratios, targets, text."""

from bench import environment
from bench.report import (
    _count, format_seconds, ratio_range, ratio_row, render_table)

LABELS = {
    'add': 'add %s items, one commit',
    'update': 'update %s items, one commit',
    'cold': 'cold: new DB, load %s items',
    'warm': 'warm: cacheMinimize, load %s again',
    'hot': 'hot: touch %s cached items (mean of 10)',
    'travel': 'time travel: new DB, open(at=), load %s',
}

#: Targets of the pairs that have one (the 'core' diagnostic pair has none).
PHASE_TARGETS = {'hot': '>=0.95'}
DEFAULT_TARGET = '>=1.00'


def summarize(run):
    """Table rows: dicts with pair, key, label, ours, ref, ratio, target."""
    opts = run.opts
    out = []
    for pair in run.pairs:
        t = run.times[pair]
        targeted = pair != 'core' and not opts.calibrate
        for n in opts.sizes:
            for phase in opts.phases:
                key = '%s %d' % (phase, n)
                target = (PHASE_TARGETS.get(phase, DEFAULT_TARGET)
                          if targeted else 'info')
                out.append(ratio_row(pair, key, LABELS[phase] % _count(n),
                                     t['objstore'].get(key), t['ZODB'].get(key),
                                     target))
            if 'travel' in opts.phases and 'cold' in opts.phases:
                for side in ('objstore', 'ZODB'):
                    out.append(ratio_row(
                        pair, 'travel/cold %s %d' % (side, n),
                        '%s: time travel / cold, %s (%s column)'
                        % (side, _count(n), side if side == 'objstore'
                           else 'in objstore'),
                        t[side].get('travel %d' % n), t[side].get('cold %d' % n),
                        '<=1.00' if targeted and side == 'objstore' else 'info',
                        inverse=True))
        if opts.contention:
            out.append(ratio_row(
                pair, 'contention', '%d threads x %d shared items, %.1f s '
                '(tx/s)' % (opts.threads, 10, opts.duration),
                t['objstore'].get('contention'), t['ZODB'].get('contention'),
                DEFAULT_TARGET if targeted else 'info', rate=True))
    return [r for r in out if r is not None]


def _value(seconds, rate):
    if seconds is None:
        return '-'
    if rate:
        return '%.0f tx/s' % (1 / seconds)
    return format_seconds(seconds)


def _target_text(target):
    # Hot reads persistent's C cache on both sides: 0.95-1.05 counts as even.
    return '~1.00' if target == '>=0.95' else target


def format_table(rows):
    head = ('pair', 'row', 'objstore', 'ZODB', 'ratio', 'range', 'target', '')
    lines = []
    for r in rows:
        lines.append((
            r['pair'], r['label'], _value(r['ours'], r['rate']),
            _value(r['ref'], r['rate']),
            '-' if r['ratio'] is None else '%.2f' % r['ratio'],
            ratio_range(r['ratios']), _target_text(r['target']), r['status']))
    return render_table(head, lines)


def format_report(report):
    env, config = report['environment'], report['config']
    head = environment.format(env).split('\n')
    head[0] = 'objstore database benchmark, %s' % env['date']
    lines = head + [
        '',
        'pairs: %s' % '; '.join('%s = %s vs %s' % (pair, *labels)
                                for pair, labels in report['sides'].items()),
        'fsync: both file storages as their defaults are: ZODB FileStorage '
        'fsyncs every commit, objstore FileStorage(fsync=True).',
        'clock: %s.' % ('elapsed time' if config['clock'] == 'wall' else
                        'CPU time of the process (fsync waits not counted; '
                        'contention in elapsed time)'),
        'cache_size = 2N + 1000 on both sides (no eviction in any phase).',
        'repetitions: %d (interleaved, the side that goes first alternates); '
        'times are medians over them, ratio = median of per-repetition '
        'ZODB/objstore (>= 1.00: objstore at least as fast; the travel/cold '
        'rows divide a side\'s own times, <= 1.00: time travel no slower); '
        'os.sync() and gc.collect() before each timed region, gc enabled.'
        % config['repeat'], '']
    if config.get('profile'):
        lines += ['PROFILED RUN: times include cProfile overhead; '
                  'stats in %s' % config['profile'], '']
    if config.get('calibrate'):
        lines += ['CALIBRATION RUN: ZODB DB and storages on both sides.', '']
    lines.append(format_table(report['rows']))
    for note in report['notes']:
        lines.append('note: ' + note)
    for pair, reason in report['skipped'].items():
        lines.append('skipped pair %s: %s' % (pair, reason))
    for pair, side, row, message in report['errors']:
        lines.append('ERROR %s/%s %s: %s' % (pair, side, row, message))
    lines.append('wall time: %.1f s' % env['wall_time_s'])
    return '\n'.join(lines)
