"""Crash tests for FileStorage: what a storage must show after a crash, and
a driver that kills a committing process again and again.

:func:`snapshot` and :func:`check_reads` state what every recovered file
must satisfy: its transactions, as the iterator shows them, are the whole
truth, and every load, ``loadBefore``, ``loadSerial`` and ``history``
agrees with them.

The driver (:func:`run`, or ``python -m objstore.testing.crash --kills N``)
starts a worker process that commits transactions in a loop on one file
with ``fsync=True`` and prints, flushed, what each transaction will write
before it begins and its tid once ``tpc_finish`` returned. The driver
kills the worker with SIGKILL at a random moment (while it runs, or while
it opens and recovers the file), reopens the file and checks that every
reported transaction is there with its data, that nothing partial is
visible, and that the only transaction beyond the reported ones is the
one the worker was committing, whole. The next worker continues on the
same file, so recovery runs again and again. Exit status 1 on any failure.
"""
import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings

from objstore import errors
from objstore.serialize import references
from objstore.storages.base import maxtid, p64, z64
from objstore.storages.file import format as fmt
from objstore.testing import faults
from objstore.testing.helpers import (
    Clock, after, commit, make_txn, record, value_of)

#: How many objects the worker changes (besides the root, oid 0).
OBJECTS = 8


# -- what a recovered storage must show -------------------------------------

def snapshot(storage):
    """The storage's transactions as one comparable value.

    A tuple, oldest first, of ``(tid, status, user, description,
    records)`` with ``records`` a tuple of ``(oid, data or None,
    data_txn)`` in stored order.
    """
    iterator = storage.iterator()
    try:
        return tuple(
            (txn.tid, txn.status, txn.user, txn.description,
             tuple((r.oid, None if r.data is None else bytes(r.data),
                    r.data_txn) for r in txn))
            for txn in iterator)
    finally:
        close = getattr(iterator, 'close', None)
        if close is not None:
            close()


def revisions_of(snap):
    """``{oid: [(tid, data or None), ...]}``, oldest first."""
    revisions = {}
    for tid, _status, _user, _desc, records in snap:
        for oid, data, _data_txn in records:
            revisions.setdefault(oid, []).append((tid, data))
    return revisions


def _call(function, *args):
    """The result of ``function(*args)``, or the name of the
    ``objstore.errors`` exception it raised."""
    try:
        return function(*args)
    except errors.POSKeyError:
        return 'POSKeyError'


def check_reads(storage, snap, oids=()):
    """Where the reads of ``storage`` disagree with ``snap`` (its
    :func:`snapshot`): a list of problems, empty if none.

    Checks ``lastTransaction``, the current revision of every oid in
    ``snap`` or ``oids`` (absent ones must raise ``POSKeyError``), and
    ``loadBefore``, ``loadSerial`` and ``history`` of every revision.
    """
    problems = []

    def expect(what, got, wanted):
        if got != wanted:
            problems.append('%s: got %s, expected %s'
                            % (what, _short(got), _short(wanted)))

    revisions = revisions_of(snap)
    last = max((txn[0] for txn in snap), default=z64)
    expect('lastTransaction()', storage.lastTransaction(), last)
    for oid in sorted(set(oids) | set(revisions)):
        name = errors.oid_repr(oid)
        revs = revisions.get(oid)
        if not revs:
            expect('load(%s)' % name, _call(storage.load, oid),
                   'POSKeyError')
            expect('loadBefore(%s, maxtid)' % name,
                   _call(storage.loadBefore, oid, maxtid), 'POSKeyError')
            continue
        tid, data = revs[-1]
        expect('load(%s)' % name, _call(storage.load, oid),
               'POSKeyError' if data is None else (data, tid))
        expect('loadBefore(%s, first tid)' % name,
               _call(storage.loadBefore, oid, revs[0][0]), None)
        for i, (tid, data) in enumerate(revs):
            end = revs[i + 1][0] if i + 1 < len(revs) else None
            at = '(%s, %s)' % (name, errors.oid_repr(tid))
            expect('loadBefore%s' % at,
                   _call(storage.loadBefore, oid, after(tid)),
                   'POSKeyError' if data is None else (data, tid, end))
            expect('loadSerial%s' % at, _call(storage.loadSerial, oid, tid),
                   'POSKeyError' if data is None else data)
        history = _call(storage.history, oid, None)
        if history != 'POSKeyError':
            history = [h['tid'] for h in history]
        expect('history(%s)' % name, history,
               [tid for tid, _ in reversed(revs)])
    return problems


def _short(value):
    text = repr(value)
    return text if len(text) < 200 else text[:200] + '...'


def describe_difference(got, candidates):
    """Say how snapshot ``got`` differs from the nearest of ``candidates``."""
    lines = []
    for want in candidates:
        got_tids = [t[0].hex() for t in got]
        want_tids = [t[0].hex() for t in want]
        if got_tids != want_tids:
            lines.append('tids %s, expected %s' % (got_tids, want_tids))
            continue
        for g, w in zip(got, want):
            if g != w:
                lines.append('transaction %s differs: %s, expected %s'
                             % (g[0].hex(), _short(g), _short(w)))
                break
    return '; '.join(lines)


# -- a workload in steps ----------------------------------------------------

class Step:
    """One step of the workload: log ops ``[start, end)``, and the
    storage's snapshot once it completed."""

    def __init__(self, name, start, end, snap):
        self.name = name
        self.start = start
        self.end = end
        self.snap = snap

    def __repr__(self):
        return '<%s ops %d-%d>' % (self.name, self.start, self.end)


class Workload:
    """A FileStorage workload in steps, each with the storage's snapshot
    after it, run under :class:`objstore.testing.faults.Seams`.

    Commits big and small (one whose trailer crosses a 512-byte boundary),
    an abort after the vote, a deletion, an undo, two packs with garbage
    collection, closes and reopens, and a process death in ``tpc_finish``
    followed by the open that recovers from it. Tids are forced (a clock
    starting at ``start``), so every run makes the same calls and
    snapshots. With ``short``, fewer commits. Periodic checkpoints need
    a small ``log.CHECKPOINT_BYTES``, set by the caller.
    """

    def __init__(self, directory, seams, start=1700000000, short=False):
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, 'data.fs')
        self.seams = seams
        self.short = short
        self.rng = random.Random(20261122)
        self.clock = Clock(start)
        self.moment = 0
        self.storage = None
        self.steps = []
        self.snap = ()
        self.serials = {}
        self.children = []
        self.oids = set()

    def step(self, name, action):
        start = self.seams.mark()
        action()
        if self.storage is not None:
            self.snap = snapshot(self.storage)
        self.steps.append(Step(name, start, self.seams.mark(), self.snap))

    def tid(self):
        self.moment += 1
        return self.clock.tid(self.moment)

    def open(self):
        from objstore.storages.file import FileStorage
        self.storage = FileStorage(self.path)

    def close(self):
        self.storage.close()
        self.storage = None

    def commit(self, values, root=False, deletes=(), size=None):
        """Store ``values`` (oid -> value) and maybe the root; return tid."""
        stores = {}
        for oid, value in values.items():
            pad = self.rng.randrange(1500) if size is None else size
            stores[oid] = (self.serials.get(oid, z64),
                           record((value, 'x' * pad)))
        if root:
            stores[z64] = (self.serials.get(z64, z64),
                           record('root', refs=self.children))
        tid = commit(self.storage, stores,
                     {oid: self.serials[oid] for oid in deletes},
                     tid=self.tid(), description='step %d' % self.moment)
        for oid in stores:
            self.serials[oid] = tid
            self.oids.add(oid)
        for oid in deletes:
            del self.serials[oid]
        return tid

    def new_children(self, count, size=None):
        oids = [self.storage.new_oid() for _ in range(count)]
        self.children.extend(oids)
        self.commit({oid: 'new' for oid in oids}, root=True, size=size)

    def change(self, count=None):
        count = count or self.rng.randint(1, 3)
        chosen = self.rng.sample(self.children, min(count,
                                                    len(self.children)))
        self.commit({oid: 'v%d' % self.moment for oid in chosen},
                    root=self.rng.random() < 0.25)

    def straddling(self):
        """A commit whose 24-byte trailer crosses a 512-byte boundary, so
        that a torn trailer is among the images."""
        oid = self.children[0]
        base = self.storage.getSize()
        description = b'step %d' % (self.moment + 1)
        fixed = (fmt.header_size(b'', description, b'') + fmt.RECORD_SIZE
                 + 4 + fmt.TRAILER_SIZE)
        pad = 512
        # Put the trailer at 500 modulo 512: 12 of its bytes before the
        # boundary, 12 after.
        while (base + fixed + len(record(('straddle', 'x' * pad)))
               - fmt.TRAILER_SIZE) % 512 != 500:
            pad += 1
        self.commit({oid: 'straddle'}, size=pad)
        end = self.storage.getSize()
        if (end - fmt.TRAILER_SIZE) % 512 != 500:
            raise RuntimeError('the trailer is at %d, not at 500 modulo 512'
                               % (end - fmt.TRAILER_SIZE))

    def abort(self):
        txn = make_txn()
        self.storage.tpc_begin(txn)
        self.storage.store(self.storage.new_oid(), z64,
                           record('aborted' + 'a' * 3000), '', txn)
        self.storage.tpc_vote(txn)
        self.storage.tpc_abort(txn)

    def delete_one(self):
        oid = self.children.pop()
        self.commit({}, root=True, deletes=[oid])

    def undo_last(self):
        info = self.storage.undoLog(0, 1)[0]
        txn = make_txn(description='undo')
        self.storage.tpc_begin(txn, self.tid())
        _tid, oids = self.storage.undo(info['id'], txn)
        self.storage.tpc_vote(txn)
        tid = self.storage.tpc_finish(txn)
        for oid in oids:
            self.serials[oid] = tid

    def unlink(self, count):
        """Drop ``count`` children from the root, for pack to collect."""
        for _ in range(count):
            self.children.pop(0)
        self.commit({}, root=True)

    def pack(self):
        """Pack to just before now."""
        self.storage.pack(self.clock.between(self.moment), references)

    def die_in_finish(self):
        """The process dies while writing the commit trailer."""
        death = self.seams.crash(kind='write', nth=2, torn=7)
        txn = make_txn()
        self.storage.tpc_begin(txn, self.tid())
        oid = self.children[0]
        self.storage.store(oid, self.serials[oid], record('dies' * 300), '',
                           txn)
        self.storage.tpc_vote(txn)
        try:
            self.storage.tpc_finish(txn)
        except faults.SimulatedCrash:
            if self.seams.crashed_by is not death:
                raise       # someone else's crash, earlier
        else:
            raise RuntimeError('the simulated crash did not happen')
        self.seams.restart()
        self.storage = None

    def run(self):
        few = 1 if self.short else 3
        self.step('create', self.open)
        self.step('first commit', lambda: self.new_children(5))
        for _ in range(2 if self.short else 8):
            self.step('change', self.change)
        self.step('straddling trailer', self.straddling)
        self.step('big commit', lambda: self.new_children(
            10 if self.short else 40, size=200))
        self.step('abort', self.abort)
        self.step('change', self.change)
        self.step('delete', self.delete_one)
        self.step('undo', self.undo_last)
        self.step('change', lambda: self.change(4))
        self.step('unlink', lambda: self.unlink(3))
        self.step('pack', self.pack)
        for _ in range(few):
            self.step('change', self.change)
        self.step('close', self.close)
        self.step('reopen', self.open)
        self.step('straddling trailer', self.straddling)
        for _ in range(few):
            self.step('change', self.change)
        self.step('process death', self.die_in_finish)
        self.step('recovering open', self.open)
        for _ in range(few + 1):
            self.step('change', self.change)
        self.step('unlink', lambda: self.unlink(10))
        self.step('second pack', self.pack)
        for _ in range(few):
            self.step('change', self.change)
        self.step('close', self.close)



def candidates(steps, k):
    """The snapshots a file may show when the first ``k`` ops of the log
    of a workload's ``steps`` happened, maybe partly, and none after."""
    done = [s for s in steps if s.end <= k]
    base = done[-1].snap if done else ()
    result = [base]
    following = steps[len(done)] if len(done) < len(steps) else None
    if following is not None and following.start < k \
            and following.snap != base:
        result.append(following.snap)
    return result



# -- the worker -------------------------------------------------------------

def _emit(**message):
    sys.stdout.write(json.dumps(message) + '\n')
    sys.stdout.flush()


def _value(tag, pad):
    return tag + '.' * pad


def worker(path, seed, checkpoint_bytes=64 << 10):
    """Commit transactions to ``path`` until killed, reporting each.

    Lines (JSON): ``opening``; ``warning`` (``cut``: a torn tail was cut)
    for each warning on open; ``ready``; ``intent`` (``n`` and ``stores``:
    oid hex -> ``[tag, pad]``, the value being ``tag + '.' * pad``) before
    a transaction begins; ``done`` (``n``, ``tid`` hex) once its
    ``tpc_finish`` returned; ``pack``/``packed`` around a pack.
    """
    from objstore.storages.file import FileStorage, TruncatedTailWarning, log
    # Checkpoints every few commits, so that kills land in them too.
    log.CHECKPOINT_BYTES = checkpoint_bytes
    rng = random.Random(seed)
    _emit(opening=os.getpid())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        storage = FileStorage(path)
    for warning in caught:
        _emit(warning=str(warning.message),
              cut=issubclass(warning.category, TruncatedTailWarning))
    serials = {}
    for i in range(OBJECTS + 1):
        try:
            serials[p64(i)] = storage.load(p64(i))[1]
        except errors.POSKeyError:
            pass
    _emit(ready=storage.lastTransaction().hex())
    n = 0
    while True:
        n += 1
        if p64(0) not in serials:
            chosen = list(range(OBJECTS + 1))
        elif rng.random() < 0.08:
            chosen = list(range(1, OBJECTS + 1))
        else:
            chosen = rng.sample(range(1, OBJECTS + 1), rng.randint(1, 3))
        big = len(chosen) > 3 and rng.random() < 0.7
        stores = {}
        for i in chosen:
            pad = rng.randrange(10000, 60000) if big else rng.randrange(2000)
            stores[p64(i).hex()] = ['%d.%d.%d' % (seed, n, i), pad]
        _emit(intent=n, stores=stores)
        txn = make_txn(description='crash worker %d/%d' % (seed, n))
        storage.tpc_begin(txn)
        for oid_hex, (tag, pad) in stores.items():
            oid = bytes.fromhex(oid_hex)
            refs = [p64(i) for i in range(1, OBJECTS + 1)] \
                if oid == p64(0) else ()
            storage.store(oid, serials.get(oid, z64),
                          record(_value(tag, pad), refs=refs), '', txn)
        storage.tpc_vote(txn)
        if rng.random() < 0.3:
            # Other resources of a two-phase commit vote meanwhile: a kill
            # lands here between the body and the trailer.
            time.sleep(rng.uniform(0, 0.005))
        tid = storage.tpc_finish(txn)
        for oid_hex in stores:
            serials[bytes.fromhex(oid_hex)] = tid
        _emit(done=n, tid=tid.hex())
        if rng.random() < 0.03:
            # To the epoch: every transaction is kept, the file is copied
            # and replaced, so kills land in a pack too.
            _emit(pack=n)
            storage.pack(0, references)
            _emit(packed=n)


# -- the driver -------------------------------------------------------------

class Result:
    """What :func:`run` found: ``failures`` (strings) and counters."""

    def __init__(self):
        self.failures = []
        self.kills = 0
        self.while_opening = 0
        self.transactions = 0
        self.unreported = 0
        self.cut = 0
        self.packs = 0
        self.seconds = 0.0

    def summary(self):
        return ('%d kills (%d aimed at the open), %d transactions verified'
                ' (%d complete but unreported when killed), %d torn tails'
                ' cut, %d packs started, %.1f s: %s' % (
                    self.kills, self.while_opening, self.transactions,
                    self.unreported, self.cut, self.packs, self.seconds,
                    'OK' if not self.failures else
                    '%d FAILURES' % len(self.failures)))


class _Model:
    """The transactions the workers reported, in order."""

    def __init__(self):
        self.txns = []        # [(tid, {oid: value})]
        self.current = {}     # oid -> (value, tid)

    def add(self, tid, values):
        self.txns.append((tid, values))
        for oid, value in values.items():
            self.current[oid] = (value, tid)


def _read_lines(stream, lines, ready, opening):
    for raw in stream:
        if not raw.endswith(b'\n'):
            break   # cut by the kill
        message = json.loads(raw)
        lines.append(message)
        if 'ready' in message:
            ready.set()
        if 'opening' in message:
            opening.set()


def _project_root():
    import objstore
    return os.path.dirname(os.path.dirname(os.path.abspath(objstore.__file__)))


def _spawn(path, seed, stderr):
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [_project_root()] + ([env['PYTHONPATH']] if env.get('PYTHONPATH')
                             else []))
    return subprocess.Popen(
        [sys.executable, '-m', 'objstore.testing.crash', '--worker', path,
         '--seed', str(seed)],
        stdout=subprocess.PIPE, stderr=stderr, env=env)


def _one_round(path, seed, rng, max_delay, result):
    """Start a worker, kill it, return its complete output lines."""
    stderr_path = path + '.worker-stderr'
    with open(stderr_path, 'wb') as stderr:
        proc = _spawn(path, seed, stderr)
    lines = []
    ready = threading.Event()
    opening = threading.Event()
    reader = threading.Thread(target=_read_lines,
                              args=(proc.stdout, lines, ready, opening))
    reader.start()
    try:
        if rng.random() < 0.25:
            # While it opens the file and recovers what the last kill left.
            result.while_opening += 1
            opening.wait(30)
            time.sleep(rng.uniform(0, 0.01))
        else:
            ready.wait(30)
            time.sleep(rng.uniform(0, max_delay))
        early = proc.poll()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        reader.join()
        proc.stdout.close()
    result.kills += 1
    if early is not None:
        with open(stderr_path, 'rb') as f:
            tail = f.read()[-3000:].decode('utf-8', 'replace')
        result.failures.append('worker %d exited by itself (status %s)'
                               ' before the kill:\n%s' % (seed, early, tail))
    return lines


def _absorb(lines, model, result):
    """Add what a worker reported to ``model``; return the intent of the
    transaction it was committing when killed (``(n, values)``) or None."""
    intents = {}
    pending = None
    for message in lines:
        if 'intent' in message:
            values = {bytes.fromhex(oid): _value(tag, pad)
                      for oid, (tag, pad) in message['stores'].items()}
            intents[message['intent']] = values
            pending = (message['intent'], values)
        elif 'done' in message:
            model.add(bytes.fromhex(message['tid']),
                      intents.pop(message['done']))
            pending = None
        elif 'pack' in message:
            result.packs += 1
        elif 'warning' in message:
            if message['cut']:
                result.cut += 1
            else:
                result.failures.append('the worker was warned on open: %s'
                                       % message['warning'])
    return pending


def verify(path, model, pending, read_only, result, new=()):
    """Open ``path`` and compare it with ``model``; adopt ``pending`` if
    the file holds it whole. Appends failures to ``result``."""
    from objstore.storages.file import FileStorage, TruncatedTailWarning
    failures = result.failures
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        try:
            storage = FileStorage(path, read_only=read_only)
        except Exception as exc:
            failures.append('opening after the kill failed: %r' % (exc,))
            return
    for warning in caught:
        if issubclass(warning.category, TruncatedTailWarning):
            result.cut += 1
        else:
            failures.append('unexpected warning on open: %s'
                            % (warning.message,))
    try:
        _compare(storage, model, pending, result, new)
    except Exception as exc:
        failures.append('reading after the kill failed: %r' % (exc,))
    finally:
        storage.close()


def _compare(storage, model, pending, result, new):
    failures = result.failures
    found = [(txn.tid, {r.oid: value_of(r.data) for r in txn})
             for txn in storage.iterator()]
    expected = model.txns
    if len(found) < len(expected):
        failures.append('%d reported transactions are missing (file has %d,'
                        ' %d were reported); first missing: %s'
                        % (len(expected) - len(found), len(found),
                           len(expected), expected[len(found)][0].hex()))
    for i, (tid, values) in enumerate(found):
        if i < len(expected):
            if (tid, values) != expected[i]:
                failures.append('transaction %d is %s %r, reported %s %r'
                                % (i, tid.hex(), values, expected[i][0].hex(),
                                   expected[i][1]))
                return
        elif i == len(expected) and pending is not None:
            if values != pending[1]:
                failures.append('the unreported last transaction %s holds %r,'
                                ' not what the worker was writing: %r'
                                % (tid.hex(), values, pending[1]))
                return
            model.add(tid, values)
            result.unreported += 1
        else:
            failures.append('transaction %s was never written by a worker'
                            % tid.hex())
            return
    for oid, (value, tid) in model.current.items():
        data, serial = storage.load(oid)
        if (value_of(data), serial) != (value, tid):
            failures.append('load(%s) is %r from %s, expected %r from %s'
                            % (errors.oid_repr(oid), value_of(data),
                               serial.hex(), value, tid.hex()))
    for tid, values in new:
        for oid, value in values.items():
            if value_of(storage.loadSerial(oid, tid)) != value:
                failures.append('loadSerial(%s, %s) is wrong'
                                % (errors.oid_repr(oid), tid.hex()))
    result.transactions = len(model.txns)


def run(directory, kills, seed=None, max_delay=0.4, log=None):
    """Kill a committing worker ``kills`` times on one file in
    ``directory``; return a :class:`Result`."""
    if seed is None:
        seed = random.randrange(1 << 30)
    log = log or (lambda text: None)
    rng = random.Random(seed)
    path = os.path.join(directory, 'crash.fs')
    result = Result()
    model = _Model()
    started = time.monotonic()
    for round_number in range(kills):
        before = len(model.txns)
        lines = _one_round(path, seed + round_number, rng, max_delay, result)
        pending = _absorb(lines, model, result)
        new = model.txns[before:]
        read_only = rng.random() < 0.3
        if result.failures:
            break
        verify(path, model, pending, read_only, result, new)
        log('round %d: %d reported, %s, checked %s'
            % (round_number + 1, len(new),
               'killed committing' if pending else 'killed between commits',
               'read-only' if read_only else 'as writer'))
        if result.failures:
            break
    if not result.failures:
        verify(path, model, None, False, result)
    result.seconds = time.monotonic() - started
    if result.failures:
        result.failures.insert(0, 'seed %d, file %s' % (seed, path))
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m objstore.testing.crash',
        description='Kill a process committing to a FileStorage again and'
        ' again (SIGKILL) and check the file after each kill.')
    parser.add_argument('--kills', type=int, default=100,
                        help='how many times to kill the worker')
    parser.add_argument('--seed', type=int, default=None)
    parser.add_argument('--max-delay', type=float, default=0.4,
                        help='longest time a worker runs before the kill (s)')
    parser.add_argument('--dir', default=None,
                        help='where to keep the file (default: a temporary'
                        ' directory, removed on success)')
    parser.add_argument('--verbose', '-v', action='store_true')
    parser.add_argument('--worker', metavar='PATH', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.seed or 0)
        return 0
    log = print if args.verbose else None
    if args.dir:
        os.makedirs(args.dir, exist_ok=True)
        result = run(args.dir, args.kills, args.seed, args.max_delay, log)
    else:
        with tempfile.TemporaryDirectory(prefix='objstore-crash-') as tmp:
            result = run(tmp, args.kills, args.seed, args.max_delay, log)
            if result.failures:
                keep = tempfile.mkdtemp(prefix='objstore-crash-failed-')
                for name in os.listdir(tmp):
                    os.replace(os.path.join(tmp, name),
                               os.path.join(keep, name))
                result.failures.append('files kept in %s' % keep)
    for failure in result.failures:
        print('FAIL:', failure)
    print(result.summary())
    return 1 if result.failures else 0


if __name__ == '__main__':
    sys.exit(main())
