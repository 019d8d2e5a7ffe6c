"""A Hypothesis state machine that checks a storage against a small model.

:class:`StorageMachine` (a ``hypothesis.stateful.RuleBasedStateMachine``)
commits random transactions (new objects, changes, deletions, stores with
stale serials that must raise ``ConflictError``, conflicts a class
resolves, undos), aborts some after storing, packs to a time between two
transactions (with or without GC), and reads in every way; after every step the storage must
agree with :class:`Model`. A storage's test subclasses it with a
``make_storage`` (and, for storages that keep data, a ``reopen`` rule).

The model is in :mod:`objstore.testing.model`.
"""
import hypothesis.strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from objstore import errors
from objstore.serialize import references
from objstore.storages.base import maxtid, time_tid, z64
from objstore.testing.helpers import Clock, Counter, Item, after, make_txn
from objstore.testing.model import Model, Rec, decode


def _outcome(function, *args):
    try:
        result = function(*args)
    except errors.POSKeyError:
        return 'POSKeyError'
    if isinstance(result, tuple) and result and isinstance(result[0],
                                                           bytes):
        return (decode(result[0]),) + result[1:]
    if isinstance(result, bytes):
        return decode(result)
    return result


def _expected(value):
    if isinstance(value, tuple) and value and isinstance(value[0], Rec):
        return (value[0].key(),) + value[1:]
    if isinstance(value, Rec):
        return value.key()
    return value


class StorageMachine(RuleBasedStateMachine):
    """Random commits, aborts, packs and reads against :class:`Model`.

    Subclasses define :meth:`make_storage`; ``self.storage`` is the
    storage under test. Tids are forced, ten seconds apart, so that pack
    times fall between them.
    """

    def __init__(self):
        super().__init__()
        self.model = Model()
        self.clock = Clock(1600000000)
        self.moment = 0
        #: Oids this storage instance returned from new_oid.
        self.handed_out = set()
        #: Oids that once held records new_oid may return again (a
        #: subclass sets it when the storage lost what reserved them).
        self.reusable = set()
        self.storage = self.make_storage()

    def make_storage(self):
        raise NotImplementedError

    def teardown(self):
        try:
            self.check_everything()
        finally:
            self.storage.close()

    # -- committing -------------------------------------------------------

    def next_tid(self):
        self.moment += 1
        return self.clock.tid(self.moment)

    def new_oid(self):
        """``storage.new_oid()``, checked: never z64, never an oid this
        instance returned before, never one that ever held a record."""
        oid = self.storage.new_oid()
        assert oid != z64 and oid not in self.handed_out \
            and (oid not in self.model.ever or oid in self.reusable), (
                'new_oid() returned %r again' % (oid,))
        self.reusable.discard(oid)
        self.handed_out.add(oid)
        self.model.handed_out.add(oid)
        return oid

    def commit(self, stores, deletes=()):
        """Commit ``stores`` (oid -> (serial, Rec)) and ``deletes`` (oid ->
        serial); the model follows. Returns the tid."""
        txn = make_txn(description='moment %d' % (self.moment + 1))
        self.storage.tpc_begin(txn, self.next_tid())
        try:
            for oid, (serial, rec) in stores.items():
                self.storage.store(oid, serial, rec.data(), '', txn)
            for oid, serial in deletes:
                self.storage.deleteObject(oid, serial, txn)
            resolved = self.storage.tpc_vote(txn)
            tid = self.storage.tpc_finish(txn)
        except BaseException:
            self.storage.tpc_abort(txn)
            raise
        self.model.commit(tid, [(oid, rec) for oid, (_, rec) in stores.items()]
                          + [(oid, None) for oid, _ in deletes])
        return tid, resolved or []

    def serial(self, oid):
        current = self.model.current(oid)
        return current[0] if current else z64

    def root_rec(self, refs):
        return Rec(Item, 'root', refs)

    @rule(data=st.data(), count=st.integers(1, 3), link=st.booleans())
    def create(self, data, count, link):
        """New objects, linked from the root or left unreachable."""
        stores = {}
        new = []
        for _ in range(count):
            oid = self.new_oid()
            if data.draw(st.booleans(), label='counter'):
                rec = Rec(Counter, data.draw(st.integers(0, 100)))
            else:
                rec = Rec(Item, data.draw(st.integers(0, 9)))
            stores[oid] = (z64, rec)
            new.append(oid)
        root = self.model.current(z64)
        if root is None or root[1] is None:
            stores[z64] = (self.serial(z64),
                           self.root_rec(new if link else ()))
        elif link:
            stores[z64] = (root[0], self.root_rec(root[1].refs + tuple(new)))
        self.commit(stores)

    @precondition(lambda self: self.model.live())
    @rule(data=st.data())
    def change(self, data):
        """New revisions of up to three objects; the root's references may
        change (unlinked objects become garbage)."""
        live = self.model.live()
        chosen = data.draw(st.lists(st.sampled_from(live), min_size=1,
                                    max_size=3, unique=True), label='oids')
        stores = {}
        for oid in chosen:
            rec = self.model.current(oid)[1]
            if oid == z64:
                others = [o for o in live if o != z64]
                refs = data.draw(st.lists(st.sampled_from(others),
                                          unique=True) if others
                                 else st.just([]), label='root refs')
                new = self.root_rec(refs)
            elif rec.cls is Counter:
                new = Rec(Counter, data.draw(st.integers(0, 100)))
            else:
                new = Rec(Item, data.draw(st.integers(0, 9)), rec.refs)
            stores[oid] = (self.serial(oid), new)
        self.commit(stores)

    @precondition(lambda self: len(self.model.live()) > 1)
    @rule(data=st.data())
    def delete(self, data):
        oid = data.draw(st.sampled_from(
            [o for o in self.model.live() if o != z64]), label='oid')
        self.commit({}, [(oid, self.serial(oid))])

    @precondition(lambda self: any(revs[-1][1] is None for revs
                                   in self.model.revisions.values()))
    @rule(data=st.data())
    def revive(self, data):
        """A store over a deletion record, passing the deletion's tid as
        serial, brings the object back (as in ZODB's FileStorage)."""
        oid = data.draw(st.sampled_from(
            [oid for oid, revs in sorted(self.model.revisions.items())
             if revs[-1][1] is None]), label='oid')
        self.commit({oid: (self.serial(oid),
                           Rec(Item, data.draw(st.integers(0, 9))))})

    @precondition(lambda self: self.model.revisions)
    @rule(data=st.data())
    def stale_store(self, data):
        """A store whose serial is not the committed one, of a class that
        does not resolve conflicts (or of a deleted object): ConflictError,
        and nothing changes."""
        candidates = [oid for oid, revs in sorted(self.model.revisions.items())
                      if revs[-1][1] is None or revs[-1][1].cls is Item]
        if not candidates:
            return
        oid = data.draw(st.sampled_from(candidates), label='oid')
        current = self.model.current(oid)
        # Storing over a deletion with the deletion's tid as serial is no
        # conflict: it brings the object back (rule ``revive``).
        serials = [z64] + [tid for tid, _ in self.model.revisions[oid]
                           if tid != current[0]]
        serial = data.draw(st.sampled_from(serials), label='serial')
        last = self.storage.lastTransaction()
        try:
            self.commit({oid: (serial, Rec(Item, 'stale'))})
        except errors.ConflictError as exc:
            assert exc.oid == oid, exc
        else:
            raise AssertionError('storing %r with the stale serial %r did'
                                 ' not raise ConflictError' % (oid, serial))
        assert self.storage.lastTransaction() == last

    def _older_counters(self):
        """``{oid: older revisions with data}`` of the current Counters."""
        found = {}
        for oid, revs in sorted(self.model.revisions.items()):
            current_tid, current = revs[-1]
            if current is not None and current.cls is Counter:
                older = [r for r in self.model.ever[oid]
                         if r[0] != current_tid and r[1] is not None]
                if older:
                    found[oid] = older
        return found

    @precondition(lambda self: self._older_counters())
    @rule(data=st.data(), delta=st.integers(-5, 5))
    def resolved_conflict(self, data, delta):
        """A Counter stored from an older revision merges (committed + new
        - old); if pack removed that revision, ConflictError."""
        choices = self._older_counters()
        oid = data.draw(st.sampled_from(sorted(choices)), label='oid')
        current_tid, current = self.model.revisions[oid][-1]
        old_tid, old = data.draw(st.sampled_from(choices[oid]),
                                 label='old revision')
        gone = self.model.load_serial(oid, old_tid) == 'POSKeyError'
        new = Rec(Counter, old.value + delta)
        last = self.storage.lastTransaction()
        txn = make_txn()
        self.storage.tpc_begin(txn, self.next_tid())
        try:
            self.storage.store(oid, old_tid, new.data(), '', txn)
            resolved = self.storage.tpc_vote(txn)
            tid = self.storage.tpc_finish(txn)
        except errors.ConflictError:
            self.storage.tpc_abort(txn)
            assert gone, 'the conflict on %r was not resolved' % (oid,)
            assert self.storage.lastTransaction() == last
            return
        except BaseException:
            self.storage.tpc_abort(txn)
            raise
        assert not gone, ('%r resolved against a revision pack removed'
                          % (oid,))
        assert oid in (resolved or []), 'tpc_vote did not report %r' % oid
        self.model.commit(tid, [(oid, Rec(Counter, current.value + delta))])

    @rule(data=st.data(), vote=st.booleans())
    def abort(self, data, vote):
        """Stores, maybe the vote, then tpc_abort: nothing changes."""
        last = self.storage.lastTransaction()
        txn = make_txn()
        self.storage.tpc_begin(txn, self.next_tid())
        try:
            self.storage.store(self.new_oid(), z64, Rec(Item, 'aborted').data(),
                               '', txn)
            live = self.model.live()
            if live:
                oid = data.draw(st.sampled_from(live), label='oid')
                self.storage.store(oid, self.serial(oid),
                                   Rec(Item, 'aborted').data(), '', txn)
            if vote:
                self.storage.tpc_vote(txn)
        finally:
            self.storage.tpc_abort(txn)
        assert self.storage.lastTransaction() == last

    @precondition(lambda self: self.model.txns
                  and self.model.txns[-1][1] == ' '
                  and self.model.txns[-1][2])
    @rule()
    def undo_newest(self):
        """Undo the newest transaction (never a conflict): its objects go
        back to their revisions before it."""
        txn = make_txn(description='undo')
        undone = self.model.txns[-1][0]
        self.storage.tpc_begin(txn, self.next_tid())
        try:
            oids = set(self.storage.undo(undone, txn)[1])
            self.storage.tpc_vote(txn)
            tid = self.storage.tpc_finish(txn)
        except BaseException:
            self.storage.tpc_abort(txn)
            raise
        assert oids == self.model.undo_newest(tid)

    @rule(data=st.data(), gc=st.booleans())
    def pack(self, data, gc):
        """Pack to a time between two moments (before the first, after
        the last, or anywhere between), with or without GC."""
        moment = data.draw(st.integers(0, self.moment), label='moment')
        t = self.clock.between(moment)
        self.storage.pack(t, references, gc=gc)
        self.model.pack(time_tid(t), gc)

    # -- reading ----------------------------------------------------------

    def oids(self):
        return sorted(self.model.handed_out | set(self.model.revisions)
                      | {z64})

    def tids(self):
        return [self.clock.tid(m) for m in range(1, self.moment + 1)]

    @rule(data=st.data())
    def load_before(self, data):
        oid = data.draw(st.sampled_from(self.oids()), label='oid')
        tid = data.draw(st.sampled_from(
            [z64, maxtid] + self.tids() + [after(t) for t in self.tids()]),
            label='tid')
        self.check_load_before(oid, tid)

    def check_load_before(self, oid, tid):
        got = _outcome(self.storage.loadBefore, oid, tid)
        wanted = _expected(self.model.load_before(oid, tid))
        assert got == wanted, 'loadBefore(%r, %r) is %r, expected %r' % (
            oid, tid, got, wanted)

    @rule(data=st.data(), size=st.sampled_from([None, 1, 2, 100]))
    def history(self, data, size):
        oid = data.draw(st.sampled_from(self.oids()), label='oid')
        self.check_history(oid, size)

    def check_history(self, oid, size):
        try:
            got = [(h['tid'], h['size'] > 0)
                   for h in self.storage.history(oid, size)]
        except errors.POSKeyError:
            got = 'POSKeyError'
        revs = self.model.revisions.get(oid)
        if not revs:
            wanted = 'POSKeyError'
        else:
            wanted = [(tid, rec is not None) for tid, rec in reversed(revs)]
            wanted = wanted[:size] if size is not None else wanted
        assert got == wanted, 'history(%r, %r) is %r, expected %r' % (
            oid, size, got, wanted)

    @invariant()
    def agrees_with_the_model(self):
        assert self.storage.lastTransaction() == self.model.last
        for oid in self.oids():
            got = _outcome(self.storage.load, oid)
            current = self.model.current(oid)
            wanted = ('POSKeyError' if current is None or current[1] is None
                      else (current[1].key(), current[0]))
            assert got == wanted, 'load(%r) is %r, expected %r' % (
                oid, got, wanted)
        self.check_iteration()

    def check_iteration(self):
        got = [(txn.tid, txn.status,
                [(r.oid, None if r.data is None else decode(r.data))
                 for r in txn])
               for txn in self.storage.iterator()]
        wanted = [(tid, status, [(oid, None if rec is None else rec.key())
                                 for oid, rec in records])
                  for tid, status, records in self.model.txns]
        assert got == wanted, (
            'iteration is\n%r\nexpected\n%r' % (got, wanted))
        undoable = [d['id'] for d in self.storage.undoLog(0, 10 ** 6)] \
            if hasattr(self.storage, 'undoLog') else None
        if undoable is not None:
            newest_first = []
            for tid, status, _records in reversed(self.model.txns):
                if status == 'p':
                    break
                newest_first.append(tid)
            assert undoable == newest_first, (
                'undoLog is %r, expected %r' % (undoable, newest_first))

    def check_everything(self):
        self.agrees_with_the_model()
        tids = [z64, maxtid] + self.tids() + [after(t) for t in self.tids()]
        for oid in self.oids():
            self.check_history(oid, None)
            for tid in tids:
                self.check_load_before(oid, tid)
            for tid in self.tids():
                got = _outcome(self.storage.loadSerial, oid, tid)
                wanted = _expected(self.model.load_serial(oid, tid))
                assert got == wanted, 'loadSerial(%r, %r) is %r, expected' \
                    ' %r' % (oid, tid, got, wanted)
