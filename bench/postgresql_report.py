"""The table and report of ``python -m bench postgresql``."""
import statistics

from bench import environment
from bench.report import _count, ratio_row, render_table

PHASES = ('add', 'update', 'warm', 'cold', 'hot', 'steamin', 'conflicts')
LABELS = {
    'add': 'add %s objects, one commit',
    'update': 'update %s objects, one commit',
    'warm': 'warm: new storage+DB, read %s',
    'cold': 'cold: all caches cleared, read %s',
    'hot': 'hot: pickle cache cleared, read %s',
    'steamin': 'steamin: read %s cached (mean of 10)',
    'conflicts': 'conflicts: %s txns/process, shared Length',
}
TARGET = '>=1.00'


def _key(phase, n, procs):
    return '%s %d %dp' % (phase, n, procs)


# -- the table ---------------------------------------------------------------

def summarize(run):
    """Table rows (dicts): phase, procs, label, ours, ref, ratio, target,
    status ('met', 'missed', 'not available', 'error' or '' for info)."""
    opts = run.opts
    out = []
    target = 'info' if opts.calibrate else TARGET
    for n in opts.sizes:
        for phase in opts.phases:
            for procs in opts.procs:
                key = _key(phase, n, procs)
                ours = run.times['objstore'].get(key)
                ref = run.times['RelStorage'].get(key)
                label = LABELS[phase] % _count(
                    opts.conflict_txns if phase == 'conflicts' else n)
                row = ratio_row('%dp' % procs, key, label, ours, ref, target,
                                rate=phase == 'conflicts') or {
                    'pair': '%dp' % procs, 'key': key, 'label': label,
                    'target': target, 'ours': None, 'ref': None,
                    'ours_runs': None, 'ref_runs': None, 'ratios': [],
                    'ratio': None, 'inverse': False,
                    'rate': phase == 'conflicts'}
                row.update(phase=phase, procs=procs, n=n,
                           ours_cpu=_median(run.cpu['objstore'].get(key)),
                           ref_cpu=_median(run.cpu['RelStorage'].get(key)))
                if 'objstore' in run.skipped:
                    row['status'] = 'not available'
                elif row['ratio'] is None:
                    row['status'] = 'error'
                else:
                    row['status'] = {'PASS': 'met', 'FAIL': 'missed'}.get(
                        row['status'], '')
                out.append(row)
    return out


def _median(values):
    return statistics.median(values) if values else None


def _value(row, which):
    seconds = row[which]
    if seconds is None:
        if which == 'ours' and row['status'] == 'not available':
            return 'not available'
        return '-'
    if row['rate']:
        # Seconds per transaction in each process: all of them together.
        return '%.0f tx/s' % (row['procs'] / seconds)
    if seconds >= 1:
        return '%.2f s' % seconds
    if seconds >= 1e-3:
        return '%.2f ms' % (seconds * 1e3)
    return '%.0f us' % (seconds * 1e6)


def format_table(rows):
    head = ('phase', 'processes', 'objstore', 'RelStorage', 'ratio', 'range',
            'target', 'met/missed')
    lines = []
    for r in rows:
        ratios = r['ratios']
        lines.append((
            r['label'], str(r['procs']), _value(r, 'ours'), _value(r, 'ref'),
            '-' if r['ratio'] is None else '%.2f' % r['ratio'],
            '%.2f-%.2f' % (min(ratios), max(ratios)) if ratios else '-',
            r['target'], r['status']))
    return render_table(head, lines, '<>>>>><<')


def format_report(report):
    env, config = report['environment'], report['config']
    head = environment.format(env).split('\n')
    head[0] = 'objstore PostgreSQL benchmark, %s' % env['date']
    del head[3:5]   # the temp dir and its filesystem: nothing is stored there
    server = report.get('server') or {}
    lines = head + [
        'server:     PostgreSQL %s at %s (fsync=%s, synchronous_commit=%s, '
        'shared_buffers=%s), same server for both sides, a new database '
        'per run' % (server.get('server_version', '?'), config['server'],
                     server.get('fsync', '?'),
                     server.get('synchronous_commit', '?'),
                     server.get('shared_buffers', '?')),
        'objstore:   %s' % report['sides']['objstore'],
        'RelStorage: %s' % report['sides']['RelStorage'],
        '',
        'zodbshootout\'s phases; each process works on its own %s objects '
        '(~300-byte records in a PersistentMapping), the processes start each'
        ' phase together; a time is the mean over the processes of each '
        'one\'s median of %d round(s); the conflicts row shows all processes\''
        ' transactions per second (%d transactions each). repetitions: %d '
        '(the side that goes first '
        'alternates); values are medians over them, ratio = median of the '
        'per-repetition RelStorage/objstore time (>= 1.00: objstore at '
        'least as fast).' % ('/'.join(_count(n) for n in config['sizes']),
                             config['rounds'], config['conflict_txns'],
                             config['repeat']), '']
    if config.get('profile'):
        lines += ['PROFILED RUN: times include cProfile overhead; stats in %s'
                  % config['profile'], '']
    if config.get('calibrate'):
        lines += ['CALIBRATION RUN: ZODB DB on RelStorage on both sides.', '']
    lines.append(format_table(report['rows']))
    for note in report['notes']:
        lines.append('note: ' + note)
    for side, reason in report['skipped'].items():
        lines.append('skipped %s: %s' % (side, reason))
    for side, row, message in report['errors']:
        lines.append('ERROR %s %s: %s' % (side, row, message))
    lines.append('wall time: %.1f s' % env['wall_time_s'])
    return '\n'.join(lines)
