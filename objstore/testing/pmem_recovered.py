"""What a PMemStorage pool must show after a crash, and how to check it.

PMemStorage keeps no history, so what a pool shows is its last
transaction's tid and the current record of each object:
:class:`PoolState`. After a crash the pool must show the state after the
last acknowledged transaction (``tpc_finish`` returned), or, if one was in
flight, the state after it, whole; nothing in between. A
:class:`Pending` is such a state after a transaction whose tid the crashed
process never learned. :data:`NOT_A_POOL` stands for "the pool's
creation was not yet complete": the file may then be missing or refused
with a clear ``objstore.errors`` exception.

:func:`check_recovered` opens a file a crash left, compares it with the
states it may show, commits, and opens it again through ``objstore.DB``.
Records are of :class:`Node` (and ``PersistentMapping`` for the root,
oid 0) so the database can load them too.
"""
import persistent
import transaction
from persistent.mapping import PersistentMapping

from objstore import errors
from objstore.serialize import dumps_record, loads_record, references
from objstore.storages.base import u64, z64
from objstore.testing.helpers import commit

__all__ = ['Node', 'node_record', 'root_record', 'value_of', 'PoolState',
           'Pending', 'NOT_A_POOL', 'EMPTY', 'unreachable', 'read_state',
           'matching',
           'describe', 'RecoveryProblem', 'recover', 'check_recovered']


class Node(persistent.Persistent):
    """The class of the crash tests' objects: a ``value``, some padding,
    ``children`` (other nodes)."""

    def __init__(self, value=None, pad='', children=()):
        self.value = value
        self.pad = pad
        self.children = list(children)


class _Ref:
    """Marks an oid to pickle as a persistent reference."""

    def __init__(self, oid, cls):
        self.oid = oid
        self.cls = cls


def _persistent_id(obj):
    return (obj.oid, obj.cls) if isinstance(obj, _Ref) else None


def node_record(value, pad=0, children=()):
    """A :class:`Node` record: ``value``, ``pad`` dots, references to the
    nodes ``children`` (oids)."""
    state = {'value': value, 'pad': '.' * pad,
             'children': [_Ref(oid, Node) for oid in children]}
    return dumps_record(Node, state, _persistent_id)


def root_record(value, children=()):
    """A root record: a ``PersistentMapping`` holding ``value`` under
    ``'value'`` and the nodes ``children`` under ``'children'``."""
    state = {'data': {'value': value,
                      'children': [_Ref(oid, Node) for oid in children]}}
    return dumps_record(PersistentMapping, state, _persistent_id)


def value_of(data):
    """The ``value`` a :func:`node_record` or :func:`root_record` holds."""
    state = loads_record(data, persistent_load=lambda pid: pid)[1]
    # A root the database made has no value.
    return state['data'].get('value') if 'data' in state else state['value']


def _value_of_object(obj):
    return (obj.get('value') if isinstance(obj, PersistentMapping)
            else obj.value)


class _NotAPool:

    def __repr__(self):
        return 'NOT_A_POOL'


#: The pool's creation was not complete.
NOT_A_POOL = _NotAPool()


class PoolState:
    """``last`` (the last tid) and ``objects`` (oid -> ``(data,
    serial)``): what a pool shows. Compare with ``==``."""

    __slots__ = ('last', 'objects')

    def __init__(self, last=z64, objects=None):
        self.last = last
        self.objects = dict(objects or {})

    def committed(self, tid, changes):
        """The state after a transaction ``tid`` made ``changes`` (oid ->
        data, or None for an object it deleted)."""
        objects = dict(self.objects)
        for oid, data in changes.items():
            if data is None:
                objects.pop(oid, None)
            else:
                objects[oid] = (data, tid)
        return PoolState(tid, objects)

    def __eq__(self, other):
        return (isinstance(other, PoolState) and self.last == other.last
                and self.objects == other.objects)

    def __ne__(self, other):
        return not self == other

    __hash__ = None

    def __repr__(self):
        return '<PoolState %s, %d objects>' % (self.last.hex(),
                                                len(self.objects))


#: A new pool's state.
EMPTY = PoolState()


class Pending:
    """The state after the transaction in flight when the process died:
    ``before`` with ``changes`` (oid -> data or None), at a tid the
    process never learned (after ``before.last``)."""

    def __init__(self, before, changes):
        self.before = before
        self.changes = dict(changes)

    def resolve(self, tid):
        """The state, if the transaction got ``tid``; None if it cannot."""
        if self.before is NOT_A_POOL or tid <= self.before.last:
            return None
        return self.before.committed(tid, self.changes)

    def __repr__(self):
        return '<Pending %d changes after %r>' % (len(self.changes),
                                                  self.before)


def unreachable(state):
    """``{oid: None}`` for the objects of ``state`` its root (oid 0) does
    not reach through the records' references: what a pack deletes."""
    objects = state.objects
    seen = {z64} if z64 in objects else set()
    todo = list(seen)
    while todo:
        for oid in references(objects[todo.pop()][0]):
            if oid in objects and oid not in seen:
                seen.add(oid)
                todo.append(oid)
    return {oid: None for oid in objects if oid not in seen}


def read_state(storage, oids, fresh=True):
    """``PoolState`` of ``storage`` as far as ``oids`` go (others are not
    looked at): its ``lastTransaction`` and each oid's current record,
    read through a fresh instance when the storage is MVCC (unless
    ``fresh`` is false: then ``storage`` is an instance whose snapshot
    is read as it is)."""
    new_instance = getattr(storage, 'new_instance', None) if fresh else None
    reader = new_instance() if new_instance is not None else storage
    try:
        if reader is not storage:
            reader.poll_invalidations()
        objects = {}
        for oid in oids:
            try:
                objects[oid] = tuple(reader.load(oid)[:2])
            except errors.POSKeyError:
                pass
        return PoolState(reader.lastTransaction(), objects)
    finally:
        if reader is not storage:
            reader.release()


def matching(found, candidates):
    """The candidate (a :class:`PoolState`, resolved from a
    :class:`Pending`) that ``found`` equals, or None."""
    for candidate in candidates:
        if isinstance(candidate, Pending):
            candidate = candidate.resolve(found.last)
        if isinstance(candidate, PoolState) and candidate == found:
            return candidate
    return None


def describe(found, candidates):
    """Say how ``found`` differs from each of ``candidates``."""
    lines = []
    for candidate in candidates:
        if isinstance(candidate, Pending):
            resolved = candidate.resolve(found.last)
            if resolved is None:
                lines.append('not %r: last tid %s is not after %s'
                             % (candidate, found.last.hex(),
                                getattr(candidate.before, 'last',
                                        z64).hex()))
                continue
            candidate = resolved
        if not isinstance(candidate, PoolState):
            continue
        diffs = []
        if candidate.last != found.last:
            diffs.append('last %s, expected %s' % (found.last.hex(),
                                                   candidate.last.hex()))
        for oid in sorted(set(found.objects) | set(candidate.objects)):
            got = found.objects.get(oid)
            want = candidate.objects.get(oid)
            if got != want:
                diffs.append('oid %d: %s, expected %s' % (
                    u64(oid), _short(got), _short(want)))
        lines.append('not %r: %s' % (candidate, '; '.join(diffs[:4])))
    return ' / '.join(lines)


def _short(revision):
    if revision is None:
        return 'absent'
    data, serial = revision
    try:
        value = value_of(data)
    except Exception:   # a damaged record: say so, do not stop the report
        value = '<%d bytes that do not unpickle>' % len(data)
    text = repr(value)
    return '%s from %s' % (text if len(text) < 60 else text[:60] + '...',
                           serial.hex())


def _read(path):
    try:
        with open(path, 'rb') as f:
            return f.read()
    except FileNotFoundError:
        return None


class RecoveryProblem(AssertionError):
    """What :func:`recover` found wrong with a pool a crash left."""


def check_recovered(path, candidates, oids, dirty=None, **options):
    """:func:`recover`, returning the problem (a string) or None."""
    try:
        recover(path, candidates, oids, dirty, **options)
    except RecoveryProblem as exc:
        return str(exc)
    return None


def recover(path, candidates, oids, dirty=None, **options):
    """Open the pool a crash left at ``path`` and check it. Returns
    ``(shown, state)``: the :class:`PoolState` among ``candidates`` it
    showed, and its state after the checks' own commits (reading
    ``oids`` and the oids those commits made). Raises
    :class:`RecoveryProblem`.

    It must open, unless :data:`NOT_A_POOL` is among ``candidates`` (then
    it may be refused with an ``objstore.errors`` exception that changes
    nothing in the file, after which a new pool is created in its
    place); show one of ``candidates`` (reading ``oids``); with ``dirty``
    true or false, say in ``clean_shutdown`` and ``recovered`` that its
    last writer did not (did) close it; take a new commit; and open again
    through ``objstore.DB`` showing every object with its value, and take
    a commit there too. ``options`` go to ``PMemStorage``.
    """
    from objstore.storages.pmem import PMemStorage
    oids = set(oids) | {z64}
    if NOT_A_POOL in candidates and EMPTY not in candidates:
        # Opening a missing file creates a pool.
        candidates = list(candidates) + [EMPTY]
    try:
        content = _read(path)
        try:
            storage = PMemStorage(path, **options)
        except errors.ObjstoreError as exc:
            if NOT_A_POOL not in candidates or content is None:
                raise RecoveryProblem('opening failed: %r' % (exc,))
            if _read(path) != content:
                raise RecoveryProblem('opening failed (%r) and changed the'
                                      ' file' % (exc,))
            storage = PMemStorage(path, create=True, **options)
            candidates = [EMPTY]
            dirty = None
        try:
            found = read_state(storage, oids)
            state = matching(found, candidates)
            if state is None:
                raise RecoveryProblem('wrong state: %s'
                                      % describe(found, candidates))
            if dirty is not None and (
                    storage.clean_shutdown == dirty
                    or storage.recovered != dirty):
                raise RecoveryProblem(
                    'clean_shutdown is %s and recovered %s after %s' % (
                        storage.clean_shutdown, storage.recovered,
                        'a crash while open' if dirty else 'a clean close'))
            shown = state
            state = _commit_after(storage, state, oids)
        finally:
            storage.close()
        return shown, _check_through_db(path, state, oids, options)
    except (errors.ObjstoreError, OSError) as exc:
        raise RecoveryProblem('raised %r' % (exc,))


def _commit_after(storage, state, oids):
    """Commit a change of an object (if any) and a new one; return the
    new state. ``oids`` gets the new one."""
    new = storage.new_oid()
    if new in state.objects or new == z64:
        raise RecoveryProblem('new_oid() returned %d, an oid in use'
                              % u64(new))
    changes = {new: node_record('after recovery')}
    stores = {new: (z64, changes[new])}
    nodes = sorted(oid for oid in state.objects if oid != z64)
    if nodes:
        oid = nodes[-1]
        changes[oid] = node_record('changed after recovery', 100)
        stores[oid] = (state.objects[oid][1], changes[oid])
    tid = commit(storage, stores, description='after recovery')
    oids.add(new)
    state = state.committed(tid, changes)
    found = read_state(storage, oids)
    if found != state:
        raise RecoveryProblem('the commit after recovery went wrong: %s'
                              % describe(found, [state]))
    return state


def _check_through_db(path, state, oids, options):
    """Every object of ``state`` through ``objstore.DB``, a commit there,
    and the state after it (``oids`` gets the oid that commit made)."""
    from objstore.db import DB
    from objstore.storages.pmem import PMemStorage
    manager = transaction.TransactionManager()
    db = DB(PMemStorage(path, **options))
    try:
        conn = db.open(transaction_manager=manager)
        for oid, (data, _serial) in sorted(state.objects.items()):
            obj = conn.get(oid)
            if _value_of_object(obj) != value_of(data):
                raise RecoveryProblem(
                    'through the DB, oid %d holds %r, expected %r' % (
                        u64(oid), _value_of_object(obj), value_of(data)))
        checked = Node('through the DB')
        conn.root()['checked'] = checked
        manager.commit()
        oids.add(checked._p_oid)
        conn.close()
    finally:
        db.close()
    db = DB(PMemStorage(path, **options))
    try:
        conn = db.open(transaction_manager=manager)
        if conn.root()['checked'].value != 'through the DB':
            raise RecoveryProblem('the commit through the DB was lost on'
                                  ' reopen')
        conn.close()
        return read_state(db.storage, oids)
    finally:
        db.close()
