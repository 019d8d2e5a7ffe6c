"""The table of ``python -m bench storages``: rows, ratios, targets, text."""
import statistics

from bench import environment

DATA_ROWS = ('store', 'load', 'loadBefore', 'iterate', 'pack')


def summarize(run):
    """Table rows: dicts with pair, row, label, objstore, ref, ratio, target."""
    opts = run.opts
    out = []
    labels = {
        'store': 'store+commit %s records (txns of %d)',
        'load': 'load %s, each once, cold',
        'loadBefore': 'loadBefore %s, non-current rev.',
        'iterate': 'iterate %s txns\' records (x2 revs)',
        'pack': 'pack %s objects x2 revs, GC half',
    }
    for pair in run.pairs:
        t = run.times[pair]
        target = '>=1.00' if pair == 'file' else 'info'
        for n in opts.sizes:
            for row in DATA_ROWS:
                key = '%s %d' % (row, n)
                label = labels[row] % ((_count(n), opts.batch) if row == 'store'
                                       else _count(n))
                out.append(ratio_row(pair, key, label, t['objstore'].get(key),
                                      t['ZODB'].get(key), target))
        n = opts.open_records
        if pair == 'file':
            for state, what in (('clean', 'after clean close'),
                                ('crash', 'after crash (killed writer)'),
                                ('scan', 'full scan (no checkpoint/.index)')):
                key = 'open-%s %d' % (state, n)
                out.append(ratio_row(pair, key, 'open %s-record file, %s'
                                      % (_count(n), what),
                                      t['objstore'].get(key),
                                      t['ZODB'].get(key), '>=1.00'))
            crash = t['objstore'].get('open-crash %d' % n)
            scan = t['objstore'].get('open-scan %d' % n)
            out.append(ratio_row(pair, 'crash-vs-scan', 'objstore open after '
                                  'crash vs its own full scan', crash, scan,
                                  '>=5.00'))
        commit_o = _medians(t['objstore'].get('commit'))
        commit_z = _medians(t['ZODB'].get('commit'))
        fsync = _medians(t.get('fsync', {}).get('fsync'))
        label = ('commit 1 record, fsync on' if pair == 'file'
                 else 'commit 1 record')
        out.append(ratio_row(pair, 'commit', label + ' (median of %d)'
                              % opts.commits, commit_o, commit_z, target))
        if pair == 'file':
            out.append(ratio_row(
                pair, 'commit/fsync', 'objstore commit vs raw fsync (obj/ref)',
                commit_o, fsync, '<=1.30', inverse=True))
            out.append(ratio_row(
                pair, 'zodb-commit/fsync', 'ZODB commit vs raw fsync (in objstore'
                ' column)', commit_z, fsync, 'info', inverse=True))
    return [r for r in out if r is not None]


def _count(n):
    if n >= 1000000 and n % 1000000 == 0:
        return '%dM' % (n // 1000000)
    if n >= 1000 and n % 1000 == 0:
        return '%dk' % (n // 1000)
    return str(n)


def _medians(per_rep):
    if not per_rep:
        return None
    return [statistics.median(v) for v in per_rep]


def ratio_row(pair, key, label, ours, ref, target, inverse=False, rate=False):
    """One table row; ``ours``/``ref`` are per-repetition seconds.

    The ratio is ref/ours (or ours/ref with ``inverse``), taken per
    repetition (the two were measured next to each other), then the median.
    ``rate`` rows hold seconds per transaction and are shown as transactions
    per second (the ratio is the same either way).
    """
    if not ours and not ref:
        return None
    row = {'pair': pair, 'key': key, 'label': label, 'target': target,
           'ours': statistics.median(ours) if ours else None,
           'ref': statistics.median(ref) if ref else None,
           'ours_runs': ours, 'ref_runs': ref, 'ratios': [], 'ratio': None,
           'inverse': inverse, 'rate': rate}
    if ours and ref:
        pairs = list(zip(ours, ref))
        row['ratios'] = [(o / r) if inverse else (r / o) for o, r in pairs]
        row['ratio'] = statistics.median(row['ratios'])
    row['status'] = status(row['ratio'], target)
    return row


def status(ratio, target):
    if ratio is None:
        return 'MISSING'
    if target == 'info':
        return ''
    bound = float(target[2:])
    ok = ratio >= bound if target.startswith('>=') else ratio <= bound
    return 'PASS' if ok else 'FAIL'


def ratio_range(ratios):
    """``min-max`` of a row's per-repetition ratios, or ``-``."""
    return '%.2f-%.2f' % (min(ratios), max(ratios)) if ratios else '-'


def render_table(head, lines, align='<<>>>><<'):
    """Columns padded to their widest cell; ``align`` has one ``<`` (left)
    or ``>`` (right) per column."""
    widths = [max(len(str(x[i])) for x in [head] + lines)
              for i in range(len(head))]

    def fmt(cells):
        return '  '.join(('%-*s' if a == '<' else '%*s') % (w, c)
                         for c, w, a in zip(cells, widths, align)).rstrip()
    out = [fmt(head), fmt(['-' * w for w in widths])]
    out.extend(fmt(line) for line in lines)
    return '\n'.join(out)


def format_seconds(seconds):
    if seconds is None:
        return '-'
    if seconds >= 1:
        return '%.2f s' % seconds
    if seconds >= 1e-3:
        return '%.2f ms' % (seconds * 1e3)
    return '%.0f us' % (seconds * 1e6)


def _format_ratio(ratio, target):
    if ratio is None:
        return '-'
    text = '%.2f' % ratio
    if target != 'info' and text == '%.2f' % float(target[2:]):
        # Two decimals would hide which side of the target it is on.
        text = '%.3f' % ratio
    return text


def format_table(rows):
    head = ('pair', 'row', 'objstore', 'ZODB/ref', 'ratio', 'range',
            'target', '')
    lines = []
    for r in rows:
        lines.append((
            r['pair'], r['label'], format_seconds(r['ours']),
            format_seconds(r['ref']),
            _format_ratio(r['ratio'], r['target']),
            ratio_range(r['ratios']), r['target'], r['status']))
    return render_table(head, lines)


def format_report(report):
    env, config = report['environment'], report['config']
    lines = [environment.format(env), '',
             'repetitions: %d (interleaved: objstore, ZODB, objstore, ZODB, '
             '...); times are medians over them, ratio = median of '
             'per-repetition ZODB/objstore (>= 1.00: objstore at least as '
             'fast); %d records per transaction in the data rows; '
             'os.sync() and gc.collect() before each timed region, gc enabled.'
             % (config['repeat'], config['batch']), '']
    if config.get('profile'):
        lines += ['PROFILED RUN: objstore times include cProfile overhead; '
                  'stats in %s' % config['profile'], '']
    if config.get('calibrate'):
        lines += ['CALIBRATION RUN: ZODB storages on both sides.', '']
    lines.append(format_table(report['rows']))
    for note in report['notes']:
        lines.append('note: ' + note)
    for pair, reason in report['skipped'].items():
        lines.append('skipped pair %s: %s' % (pair, reason))
    for pair, side, row, message in report['errors']:
        lines.append('ERROR %s/%s %s: %s' % (pair, side, row, message))
    lines.append('wall time: %.1f s' % env['wall_time_s'])
    return '\n'.join(lines)
