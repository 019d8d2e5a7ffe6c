"""The model :class:`objstore.testing.statemachine.StorageMachine` checks
storages against: plain Python, per oid its revisions, oldest first, and
the transactions in order.

Records are :func:`objstore.testing.helpers.record` records, compared by
class, value and references. Reachability for pack's garbage collection
follows the references the model itself keeps, so pack is checked against
an independent account of the object graph.
"""
from objstore.serialize import loads_record
from objstore.storages.base import z64
from objstore.testing.helpers import record


class Rec:
    """A record as the model knows it: class, value, referenced oids."""

    __slots__ = ('cls', 'value', 'refs')

    def __init__(self, cls, value, refs=()):
        self.cls = cls
        self.value = value
        self.refs = tuple(refs)

    def key(self):
        return (self.cls.__name__, self.value, self.refs)

    def data(self):
        return record(self.value, refs=self.refs, cls=self.cls)

    def __repr__(self):
        return 'Rec%r' % (self.key(),)


def decode(data):
    """``(class name, value, refs)`` of a record, as :meth:`Rec.key`."""
    meta, state = loads_record(data, persistent_load=lambda pid: pid)
    if isinstance(meta, tuple):
        meta = meta[0]
    refs = tuple(getattr(pid, 'data', pid)[0] for pid in state['refs'])
    return (meta.__name__, state['value'], refs)


class Model:
    """What a history-keeping storage with pack and GC must hold."""

    def __init__(self):
        self.revisions = {}     # oid -> [(tid, Rec or None)], oldest first
        self.txns = []          # [[tid, status, [(oid, Rec or None)]]]
        self.last = z64
        self.pack_tid = None
        self.dropped = set()    # tids whose transaction pack emptied
        self.handed_out = set()     # every oid new_oid returned
        self.collected = set()      # oids pack removed every trace of
        self.ever = {}          # oid -> every revision, pack or not

    def commit(self, tid, records):
        """``records``: [(oid, Rec or None)] in store order."""
        self.txns.append([tid, ' ', list(records)])
        for oid, rec in records:
            self.revisions.setdefault(oid, []).append((tid, rec))
            self.ever.setdefault(oid, []).append((tid, rec))
        self.last = tid

    def current(self, oid):
        """``(tid, Rec or None)`` of the current revision, or None."""
        revs = self.revisions.get(oid)
        return revs[-1] if revs else None

    def live(self):
        """Oids whose current revision holds data, in oid order."""
        return sorted(oid for oid, revs in self.revisions.items()
                      if revs[-1][1] is not None)

    def load_before(self, oid, tid):
        """What ``loadBefore(oid, tid)`` returns: ``(Rec, start, end)``,
        None, or ``'POSKeyError'``."""
        revs = self.revisions.get(oid)
        if not revs:
            return 'POSKeyError'
        older = [i for i, (rtid, _) in enumerate(revs) if rtid < tid]
        if not older:
            return None
        i = older[-1]
        rtid, rec = revs[i]
        if rec is None:
            return 'POSKeyError'
        end = revs[i + 1][0] if i + 1 < len(revs) else None
        return rec, rtid, end

    def load_serial(self, oid, serial):
        for rtid, rec in self.revisions.get(oid, ()):
            if rtid == serial and rec is not None:
                return rec
        return 'POSKeyError'

    def pack(self, pack_tid, gc=True):
        """Keep each object's revision current at ``pack_tid`` and later
        ones; drop objects deleted then and (``gc``) those reachable
        neither from the root then nor from a later revision. As ZODB's
        FileStorage: transactions before ``pack_tid`` that keep a record
        get status 'p', those that keep none go (the newest stays)."""
        # Packing again to an earlier time applies the same rules to what
        # is left.
        self.pack_tid = max(self.pack_tid or z64, pack_tid)
        keep = {}
        for oid, revs in self.revisions.items():
            before = [r for r in revs if r[0] < pack_tid]
            later = [r for r in revs if r[0] >= pack_tid]
            if before and before[-1][1] is not None:
                keep[oid] = [before[-1]] + later
            else:
                keep[oid] = later
        roots = [z64] + [oid for oid, revs in self.revisions.items()
                         if revs[-1][0] >= pack_tid]
        reached = set()
        if not gc:
            reached = {oid for oid, revs in keep.items() if revs}
            roots = []
        while roots:
            oid = roots.pop()
            if oid in reached or not keep.get(oid):
                continue
            reached.add(oid)
            for _tid, rec in keep[oid]:
                if rec is not None:
                    roots.extend(rec.refs)
        kept = set()
        for oid in list(self.revisions):
            if oid in reached:
                self.revisions[oid] = keep[oid]
                kept.update((oid, tid) for tid, _ in keep[oid])
            else:
                del self.revisions[oid]
                self.collected.add(oid)
        txns = []
        newest = self.txns[-1][0] if self.txns else None
        for tid, status, records in self.txns:
            left = [(oid, rec) for oid, rec in records if (oid, tid) in kept]
            if tid < pack_tid:
                status = 'p'
            # Transactions after the pack time stay as they are, even one
            # an earlier pack emptied.
            if left or tid == newest or tid >= pack_tid:
                txns.append([tid, status, left])
            else:
                self.dropped.add(tid)
        self.txns = txns

    def undo_newest(self, tid):
        """Undo the newest transaction in a new one, ``tid``: each of its
        objects goes back to its revision before (a deletion record for
        those it created). Returns the oids."""
        records = self.txns[-1][2]
        restored = []
        for oid, _rec in records:
            revs = self.revisions[oid]
            restored.append((oid, revs[-2][1] if len(revs) > 1 else None))
        self.commit(tid, restored)
        return {oid for oid, _ in records}
