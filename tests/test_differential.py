"""Differential test: one random program, run on ZODB and on objstore.

Every step of a hypothesis state machine (change objects under the root,
PersistentMappings, OOBTrees and a BTrees.Length counter from one of two
connections; commit, abort, savepoint, roll back, undo, look at a past
moment) runs in each world:

* ``zodb`` -- the reference: ``ZODB.DB`` on ZODB's FileStorage (not its
  MappingStorage, which never resolves conflicts, not even BTrees');
* ``zodb/objstore-memory`` -- ``ZODB.DB`` on objstore's MemoryStorage;
* ``objstore/memory`` and ``objstore/file`` -- ``objstore.DB`` on
  objstore's MemoryStorage and FileStorage.

After every step what each connection shows (``zodb_app.dump`` of its
root) and every operation's outcome (its result, or the kind of error it
raised: which commit conflicted, which undo was refused) must be the same
in every world.

Runs ~20 s by default; ``OBJSTORE_LONG=1`` runs many more examples.
"""
import os
import shutil
import tempfile

import pytest

ZODB = pytest.importorskip('ZODB')

import transaction  # noqa: E402
import ZODB.FileStorage  # noqa: E402
import ZODB.POSException as POSException  # noqa: E402
from BTrees.Length import Length  # noqa: E402
from BTrees.OOBTree import OOBTree  # noqa: E402
from hypothesis import HealthCheck, event, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import (  # noqa: E402
    RuleBasedStateMachine, initialize, invariant, rule)
from persistent.mapping import PersistentMapping  # noqa: E402

import objstore  # noqa: E402
import zodb_app  # noqa: E402
from objstore import errors  # noqa: E402
from objstore.storages import FileStorage, MemoryStorage  # noqa: E402
from objstore.zodb import adapt  # noqa: E402

LONG = bool(os.environ.get('OBJSTORE_LONG'))

ROOT_KEYS = ['a', 'b', 'm', 't', 'n']
ITEM_KEYS = ['k%d' % n for n in range(6)]
ATTRIBUTES = ['x', 'y', 'ref']
WRITERS = [0, 1]        # connection 2 only watches
conn_no = st.sampled_from(WRITERS)
root_key = st.sampled_from(ROOT_KEYS)
small = st.integers(-3, 3)

# Error kinds compared across worlds: ZODB's and objstore's classes of the
# same meaning count as the same outcome; the most specific first.
_ERROR_KINDS = [
    ('ReadConflictError',
     (errors.ReadConflictError, POSException.ReadConflictError)),
    ('ConflictError', (errors.ConflictError, POSException.ConflictError)),
    ('UndoError', (errors.UndoError, POSException.UndoError)),
    ('POSKeyError', (errors.POSKeyError, POSException.POSKeyError)),
]


def error_kind(exc):
    for name, classes in _ERROR_KINDS:
        if isinstance(exc, classes):
            return name
    return type(exc).__name__


class World:
    """One database with three connections, each with its own explicit
    transaction manager (connection 2 only reads)."""

    def __init__(self, name, db):
        self.name = name
        self.db = db
        self.tms = [transaction.TransactionManager(explicit=True)
                    for _ in range(3)]
        self.conns = [db.open(transaction_manager=tm) for tm in self.tms]
        self.savepoints = [[] for _ in self.conns]
        # tids of the successful commits, in order: world-neutral moments.
        self.tids = [db.lastTransaction()]
        for tm in self.tms:
            tm.begin()

    def root(self, c):
        return self.conns[c].root()

    def restart(self, c, finish):
        """Commit or abort connection c's transaction and begin the next."""
        tm = self.tms[c]
        self.savepoints[c] = []
        try:
            finish(tm)
        except BaseException:
            tm.abort()
            raise
        finally:
            tm.begin()

    def close(self):
        for tm, conn in zip(self.tms, self.conns):
            tm.abort()
            conn.close()
        self.db.close()


def text(value):
    return value.decode('utf-8') if isinstance(value, bytes) else value


def new_object(kind, seed):
    if kind == 'item':
        return zodb_app.Item(x=seed, y=[seed])
    if kind == 'mapping':
        return PersistentMapping({'k0': seed})
    return OOBTree({'k1': seed, 'k2': 'v%d' % seed})


# -- the operations, each run on one world; the result is compared ---------

def op_set_attribute(world, c, key, attribute, value):
    obj = world.root(c).get(key)
    if not isinstance(obj, zodb_app.Item):
        return 'no item'
    if attribute == 'ref':
        # Shared references, and cycles when an item points to itself.
        obj.ref = world.root(c).get(ROOT_KEYS[value % len(ROOT_KEYS)])
    else:
        setattr(obj, attribute, value)
    return 'set'


def op_set_key(world, c, key, item_key, value, as_object):
    """Set a key of a mapping or tree; ``as_object``: to a new Item."""
    obj = world.root(c).get(key)
    if not isinstance(obj, (PersistentMapping, OOBTree)):
        return 'no mapping'
    if as_object:
        value = zodb_app.Item(x=value)
    obj[item_key] = value
    return len(obj)


def op_del_key(world, c, key, item_key):
    obj = world.root(c).get(key)
    if not isinstance(obj, (PersistentMapping, OOBTree)):
        return 'no mapping'
    if item_key not in obj:
        return 'absent'
    del obj[item_key]
    return len(obj)


def op_fill_tree(world, c, key, start):
    # Enough keys to split an OOBTree's bucket (30 entries) and make the
    # tree a separate object from its buckets.
    obj = world.root(c).get(key)
    if not isinstance(obj, OOBTree):
        return 'no tree'
    for n in range(start, start + 40):
        obj['z%03d' % n] = n
    return len(obj)


def op_replace(world, c, key, kind, seed):
    world.root(c)[key] = new_object(kind, seed)
    return 'replaced'


def op_delete_root_key(world, c, key):
    root = world.root(c)
    if key not in root:
        return 'absent'
    del root[key]
    return 'deleted'


def op_count(world, c, n):
    counter = world.root(c)['counter']
    counter.change(n)
    return counter()


def op_commit(world, c, note):
    def finish(tm):
        tm.get().note(note)
        tm.commit()
    world.restart(c, finish)
    world.tids.append(world.db.lastTransaction())
    return 'committed'


def op_abort(world, c):
    world.restart(c, lambda tm: tm.abort())
    return 'aborted'


def op_savepoint(world, c):
    world.savepoints[c].append(world.tms[c].savepoint())
    return len(world.savepoints[c])


def op_rollback(world, c, n):
    savepoints = world.savepoints[c]
    if not savepoints:
        return 'no savepoint'
    savepoints[n % len(savepoints)].rollback()
    return 'rolled back'


def op_cache_minimize(world, c):
    world.conns[c].cacheMinimize()
    return 'minimized'


def op_undo(world, n):
    # In a transaction of its own: ZODB's undo commits through a storage
    # instance of its own, so joined to a connection's changes on the same
    # storage it would wait for that connection's commit lock forever.
    # Undoing the database's first transaction would take the root away,
    # leaving nothing to compare; undoing the rest is fair game.
    log = [entry for entry in world.db.undoLog(0, 6)
           if text(entry['description']) != 'initial database creation'][:5]
    if not log:
        return 'nothing to undo'
    entry = log[n % len(log)]
    tm = transaction.TransactionManager(explicit=True)
    txn = tm.begin()
    try:
        world.db.undo(entry['id'], txn)
        txn.note('undo')
        tm.commit()
    except BaseException:
        tm.abort()
        raise
    world.tids.append(world.db.lastTransaction())
    return text(entry['description'])


def op_dump(world, c):
    return zodb_app.dump(world.root(c))


def op_look_back(world, n):
    tid = world.tids[n % len(world.tids)]
    conn = world.db.open(at=tid)
    try:
        return zodb_app.dump(conn.root())
    finally:
        conn.close()


# -- the worlds -------------------------------------------------------------

def zodb_reference(directory):
    return ZODB.DB(ZODB.FileStorage.FileStorage(
        os.path.join(directory, 'Data.fs')))


WORLDS = [
    ('zodb/objstore-memory', lambda d: ZODB.DB(adapt(MemoryStorage()))),
    ('objstore/memory', lambda d: objstore.DB(MemoryStorage())),
    ('objstore/file', lambda d: objstore.DB(
        FileStorage(os.path.join(d, 'objstore.fs'), fsync=False))),
]


class Differential(RuleBasedStateMachine):
    """The same program on every world; outcomes and views must agree."""

    def __init__(self):
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix='objstore-differential-')
        self.worlds = []

    @initialize()
    def open_worlds(self):
        self.worlds.append(World('zodb', zodb_reference(self.directory)))
        for name, make in WORLDS:
            self.worlds.append(World(name, make(self.directory)))
        self.run(self._populate)

    @staticmethod
    def _populate(world):
        root = world.root(0)
        root['counter'] = Length()
        root['a'] = new_object('item', 1)
        root['b'] = new_object('item', 2)
        root['m'] = new_object('mapping', 3)
        root['t'] = new_object('tree', 4)
        op_commit(world, 0, 'populate')
        for c in 1, 2:
            world.restart(c, lambda tm: tm.abort())
        return 'populated'

    def run(self, op, *args):
        """Run op on every world; every outcome must equal the reference's."""
        outcomes = []
        for world in self.worlds:
            try:
                outcome = ('ok', op(world, *args))
            except Exception as exc:
                outcome = ('error', error_kind(exc))
            outcomes.append(outcome)
        reference = outcomes[0]
        different = [(world.name, outcome)
                     for world, outcome in zip(self.worlds, outcomes)
                     if outcome != reference]
        assert not different, (
            '%s%r: %s gave %r, but %r' % (
                op.__name__, args, self.worlds[0].name, reference,
                different))
        if reference[0] == 'error' or op.__name__ in ('op_commit', 'op_undo'):
            event('%s: %s' % (op.__name__, reference[1]
                              if reference[0] == 'error' else 'ok'))
        return reference

    # -- rules --------------------------------------------------------------

    @rule(c=conn_no, key=root_key, attribute=st.sampled_from(ATTRIBUTES),
          value=small)
    def set_attribute(self, c, key, attribute, value):
        self.run(op_set_attribute, c, key, attribute, value)

    @rule(c=conn_no, key=root_key, item_key=st.sampled_from(ITEM_KEYS),
          value=small, as_object=st.booleans())
    def set_key(self, c, key, item_key, value, as_object):
        self.run(op_set_key, c, key, item_key, value, as_object)

    @rule(c=conn_no, key=root_key, item_key=st.sampled_from(ITEM_KEYS))
    def del_key(self, c, key, item_key):
        self.run(op_del_key, c, key, item_key)

    @rule(c=conn_no, key=root_key, start=st.sampled_from([0, 20, 100]))
    def fill_tree(self, c, key, start):
        self.run(op_fill_tree, c, key, start)

    @rule(c=conn_no, key=root_key,
          kind=st.sampled_from(['item', 'mapping', 'tree']), seed=small)
    def replace(self, c, key, kind, seed):
        self.run(op_replace, c, key, kind, seed)

    @rule(c=conn_no, key=root_key)
    def delete_root_key(self, c, key):
        self.run(op_delete_root_key, c, key)

    @rule(c=conn_no, n=st.integers(-2, 5))
    def count(self, c, n):
        self.run(op_count, c, n)

    @rule(c=conn_no, note=st.sampled_from(['one', 'two', 'three']))
    def commit(self, c, note):
        self.run(op_commit, c, note)

    @rule(c=conn_no)
    def commit_both(self, c):
        # The two writers commit back to back, in either order: the second
        # commits against a snapshot older than the first's commit.
        self.run(op_commit, c, 'first')
        self.run(op_commit, 1 - c, 'second')

    @rule(c=conn_no)
    def abort(self, c):
        self.run(op_abort, c)

    @rule(c=conn_no)
    def savepoint(self, c):
        self.run(op_savepoint, c)

    @rule(c=conn_no, n=st.integers(0, 3))
    def rollback(self, c, n):
        self.run(op_rollback, c, n)

    @rule(c=st.sampled_from([0, 1, 2]))
    def cache_minimize(self, c):
        self.run(op_cache_minimize, c)

    @rule(n=st.integers(0, 4))
    def undo(self, n):
        self.run(op_undo, n)

    @rule(n=st.integers(0, 50))
    def look_back(self, n):
        self.run(op_look_back, n)

    # -- what every connection shows after every step ----------------------

    @invariant()
    def connections_show_the_same(self):
        if not self.worlds:
            return
        # The watcher starts a new transaction each time: it shows the
        # latest committed state, seen through its invalidated cache.
        self.run(op_abort, 2)
        for c in range(3):
            self.run(op_dump, c)

    def teardown(self):
        try:
            for world in self.worlds:
                world.close()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


Differential.TestCase.settings = settings(
    max_examples=5000 if LONG else 250,
    stateful_step_count=100 if LONG else 50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_zodb_and_objstore_agree = Differential.TestCase
