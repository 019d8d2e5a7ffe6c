"""A PMemStorage workload in steps, run under ``pmemio`` seams.

:class:`PMemWorkload` creates a small pool and works on it: the first
commit of the new pool, small changes (each frees the revisions it
supersedes), changes while an open snapshot keeps old revisions, the
release that frees them, big commits that grow the file, an abort after
the vote, a pack that deletes what the root no longer reaches, a clean
close and reopen, and (``death``) a process death at a commit point
followed by the open that recovers from it. It records, for each step,
the ops of the seam log it made (:class:`Step`) and what the pool may
show after it, so :func:`candidates` can say what a crash anywhere in the
log may leave (see :mod:`objstore.testing.pmem_recovered`).
"""
import os
import random
import time

from objstore.serialize import references
from objstore.storages.base import z64
from objstore.testing.faults import SimulatedCrash
from objstore.testing.helpers import commit, make_txn
from objstore.testing.pmem_recovered import (
    EMPTY, NOT_A_POOL, Pending, PoolState, node_record, root_record,
    unreachable)

__all__ = ['Step', 'PMemWorkload', 'candidates', 'crash_candidates']

_AS_BEFORE = object()


class Step:
    """One step: log ops ``[start, end)``; ``before`` and ``after`` the
    states a power loss may leave before and after it (lists: after a
    process death the transaction in flight may or may not have made it,
    and until a later commit is durable a power loss may still undo
    it); ``base`` the state the storage showed before it (None when no
    process had the pool open); ``changes`` what its transaction changes
    (oid -> data or None), None if it commits nothing; ``dirty``: whether
    the pool's flag says "not closed" throughout the step (None: it
    changes during the step), and ``dirty_after`` once it is done."""

    def __init__(self, name, start, before, base, changes, dirty):
        self.name = name
        self.start = start
        self.end = None
        self.before = before
        self.base = base
        self.after = None
        self.changes = changes
        self.dirty = dirty
        self.dirty_after = dirty

    def __repr__(self):
        return '<%s ops %s-%s>' % (self.name, self.start, self.end)


def candidates(steps, k):
    """``(states, dirty)``: what a pool may show when the first ``k`` ops
    of the log of a completed workload's ``steps`` took effect (the last
    maybe partly) and none after, and what its flag must say then."""
    done = [s for s in steps if s.end <= k]
    states = list(done[-1].after) if done else [NOT_A_POOL]
    dirty = done[-1].dirty_after if done else None
    following = steps[len(done)] if len(done) < len(steps) else None
    if following is not None and following.start < k:
        states += [s for s in following.after if s not in states]
        dirty = following.dirty
    return states, dirty


def crash_candidates(step):
    """``(states, dirty)`` after a process death inside ``step`` (not
    completed). The page cache keeps every write of the dead process, so
    the pool shows what the storage showed before the step, or the
    transaction in flight on top of it."""
    if step.base is None:
        return list(step.before), step.dirty
    states = [step.base]
    if step.name == 'create':
        states.append(EMPTY)
    elif step.changes is not None:
        states.append(Pending(step.base, step.changes))
    return states, step.dirty


class PMemWorkload:
    """See the module docstring. ``seams`` is the installed
    :class:`~objstore.testing.pmem_faults.PMemSeams`; ``short`` does fewer
    small commits; ``death`` includes the process death and recovery.
    After :meth:`run` (or a death it did not plan, which it lets through)
    ``steps`` holds the completed steps and ``in_flight`` the step it was
    in."""

    def __init__(self, directory, seams, short=False, death=True,
                 pool_size=None):
        from objstore.storages.pmem import format as pmem_format
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, 'data.pool')
        self.seams = seams
        self.short = short
        self.death = death
        self.pool_size = pool_size or pmem_format.MIN_POOL_SIZE
        self.rng = random.Random(20261201)
        self.storage = None
        self.steps = []
        self.in_flight = None
        self.states = [NOT_A_POOL]
        self.seen = NOT_A_POOL
        self.dirty = None
        self.children = []
        self.oids = set()
        self.snapshot = None

    @property
    def state(self):
        """The state the storage shows now."""
        if not isinstance(self.seen, PoolState):
            raise RuntimeError('no storage shows the pool now')
        return self.seen

    def step(self, name, action, changes=None, dirty=_AS_BEFORE):
        """Run ``action`` as step ``name``; ``dirty``: what the flag says
        throughout it (default: what it said before; None: it changes)."""
        step = Step(name, self.seams.mark(), list(self.states), self.seen,
                    changes, self.dirty if dirty is _AS_BEFORE else dirty)
        self.in_flight = step
        action()
        step.end = self.seams.mark()
        step.after = list(self.states)
        step.dirty_after = self.dirty
        self.steps.append(step)
        self.in_flight = None

    # -- actions ------------------------------------------------------------

    def create(self):
        from objstore.storages.pmem import PMemStorage
        self.storage = PMemStorage(self.path, create=True,
                                   pool_size=self.pool_size)
        self.states = [EMPTY]
        self.seen = EMPTY
        self.dirty = True

    def open(self):
        from objstore.storages.pmem import PMemStorage
        self.storage = PMemStorage(self.path)
        if self.seen is None:
            # After a process death: the pool says whether the
            # transaction in flight made it. Until a later commit is
            # durable, a power loss may still take it back (it was never
            # acknowledged), so both stay possible.
            last = self.storage.lastTransaction()
            resolved = [s.resolve(last) if isinstance(s, Pending) else s
                        for s in self.states]
            known = [s for s in resolved if isinstance(s, PoolState)
                     and s.last == last]
            if len(known) != 1:
                raise RuntimeError('after the death the pool shows tid %s,'
                                   ' none of %r' % (last.hex(), self.states))
            self.seen = known[0]
            self.states = [s for s in resolved if isinstance(s, PoolState)]
        self.dirty = True

    def close(self):
        self.storage.close()
        self.storage = None
        self.dirty = False

    def commit(self, changes, stores=None):
        """Commit ``changes`` (oid -> data); the new state is the only one."""
        state = self.state
        if stores is None:
            stores = {oid: (state.objects[oid][1] if oid in state.objects
                            else z64, data) for oid, data in changes.items()}
        tid = commit(self.storage, stores,
                     description='workload %d' % len(self.steps))
        self.seen = state.committed(tid, changes)
        self.states = [self.seen]
        self.oids.update(changes)
        return tid

    def plan(self, name, changes):
        """A commit of ``changes`` as a step."""
        self.step(name, lambda: self.commit(changes), changes)

    def root_changes(self, value):
        return {z64: root_record(value, self.children)}

    def new_children(self, name, count, pad):
        oids = [self.storage.new_oid() for _ in range(count)]
        self.children.extend(oids)
        changes = {oid: node_record('new %s' % name, pad) for oid in oids}
        changes.update(self.root_changes(name))
        self.plan(name, changes)

    def change(self, name='change', count=None):
        count = count or self.rng.randint(1, 3)
        chosen = self.rng.sample(self.children, min(count,
                                                    len(self.children)))
        changes = {oid: node_record('%s %d' % (name, len(self.steps)),
                                    self.rng.randrange(2000))
                   for oid in chosen}
        if self.rng.random() < 0.25:
            changes.update(self.root_changes('%s %d' % (name,
                                                         len(self.steps))))
        self.plan(name, changes)

    def hold_snapshot(self):
        self.snapshot = self.storage.new_instance()
        self.snapshot.poll_invalidations()
        self.snapshot.load(z64)

    def release_snapshot(self):
        self.snapshot.release()
        self.snapshot = None

    def abort(self):
        txn = make_txn()
        self.storage.tpc_begin(txn)
        self.storage.store(self.storage.new_oid(), z64,
                           node_record('aborted', 3000), '', txn)
        self.storage.tpc_vote(txn)
        self.storage.tpc_abort(txn)

    def pack(self, gone):
        self.storage.pack(time.time() + 1, references)
        last = self.storage.lastTransaction()
        self.seen = (self.state.committed(last, gone)
                     if last != self.state.last else
                     PoolState(last, {oid: rev for oid, rev
                                      in self.state.objects.items()
                                      if oid not in gone}))
        self.states = [self.seen]

    def die_at_commit_point(self, changes):
        """The process dies at the flush that would make the commit of
        ``changes`` durable (its new root is in the map, not flushed)."""
        from objstore.storages.pmem import format as pmem_format
        death = self.seams.crash(
            kind='flush', match=lambda op: pmem_format.SLOT_OFFSETS[0]
            <= op.offset < pmem_format.HEADER_SIZE)
        before = self.state
        try:
            self.commit(changes)
        except SimulatedCrash:
            if self.seams.crashed_by is not death:
                raise   # a death the caller planned, earlier
        else:
            raise RuntimeError('the planned death did not happen')
        self.seams.restart()
        self.storage = None
        self.seen = None
        self.states = [before, Pending(before, changes)]

    def run(self):
        few = 1 if self.short else 3
        self.step('create', self.create, dirty=None)
        self.new_children('first commit', 4, 300)
        for _ in range(2 if self.short else 5):
            self.change()
        self.step('hold a snapshot', self.hold_snapshot)
        for _ in range(few):
            self.change('change while held')
        self.step('release the snapshot', self.release_snapshot)
        self.new_children('grow', 4, 20000)
        self.step('abort', self.abort)
        self.change('change after grow', 4)
        self.children[:2] = []
        self.plan('unlink', self.root_changes('unlinked'))
        gone = unreachable(self.state)
        self.step('pack', lambda: self.pack(gone), gone)
        for _ in range(few):
            self.change()
        self.step('close', self.close, dirty=None)
        self.step('open', self.open, dirty=None)
        self.new_children('grow again', 3, 40000)
        for _ in range(few):
            self.change()
        if self.death:
            # Every child: the root that never became durable supersedes
            # all the records of the one before it, so the commits after
            # the recovering open have that space to reuse.
            changes = {oid: node_record('dies at the commit point', 500)
                       for oid in self.children}
            self.step('process death',
                      lambda: self.die_at_commit_point(changes), changes)
            self.step('recovering open', self.open, dirty=True)
            for _ in range(few):
                self.change()
        self.step('close', self.close, dirty=None)
