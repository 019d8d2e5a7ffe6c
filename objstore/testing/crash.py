"""A driver that kills a process committing to a FileStorage again and
again (what a recovered file must show is in
:mod:`objstore.testing.recovered`).

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
from objstore.storages.base import p64, z64
from objstore.testing.helpers import make_txn, record, value_of

#: How many objects the worker changes (besides the root, oid 0).
OBJECTS = 8


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


def _read_lines(stream, lines, events):
    for raw in stream:
        if not raw.endswith(b'\n'):
            break   # cut by the kill
        message = json.loads(raw)
        lines.append(message)
        for key, event in events.items():
            if key in message:
                event.set()


def _spawn(module, args, stderr):
    import objstore
    root = os.path.dirname(os.path.dirname(os.path.abspath(objstore.__file__)))
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [root] + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
    return subprocess.Popen(
        [sys.executable, '-m', module, '--worker'] + list(args),
        stdout=subprocess.PIPE, stderr=stderr, env=env)


def kill_one_worker(module, path, seed, args, rng, max_delay, result,
                    opening_share):
    """Start ``python -m module --worker *args``, SIGKILL it (in
    ``opening_share`` of the rounds while it opens, else once it is ready
    plus up to ``max_delay`` seconds) and return its complete output lines.
    Counts the kill in ``result``; a worker that exited by itself is a
    failure there."""
    stderr_path = path + '.worker-stderr'
    with open(stderr_path, 'wb') as stderr:
        proc = _spawn(module, args, stderr)
    lines = []
    events = {'ready': threading.Event(), 'opening': threading.Event()}
    reader = threading.Thread(target=_read_lines,
                              args=(proc.stdout, lines, events))
    reader.start()
    try:
        if rng.random() < opening_share:
            # While it opens and recovers what the last kill left.
            result.while_opening += 1
            events['opening'].wait(30)
            time.sleep(rng.uniform(0, 0.01))
        else:
            events['ready'].wait(30)
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
        lines = kill_one_worker(
            'objstore.testing.crash', path, seed + round_number,
            [path, '--seed', str(seed + round_number)], rng, max_delay,
            result, 0.25)
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
