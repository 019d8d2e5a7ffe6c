"""FileStorage against a simple model: random commits, aborts, deletions,
undos, packs, reopenings; after every step it must agree with the model."""
import os
import shutil
import tempfile

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine, initialize, invariant, precondition, rule)

from objstore import errors
from objstore.storages.base import maxtid, p64, z64
from objstore.storages.file import FileStorage
from objstore.storages.file import log
from objstore.testing.helpers import Clock, after, make_txn, record

CLOCK = Clock(1700000000)


class FileStorageModel(RuleBasedStateMachine):
    """The model: ``revisions[oid]`` is a list of ``(tid, data)``, oldest
    first, data None for a deletion; ``txns`` lists ``(tid, oids)`` in
    commit order, ``undoable`` says which may still be undone."""

    @initialize()
    def setup(self):
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, 'model.fs')
        self.storage = FileStorage(self.path)
        self.revisions = {}
        self.txns = []
        self.step = 0
        self.packed_before = z64

    def teardown(self):
        if hasattr(self, 'storage'):
            self.storage.close()
            shutil.rmtree(self.dir)

    def next_tid(self):
        self.step += 1
        return CLOCK.tid(self.step)

    def live(self):
        return sorted(oid for oid, revs in self.revisions.items()
                      if revs and revs[-1][1] is not None)

    def serial(self, oid):
        revs = self.revisions.get(oid)
        return revs[-1][0] if revs else z64

    # -- steps ------------------------------------------------------------

    @rule(new=st.integers(0, 3), changed=st.lists(st.integers(0, 50),
                                                  max_size=3),
          size=st.integers(0, 3000))
    def commit(self, new, changed, size):
        live = self.live()
        stores = {}
        for i in changed:
            if live:
                oid = live[i % len(live)]
                stores[oid] = record(('c', self.step, 'x' * size))
        for _ in range(new):
            stores[self.storage.new_oid()] = record(('n', self.step))
        tid = self.next_tid()
        txn = make_txn(description='step %d' % self.step)
        self.storage.tpc_begin(txn, tid)
        for oid, data in stores.items():
            self.storage.store(oid, self.serial(oid), data, '', txn)
        self.storage.tpc_vote(txn)
        assert self.storage.tpc_finish(txn) == tid
        for oid, data in stores.items():
            self.revisions.setdefault(oid, []).append((tid, data))
        self.txns.append((tid, set(stores)))

    @rule(vote=st.booleans())
    def abort(self, vote):
        txn = make_txn()
        self.storage.tpc_begin(txn, self.next_tid())
        self.storage.store(self.storage.new_oid(), z64, record('gone'), '',
                           txn)
        if vote:
            self.storage.tpc_vote(txn)
        self.storage.tpc_abort(txn)

    @precondition(lambda self: self.live())
    @rule(i=st.integers(0, 50))
    def delete(self, i):
        live = self.live()
        oid = live[i % len(live)]
        tid = self.next_tid()
        txn = make_txn()
        self.storage.tpc_begin(txn, tid)
        self.storage.deleteObject(oid, self.serial(oid), txn)
        self.storage.tpc_vote(txn)
        self.storage.tpc_finish(txn)
        self.revisions[oid].append((tid, None))
        self.txns.append((tid, {oid}))

    @precondition(lambda self: self.txns and self.txns[-1][0]
                  > self.packed_before)
    @rule()
    def undo_last(self):
        # Undoing the newest transaction never conflicts.
        undone, oids = self.txns[-1]
        tid = self.next_tid()
        txn = make_txn()
        self.storage.tpc_begin(txn, tid)
        got = set(self.storage.undo(undone, txn)[1])
        self.storage.tpc_vote(txn)
        assert self.storage.tpc_finish(txn) == tid
        assert got == oids
        for oid in oids:
            revs = self.revisions[oid]
            before = revs[-2][1] if len(revs) > 1 else None
            revs.append((tid, before))
        self.txns.append((tid, set(oids)))

    @precondition(lambda self: len(self.txns) > 1)
    @rule(k=st.integers(0, 100))
    def pack(self, k):
        tid, _ = self.txns[k % len(self.txns)]
        pack_tid = after(tid)
        self.storage.pack(CLOCK.time(self.step_of(tid)) + 1, None, gc=False)
        for oid in list(self.revisions):
            revs = self.revisions[oid]
            old = [r for r in revs if r[0] < pack_tid]
            new = [r for r in revs if r[0] >= pack_tid]
            if old and old[-1][1] is not None:
                new = [old[-1]] + new
            if new:
                self.revisions[oid] = new
            else:
                del self.revisions[oid]
        self.packed_before = max(self.packed_before, pack_tid)

    def step_of(self, tid):
        for step in range(self.step + 1):
            if CLOCK.tid(step) == tid:
                return step
        raise AssertionError('unknown tid')

    @rule(drop_checkpoint=st.booleans())
    def reopen(self, drop_checkpoint):
        self.storage.close()
        if drop_checkpoint and os.path.exists(self.path + '.index'):
            os.remove(self.path + '.index')
        self.storage = FileStorage(self.path)

    @rule()
    def crash(self):
        # What a killed writer leaves: the files as they are (the page
        # cache survives a process), no final checkpoint.
        self.crashes = getattr(self, 'crashes', 0) + 1
        path = os.path.join(self.dir, 'crash%d.fs' % self.crashes)
        shutil.copyfile(self.path, path)
        if os.path.exists(self.path + '.index'):
            shutil.copyfile(self.path + '.index', path + '.index')
        self.storage.close()
        self.path = path
        self.storage = FileStorage(path)

    @rule()
    def checkpoint(self):
        log.try_checkpoint(self.storage)

    # -- what must hold after every step --------------------------------------

    @invariant()
    def agrees(self):
        if not hasattr(self, 'storage'):
            return
        storage = self.storage
        if self.txns:
            assert storage.lastTransaction() == self.txns[-1][0]
        for oid, revs in self.revisions.items():
            tid, data = revs[-1]
            if data is None:
                try:
                    storage.load(oid)
                except errors.POSKeyError:
                    pass
                else:
                    raise AssertionError('deleted object loads')
            else:
                assert storage.load(oid) == (data, tid)
            for (rtid, rdata), nxt in zip(revs, revs[1:] + [(None, None)]):
                if rdata is not None:
                    assert storage.loadBefore(oid, after(rtid)) == (
                        rdata, rtid, nxt[0])
            assert [h['tid'] for h in storage.history(oid, None)] == \
                [r[0] for r in reversed(revs)]
        iterated = {}
        for txn in storage.iterator():
            for rec in txn:
                iterated.setdefault(rec.oid, []).append((rec.tid, rec.data))
        assert iterated == self.revisions
        try:
            storage.loadBefore(p64(10 ** 6), maxtid)
        except errors.POSKeyError:
            pass
        else:
            raise AssertionError('an unknown oid loads')


FileStorageModel.TestCase.settings = settings(
    max_examples=int(os.environ.get('OBJSTORE_MODEL_EXAMPLES', '50')),
    stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestFileStorageModel = FileStorageModel.TestCase
