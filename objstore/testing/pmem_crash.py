"""A driver that kills a process committing to a PMemStorage pool with
SIGKILL again and again, checking the pool after each kill.

The driver (:func:`run`, or ``python -m objstore.testing.pmem_crash
--kills N``) starts a worker process that commits transactions in a loop
on one pool (small, so that it grows) and prints, flushed, what each
transaction will change before it begins and its tid once ``tpc_finish``
returned; now and then it holds a snapshot over a few commits (so old
revisions are kept, then freed), leaves garbage behind and packs it away.
The driver kills the worker at a random moment (while it commits, or while
it opens and recovers the pool), then checks with
:func:`objstore.testing.pmem_recovered.recover`: every reported
transaction is there, nothing partial is, the one in flight is there
whole or not at all, the pool commits and opens through ``objstore.DB``.
The next worker goes on with the same pool, so recovery runs again and
again. With ``readers`` (``--readers``), a read-only storage of the
driver's process now and then holds a snapshot across a few rounds and
must read it unchanged after each kill and each check. Exit status 1 on
any failure.
"""
import argparse
import json
import os
import random
import sys
import tempfile
import time

from objstore import errors
from objstore.serialize import references
from objstore.storages.base import p64, z64
from objstore.testing.crash import kill_one_worker
from objstore.testing.helpers import commit
from objstore.testing.pmem_recovered import (
    EMPTY, NOT_A_POOL, Pending, PoolState, RecoveryProblem, describe,
    matching, node_record, read_state, recover, root_record, unreachable)

#: How many objects the worker changes (besides the root, oid 0).
OBJECTS = 8


# -- the worker ----------------------------------------------------------

def _emit(**message):
    sys.stdout.write(json.dumps(message) + '\n')
    sys.stdout.flush()


def _data(oid, spec):
    """The record a worker's ``[tag, pad]`` stands for (None: deleted)."""
    if spec is None:
        return None
    tag, pad = spec
    if oid == z64:
        return root_record(tag, [p64(i) for i in range(1, OBJECTS + 1)])
    return node_record(tag, pad)


def worker(path, seed, pool_size):
    """Commit to the pool at ``path`` until killed, reporting each step.

    Lines (JSON): ``opening``; ``ready``; ``intent`` (``n``, ``stores``:
    oid hex -> ``[tag, pad]``) before a transaction begins; ``done``
    (``n``, ``tid`` hex) once its ``tpc_finish`` returned; ``pack`` (``n``)
    before a pack, ``done`` after it.
    """
    from objstore.storages.pmem import PMemStorage
    rng = random.Random(seed)
    _emit(opening=os.getpid())
    storage = PMemStorage(path, pool_size=pool_size)
    serials = {}
    for i in range(OBJECTS + 1):
        try:
            serials[p64(i)] = storage.load(p64(i))[1]
        except errors.POSKeyError:
            pass
    _emit(ready=storage.lastTransaction().hex())
    held = []
    n = 0
    while True:
        n += 1
        if rng.random() < 0.05:
            _emit(pack=n)
            storage.pack(time.time() + 1, references)
            _emit(done=n, tid=storage.lastTransaction().hex())
            continue
        if rng.random() < 0.1:
            # A snapshot read by a connection keeps old revisions alive
            # for a few commits; then they are freed.
            instance = storage.new_instance()
            instance.poll_invalidations()
            held.append((instance, n + rng.randint(1, 5)))
        for instance, until in list(held):
            if n >= until:
                instance.release()
                held.remove((instance, until))
        missing = [i for i in range(OBJECTS + 1) if p64(i) not in serials]
        if missing:
            chosen = missing + ([0] if 0 not in missing else [])
        elif rng.random() < 0.08:
            chosen = list(range(1, OBJECTS + 1))
        else:
            chosen = rng.sample(range(1, OBJECTS + 1), rng.randint(1, 3))
        big = len(chosen) > 3 and rng.random() < 0.7
        stores = {}
        for i in chosen:
            pad = rng.randrange(5000, 40000) if big else rng.randrange(2000)
            stores[p64(i).hex()] = ['%d.%d.%d' % (seed, n, i), pad]
        if rng.random() < 0.2:
            # Garbage: an object nothing refers to, for pack to delete.
            stores[storage.new_oid().hex()] = ['garbage %d' % n, 100]
        _emit(intent=n, stores=stores)
        tid = commit(storage, {
            bytes.fromhex(h): (serials.get(bytes.fromhex(h), z64),
                               _data(bytes.fromhex(h), spec))
            for h, spec in stores.items()},
            description='pmem crash worker %d/%d' % (seed, n))
        for h in stores:
            serials[bytes.fromhex(h)] = tid
        _emit(done=n, tid=tid.hex())


# -- the driver ------------------------------------------------------------

class Result:
    """What :func:`run` found: ``failures`` (strings) and counters."""

    def __init__(self):
        self.failures = []
        self.kills = 0
        self.while_opening = 0
        self.transactions = 0
        self.unreported = 0
        self.packs = 0
        self.readers = 0
        self.seconds = 0.0

    def summary(self):
        return ('%d kills (%d aimed at the open), %d transactions reported'
                ' (%d more found complete but unreported), %d packs started,'
                ' %d snapshots held across kills, %.1f s: %s' % (
                    self.kills, self.while_opening, self.transactions,
                    self.unreported, self.packs, self.readers, self.seconds,
                    'OK' if not self.failures else
                    '%d FAILURES' % len(self.failures)))


class _Driver:
    """The driver's model: the acknowledged state and every oid seen."""

    def __init__(self):
        self.state = NOT_A_POOL
        self.oids = set()

    def absorb(self, lines, result):
        """Follow a worker's reports; return the changes of the
        transaction it was in when killed, or None."""
        intents = {}
        pending = None
        for message in lines:
            if 'ready' in message and self.state is NOT_A_POOL:
                self.state = PoolState()
            if 'intent' in message:
                changes = {}
                for h, spec in message['stores'].items():
                    oid = bytes.fromhex(h)
                    changes[oid] = _data(oid, spec)
                    self.oids.add(oid)
                intents[message['intent']] = pending = changes
            elif 'pack' in message:
                result.packs += 1
                intents[message['pack']] = pending = unreachable(self.state)
            elif 'done' in message:
                tid = bytes.fromhex(message['tid'])
                changes = intents.pop(message['done'])
                self.state = Pending(self.state, changes).resolve(tid) \
                    if tid != self.state.last else PoolState(
                        tid, {oid: rev for oid, rev
                              in self.state.objects.items()
                              if oid not in changes})
                result.transactions += 1
                pending = None
        return pending

    def check(self, path, pending, opened, pool_size, read_only_first,
              result):
        """Check the pool; adopt what it shows. ``opened``: the worker
        had marked the pool as open (said ``ready``). Appends failures."""
        before = self.state
        states = [before]
        if before is NOT_A_POOL:
            states.append(EMPTY)    # killed while creating the pool
        elif pending is not None:
            states.append(Pending(before, pending))
        try:
            if read_only_first and before is not NOT_A_POOL:
                self._check_read_only(path, states)
            # A worker that said it was ready had marked the pool open;
            # one killed before may have, or not (the last check closed
            # the pool cleanly).
            dirty = True if opened else None
            shown, state = recover(path, states, self.oids, dirty,
                                   pool_size=pool_size)
        except RecoveryProblem as exc:
            result.failures.append(str(exc))
            return
        if pending is not None and before is not NOT_A_POOL \
                and shown.last != before.last:
            result.unreported += 1      # the one in flight made it, whole
        self.oids.update(state.objects)
        self.state = state

    def _check_read_only(self, path, states):
        from objstore.storages.pmem import PMemStorage
        storage = PMemStorage(path, read_only=True)
        try:
            found = read_state(storage, self.oids)
            if matching(found, states) is None:
                raise RecoveryProblem('read-only open: wrong state: %s'
                                      % describe(found, states))
        finally:
            storage.close()


class _Reader:
    """A read-only storage of the driver's process holding one snapshot
    across the next rounds: whatever the writers (killed or not) do, the
    snapshot must read the same, since the writers keep what a reader's
    snapshot reaches."""

    def __init__(self, path, state, oids, rounds):
        from objstore.storages.pmem import PMemStorage
        self.storage = PMemStorage(path, read_only=True)
        self.instance = self.storage.new_instance()
        self.instance.poll_invalidations()
        self.oids = set(oids)
        self.state = read_state(self.instance, self.oids, fresh=False)
        self.rounds = rounds
        if self.state != state:
            self.close()
            raise RecoveryProblem('a new reader shows %s' % describe(
                self.state, [state]))

    def check(self, when):
        try:
            found = read_state(self.instance, self.oids, fresh=False)
        except errors.ObjstoreError as exc:
            raise RecoveryProblem('a reader held a snapshot over %s; %s'
                                  ' reading it raised %r'
                                  % (self.state, when, exc))
        if found != self.state:
            raise RecoveryProblem(
                'a reader held a snapshot over %s; %s it reads %s'
                % (self.state, when, describe(found, [self.state])))

    def close(self):
        self.instance.release()
        self.storage.close()


def run(directory, kills, seed=None, max_delay=0.3, pool_size=64 << 10,
        log=None, readers=0.0):
    """Kill a committing worker ``kills`` times on one pool in
    ``directory``; return a :class:`Result`. With ``readers`` (a
    chance per round), a read-only storage of this process holds a
    snapshot across a few rounds, and must read it unchanged after each
    kill and each check."""
    if seed is None:
        seed = random.randrange(1 << 30)
    log = log or (lambda text: None)
    rng = random.Random(seed)
    path = os.path.join(directory, 'crash.pool')
    result = Result()
    driver = _Driver()
    reader = None
    started = time.monotonic()
    try:
        for round_number in range(kills):
            lines = kill_one_worker(
                'objstore.testing.pmem_crash', path, seed + round_number,
                [path, '--seed', str(seed + round_number),
                 '--pool-size', str(pool_size)],
                rng, max_delay, result, 0.2)
            if result.failures:
                break
            pending = driver.absorb(lines, result)
            opened = any('ready' in message for message in lines)
            try:
                if reader is not None:
                    reader.check('after the kill')
            except RecoveryProblem as exc:
                result.failures.append(str(exc))
                break
            driver.check(path, pending, opened, pool_size,
                         rng.random() < 0.3, result)
            try:
                if reader is not None:
                    reader.check('after the check of the pool')
                    reader.rounds -= 1
                    if not reader.rounds:
                        reader.close()
                        reader = None
                if reader is None and not result.failures \
                        and rng.random() < readers:
                    reader = _Reader(path, driver.state, driver.oids,
                                     rng.randint(1, 3))
                    result.readers += 1
            except RecoveryProblem as exc:
                result.failures.append(str(exc))
            log('round %d: %d lines, %s, last tid %s%s' % (
                round_number + 1, len(lines),
                'killed committing' if pending else 'killed between commits',
                getattr(driver.state, 'last', z64).hex(),
                ', a reader holds %s' % reader.state.last.hex()
                if reader is not None else ''))
            if result.failures:
                break
    finally:
        if reader is not None:
            reader.close()
    result.seconds = time.monotonic() - started
    if result.failures:
        result.failures.insert(0, 'seed %d, pool %s' % (seed, path))
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m objstore.testing.pmem_crash',
        description='Kill a process committing to a PMemStorage pool again'
        ' and again (SIGKILL) and check the pool after each kill.')
    parser.add_argument('--kills', type=int, default=100)
    parser.add_argument('--seed', type=int, default=None)
    parser.add_argument('--max-delay', type=float, default=0.3,
                        help='longest time a worker runs before the kill (s)')
    parser.add_argument('--pool-size', type=int, default=64 << 10)
    parser.add_argument('--readers', type=float, default=0.0,
                        help='chance per round that a read-only storage'
                        ' starts holding a snapshot across the next kills')
    parser.add_argument('--dir', default=None,
                        help='where to keep the pool (default: a temporary'
                        ' directory, kept only on failure)')
    parser.add_argument('--verbose', '-v', action='store_true')
    parser.add_argument('--worker', metavar='PATH', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.seed or 0, args.pool_size)
        return 0
    log = print if args.verbose else None
    if args.dir:
        os.makedirs(args.dir, exist_ok=True)
        result = run(args.dir, args.kills, args.seed, args.max_delay,
                     args.pool_size, log, args.readers)
    else:
        with tempfile.TemporaryDirectory(prefix='objstore-pmem-crash-') as tmp:
            result = run(tmp, args.kills, args.seed, args.max_delay,
                         args.pool_size, log, args.readers)
            if result.failures:
                keep = tempfile.mkdtemp(prefix='objstore-pmem-crash-failed-')
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
