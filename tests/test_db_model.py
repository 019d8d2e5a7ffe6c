"""Random programs against a dict model: commits, aborts, savepoints,
rollbacks, second connections and time travel all show what the model says.
"""
import pytest
import transaction
from hypothesis import example, given, settings
from hypothesis import strategies as st
from persistent.mapping import PersistentMapping

from objstore import errors
from objstore.db import DB
from objstore.storages.memory import MemoryStorage

from db_fixtures import Item

KEYS = st.sampled_from('abcde')
OPS = st.one_of(
    st.tuples(st.just('set'), KEYS, st.integers(0, 9)),
    st.tuples(st.just('new'), KEYS, st.integers(0, 9)),
    st.tuples(st.just('del'), KEYS),
    st.tuples(st.just('commit')),
    st.tuples(st.just('abort')),
    st.tuples(st.just('savepoint')),
    st.tuples(st.just('rollback')),
    st.tuples(st.just('minimize')),
)


def _visible(connection):
    """The model's view of the database through a connection."""
    return {k: item.value for k, item in connection.root.items.items()}


@settings(max_examples=60, deadline=None)
@given(st.lists(OPS, max_size=40))
def test_random_programs_match_the_model(program):
    database = DB(MemoryStorage())
    manager = transaction.TransactionManager()
    connection = database.open(manager)
    connection.root.items = PersistentMapping()
    manager.commit()
    committed, current = {}, {}
    savepoints = []             # (savepoint, copy of the model then)
    history = [(database.lastTransaction(), {})]
    try:
        for op in program:
            items = connection.root.items
            if op[0] == 'set' and op[1] in items:
                items[op[1]].value = op[2]
                current[op[1]] = op[2]
            elif op[0] in ('set', 'new'):
                items[op[1]] = Item(value=op[2])
                current[op[1]] = op[2]
            elif op[0] == 'del' and op[1] in items:
                del items[op[1]]
                del current[op[1]]
            elif op[0] == 'commit':
                manager.commit()
                committed = dict(current)
                savepoints = []
                history.append((database.lastTransaction(), committed))
            elif op[0] == 'abort':
                manager.abort()
                current = dict(committed)
                savepoints = []
            elif op[0] == 'savepoint':
                savepoints.append((manager.savepoint(), dict(current)))
            elif op[0] == 'rollback' and savepoints:
                savepoint, state = savepoints[-1]
                savepoint.rollback()
                current = dict(state)
            elif op[0] == 'minimize':
                connection.cacheMinimize()
            assert _visible(connection) == current
        other = database.open(transaction.TransactionManager())
        assert _visible(other) == committed
        other.close()
        for tid, state in history:
            past = database.open(at=tid)
            assert _visible(past) == state
            past.close()
    finally:
        manager.abort()
        database.close()


WRITER_OPS = st.one_of(
    OPS,
    st.tuples(st.just('other'), KEYS, st.integers(10, 19)),
)


class Model:
    """What the main connection must see and what its commits must do.

    Items are tokens (one per Item object) with values; ``committed`` maps
    keys to tokens as stored, ``values`` tokens to committed values. The
    main connection's view is ``view`` (key -> (token, value)); ``written``
    holds the tokens it changed in this transaction, ``others`` the tokens
    the other connection committed since this transaction began.
    """

    def __init__(self):
        self.committed, self.values = {}, {}
        self.tokens = 0
        self.begin()

    def begin(self):
        self.view = {k: (t, self.values[t]) for k, t in self.committed.items()}
        self.written, self.others = set(), set()

    def new_token(self):
        self.tokens += 1
        return self.tokens

    def mark(self):
        return dict(self.view), set(self.written)

    def reset(self, mark):
        self.view, self.written = dict(mark[0]), set(mark[1])

    def commit_conflicts(self):
        return bool(self.written & self.others)

    def committed_view(self):
        return {k: self.values[t] for k, t in self.committed.items()}

    def apply_commit(self):
        for key, (token, value) in self.view.items():
            if token in self.written:
                self.values[token] = value
        self.committed = {k: t for k, (t, _) in self.view.items()}
        self.begin()


@settings(max_examples=60, deadline=None)
@given(st.lists(WRITER_OPS, max_size=40))
# A commit that conflicts after a savepoint must leave no savepointed
# state behind (the mapping here), a bug this test once missed.
@example([('new', 'a', 1), ('commit',), ('other', 'a', 10), ('new', 'b', 2),
          ('savepoint',), ('set', 'a', 3), ('commit',)])
def test_random_programs_with_a_concurrent_writer_match_the_model(program):
    database = DB(MemoryStorage())
    manager, other_manager = (transaction.TransactionManager()
                              for _ in range(2))
    connection = database.open(manager)
    other = database.open(other_manager)
    connection.root.items = PersistentMapping()
    manager.commit()
    model = Model()
    savepoints = []
    try:
        for op in program:
            items = connection.root.items
            if op[0] == 'set' and op[1] in items:
                items[op[1]].value = op[2]
                token = model.view[op[1]][0]
                model.view[op[1]] = (token, op[2])
                model.written.add(token)
            elif op[0] in ('set', 'new'):
                items[op[1]] = Item(value=op[2])
                token = model.new_token()
                model.view[op[1]] = (token, op[2])
                model.written.add(token)
            elif op[0] == 'del' and op[1] in items:
                del items[op[1]]
                del model.view[op[1]]
            elif op[0] == 'other' and op[1] in model.committed:
                other_manager.begin()
                other.root.items[op[1]].value = op[2]
                other_manager.commit()
                token = model.committed[op[1]]
                model.values[token] = op[2]
                model.others.add(token)
            elif op[0] == 'commit':
                if model.commit_conflicts():
                    with pytest.raises(errors.ConflictError):
                        manager.commit()
                    manager.abort()
                    model.begin()
                else:
                    manager.commit()
                    model.apply_commit()
                savepoints = []
            elif op[0] == 'abort':
                manager.abort()
                model.begin()
                savepoints = []
            elif op[0] == 'savepoint':
                savepoints.append((manager.savepoint(), model.mark()))
            elif op[0] == 'rollback' and savepoints:
                savepoint, mark = savepoints[-1]
                savepoint.rollback()
                model.reset(mark)
            elif op[0] == 'minimize':
                connection.cacheMinimize()
            assert _visible(connection) == {
                k: v for k, (_, v) in model.view.items()}
        other_manager.begin()
        assert _visible(other) == model.committed_view()
    finally:
        manager.abort()
        other_manager.abort()
        database.close()
