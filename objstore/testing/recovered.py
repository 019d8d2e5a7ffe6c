"""What a FileStorage must show after a crash, and a workload to crash.

:func:`snapshot` and :func:`check_reads` state what every recovered file
must satisfy: its transactions, as the iterator shows them, are the whole
truth, and every load, ``loadBefore``, ``loadSerial`` and ``history``
agrees with them. :func:`check_recovered` applies them to a file a crash
left, then commits and reopens. :class:`Workload` is a FileStorage
workload in steps, run under :mod:`objstore.testing.faults` seams by the
process-death and power-loss tests.
"""
import os
import random
import warnings

from objstore import errors
from objstore.serialize import references
from objstore.storages.base import maxtid, z64
from objstore.storages.file import format as fmt
from objstore.testing import faults
from objstore.testing.helpers import (
    Clock, after, commit, make_txn, record)


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


def check_recovered(path, expected, oids):
    """Open the file a crash left at ``path``: it must open (a warning
    about a cut tail is fine, no other), show one of the ``expected``
    snapshots, read consistently (``oids``: also read these), hand out a
    fresh oid, take a new commit, and reopen to the same state. Returns
    the problem, or None."""
    from objstore.storages.file import FileStorage, TruncatedTailWarning
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            storage = FileStorage(path)
        others = [w for w in caught
                  if not issubclass(w.category, TruncatedTailWarning)]
        try:
            if others:
                return 'unexpected warnings: %s' % [str(w.message)
                                                     for w in others]
            snap = snapshot(storage)
            if snap not in expected:
                return 'wrong state: %s' % describe_difference(snap, expected)
            problems = check_reads(storage, snap, oids)
            if problems:
                return 'reads disagree: %s' % problems[:3]
            oid = storage.new_oid()
            if oid in revisions_of(snap):
                return 'new_oid() returned %r, an oid in use' % (oid,)
            tid = commit(storage, {oid: (z64, record('after'))})
            grown = snapshot(storage)
            if grown[:-1] != snap or grown[-1][0] != tid:
                return 'the commit after recovery went wrong'
        finally:
            storage.close()
        storage = FileStorage(path)
        try:
            if snapshot(storage) != grown:
                return 'reopening after the new commit lost something'
            problems = check_reads(storage, grown, oids)
            if problems:
                return 'reads after reopen disagree: %s' % problems[:3]
        finally:
            storage.close()
    except (errors.ObjstoreError, OSError) as exc:
        return 'raised %r' % (exc,)
    return None
