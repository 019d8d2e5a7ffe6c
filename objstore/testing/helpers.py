"""Small tools for storage tests: records, transactions, one-call commits.

Records are real ZODB-format records (``objstore.serialize``) of the
classes below, whose state is a dict with a ``value`` and the references
given; :func:`value_of` reads the value back. The classes are looked up by
``objstore.conflict`` during conflict resolution, so they live here, in an
importable module.
"""
import transaction as transaction_package

from objstore.serialize import dumps_record, loads_record
from objstore.storages.base import maxtid, p64, time_tid, u64, z64


class Item:
    """The class of ordinary test records; it does not resolve conflicts."""


class Counter:
    """A record class whose concurrent changes merge: deltas add up."""

    def _p_resolveConflict(self, old, committed, new):
        # ZODB's protocol name, called by objstore.conflict.
        merged = dict(committed)
        merged['value'] = committed['value'] + new['value'] - old['value']
        return merged


class _Pid:
    """Marks a persistent id inside a state being pickled."""

    def __init__(self, pid):
        self.pid = pid


def _persistent_id(obj):
    return obj.pid if isinstance(obj, _Pid) else None


def record(value=None, refs=(), weak=(), xrefs=(), cls=Item):
    """A record of ``cls`` holding ``value`` and references to other oids.

    ``refs`` are strong references (ZODB's ``(oid, class)`` form), ``weak``
    weak ones (``['w', (oid,)]``), ``xrefs`` references into a database
    named ``'other'`` (``['m', ('other', oid, class)]``).
    """
    state = {
        'value': value,
        'refs': [_Pid((oid, Item)) for oid in refs],
        'weak': [_Pid(['w', (oid,)]) for oid in weak],
        'xrefs': [_Pid(['m', ('other', oid, Item)]) for oid in xrefs],
    }
    return dumps_record(cls, state, _persistent_id)


def value_of(data):
    """The ``value`` a record made by :func:`record` holds."""
    return loads_record(data, persistent_load=lambda pid: pid)[1]['value']


def after(tid):
    """The tid just after ``tid``: ``loadBefore(oid, after(t))`` reads as of t."""
    return p64(u64(tid) + 1)


def make_txn(user='', description='', extension=None):
    """A ``transaction.Transaction`` carrying the given metadata."""
    txn = transaction_package.Transaction()
    txn.user = user
    txn.description = description
    for key, val in (extension or {}).items():
        txn.extension[key] = val
    return txn


def commit(storage, stores=None, deletes=None, checks=None, tid=None,
           user='', description='', extension=None):
    """Commit one transaction and return its tid.

    ``stores`` maps oid -> ``(serial, data)``; ``deletes`` oid -> serial
    (``deleteObject``); ``checks`` oid -> serial
    (``checkCurrentSerialInTransaction``). ``tid`` forces the tid. On any
    error the transaction is aborted and the error re-raised.
    """
    txn = make_txn(user, description, extension)
    storage.tpc_begin(txn, tid)
    try:
        for oid, serial in (checks or {}).items():
            storage.checkCurrentSerialInTransaction(oid, serial, txn)
        for oid, (serial, data) in (stores or {}).items():
            storage.store(oid, serial, data, '', txn)
        for oid, serial in (deletes or {}).items():
            storage.deleteObject(oid, serial, txn)
        storage.tpc_vote(txn)
        return storage.tpc_finish(txn)
    except BaseException:
        storage.tpc_abort(txn)
        raise


def current(storage, oid):
    """``(data, serial)`` of the current revision (through ``loadBefore``)."""
    data, serial, _ = storage.loadBefore(oid, maxtid)
    return data, serial


def new_object(storage, value=None, tid=None, **record_args):
    """Create an object holding ``value``; return ``(oid, tid)``."""
    oid = storage.new_oid()
    return oid, commit(storage, {oid: (z64, record(value, **record_args))},
                       tid=tid)


def set_value(storage, oid, value, tid=None, **record_args):
    """Store a new revision of ``oid`` over its current one; return the tid."""
    serial = current(storage, oid)[1]
    return commit(storage, {oid: (serial, record(value, **record_args))},
                  tid=tid)


def undo(storage, *transaction_ids, **meta):
    """Undo transactions in one new transaction; return ``(tid, oids)``."""
    txn = make_txn(**meta)
    storage.tpc_begin(txn)
    try:
        oids = set()
        for transaction_id in transaction_ids:
            result = storage.undo(transaction_id, txn)
            if result:
                oids.update(result[1])
        oids.update(storage.tpc_vote(txn) or ())
        return storage.tpc_finish(txn), oids
    except BaseException:
        storage.tpc_abort(txn)
        raise


class Clock:
    """Forced tids at chosen moments, for tests that pack to a time.

    ``tid(k)`` is the tid of the moment ``k`` steps of ten seconds after a
    start an hour ago; ``between(k)`` is an epoch time after moment ``k``
    and before moment ``k + 1``.
    """

    def __init__(self, start):
        self.start = start

    def time(self, k):
        return self.start + 10 * k

    def tid(self, k):
        return time_tid(self.time(k))

    def between(self, k):
        return self.time(k) + 5
