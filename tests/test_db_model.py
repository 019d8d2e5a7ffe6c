"""Random programs against a dict model: commits, aborts, savepoints,
rollbacks, second connections and time travel all show what the model says.
"""
import transaction
from hypothesis import given, settings
from hypothesis import strategies as st
from persistent.mapping import PersistentMapping

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
