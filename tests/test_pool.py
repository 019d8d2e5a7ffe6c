"""objstore.pool: opening, the root, new, transactions, gc, close."""
import decimal
import logging
import os
import stat

import pytest
import transaction
from zope.interface.verify import verifyObject

from objstore import errors
from objstore import pool as pool_mod
from objstore.pool import (
    MIN_POOL_SIZE, PersistentDict, PersistentList, PersistentObject)
from test_pool_support import (  # noqa: F401 -- fixtures
    PMEM, make_pool, pool, storage_records)


class Thing(PersistentObject):
    kind = 'thing'

    def __init__(self, name='x'):
        self.name = name

    def shout(self):
        return self.name.upper()


class Volatile(PersistentObject):
    calls = []

    def _v__init__(self):
        self._v_ready = 'ready'
        Volatile.calls.append(getattr(self, 'name', None))

    def __init__(self):
        Volatile.calls.append('__init__')
        self.name = 'v'


# -- opening: flags and errors ------------------------------------------------


def test_create_then_open_round_trip(make_pool):
    pool = make_pool('x')
    pool.root = 10
    pool.close()
    pool = make_pool('w')
    assert pool.root == 10
    assert pool.recovered is False


def test_open_function_on_a_missing_file_raises_oserror(tmp_path):
    path = str(tmp_path / 'f.pool')
    with pytest.raises(FileNotFoundError):
        pool_mod.open(path)
    assert not os.path.exists(path)


@pytest.mark.skipif(not PMEM, reason='PMemStorage is not available yet')
def test_create_and_open_functions_use_pmem_storage(tmp_path):
    from objstore.storages import PMemStorage
    path = str(tmp_path / 'f.pool')
    with pool_mod.create(path) as pool:
        assert isinstance(pool._db.storage, PMemStorage)
        pool.root = pool.new(PersistentList, [1])
    with pytest.raises(FileExistsError):
        pool_mod.create(path)
    with pool_mod.open(path, debug=True) as pool:
        assert pool.root == [1] and pool.debug


def test_flag_w_on_missing_file_raises_oserror_and_creates_nothing(
        make_pool):
    with pytest.raises(OSError) as info:
        make_pool('w')
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.filename == str(make_pool.path)
    assert not make_pool.path.exists()


def test_flag_x_on_existing_file_raises_oserror(make_pool):
    make_pool('x').close()
    with pytest.raises(FileExistsError):
        make_pool('x')


def test_flag_c_creates_then_opens(make_pool):
    pool = make_pool('c')
    pool.root = 'first'
    pool.close()
    pool = make_pool('c')
    assert pool.root == 'first'


def test_flag_r_and_unknown_flags_raise_valueerror(make_pool):
    make_pool('x').close()
    with pytest.raises(ValueError, match='Read-only mode is not supported'):
        make_pool('r')
    with pytest.raises(ValueError, match='Invalid flag'):
        make_pool('a')


def test_pool_size_below_minimum_raises_valueerror(make_pool):
    with pytest.raises(ValueError, match=r'size ?\d+ smaller than %d'
                       % MIN_POOL_SIZE):
        make_pool('x', pool_size=MIN_POOL_SIZE - 1)
    assert not make_pool.path.exists()


def test_pool_size_is_ignored_when_opening(make_pool):
    make_pool('x').close()
    make_pool('c', pool_size=1).close()


def test_mode_sets_the_permissions_of_a_new_file(make_pool):
    old = os.umask(0o022)
    try:
        pool = make_pool('x', mode=0o660)
    finally:
        os.umask(old)
    # As open(2): the umask applies.
    assert stat.S_IMODE(os.stat(make_pool.path).st_mode) == 0o640
    pool.close()
    if make_pool.kind == 'pmem':
        # (FileStorage's pack, run by close, writes a new file: 0o644.)
        assert stat.S_IMODE(os.stat(make_pool.path).st_mode) == 0o640


def test_filename_and_repr(make_pool):
    pool = make_pool('x')
    assert pool.filename == str(make_pool.path)
    assert 'test.pool' in repr(pool)


def test_close_is_idempotent_and_context_manager_closes(make_pool):
    with make_pool('x') as pool:
        pool.root = 1
    assert pool.closed
    pool.close()
    with pytest.raises(errors.StorageClosedError):
        pool.root = 2
    with pytest.raises(errors.StorageClosedError):
        pool.root


def test_pool_provides_its_interfaces(pool):
    from objstore.pool.interfaces import (
        IMemoryManager, IPersistentObjectPool, IPoolPersistent)
    assert verifyObject(IPersistentObjectPool, pool)
    assert verifyObject(IMemoryManager, pool.mm)
    assert verifyObject(IPoolPersistent, pool.new(PersistentList))


# -- the root ---------------------------------------------------------------


@pytest.mark.parametrize('value', [None, True, False, 5, 10.5, 'abcde',
                                   'abő', b'raw', 3 + 4j, (1, ('a', 2.5)),
                                   frozenset([1, 2])])
def test_immutable_values_as_root(make_pool, value):
    pool = make_pool('x')
    pool.root = value
    assert pool.root == value
    pool = make_pool.reopen(pool)
    assert pool.root == value
    assert type(pool.root) is type(value)


def test_root_is_none_in_a_new_pool(pool):
    assert pool.root is None


def test_root_collection_keeps_identity(pool):
    root = pool.root = pool.new(PersistentList)
    root.append(id(root))
    assert pool.root is root
    assert pool.root[0] == id(root)


def test_root_lives_under_a_reserved_key_of_the_db_root(pool):
    pool.root = 'x'
    db_root = pool._connection.root()
    assert list(db_root) == ['objstore.pool']
    assert db_root['objstore.pool'].root == 'x'


def test_unknown_types_are_refused(pool):
    class Foo:
        pass
    with pytest.raises(TypeError, match="Don't know how to persist.*Foo"):
        pool.root = Foo()
    with pytest.raises(TypeError, match="Don't know how to persist"):
        pool.root = [1, 2]       # a plain list: its changes would be lost
    assert pool.root is None
    lst = pool.root = pool.new(PersistentList)
    with pytest.raises(TypeError):
        lst.append({'a': 1})
    with pytest.raises(TypeError):
        lst.append((1, [2]))
    assert lst == []


def test_persist_via_pickle(make_pool):
    pool = make_pool('x')
    with pytest.raises(TypeError):
        pool.root = decimal.Decimal('1.5')
    pool.persist_via_pickle(decimal.Decimal)
    value = pool.root = decimal.Decimal('120.00075')
    pool = make_pool.reopen(pool)
    # Reading needs no nomination; storing again does.
    assert pool.root == value and type(pool.root) is decimal.Decimal
    with pytest.raises(TypeError):
        pool.root = decimal.Decimal('2')
    with pytest.raises(TypeError):
        pool.persist_via_pickle('decimal.Decimal')


def test_objects_of_another_pool_are_refused(make_pool, tmp_path):
    one = make_pool('x')
    other = make_pool('x', path=tmp_path / 'other.pool')
    with pytest.raises(errors.InvalidObjectReference):
        one.root = other.new(PersistentList)


# -- new and the object types -----------------------------------------------


def test_new_runs_v_init_before_init_and_at_resurrection(make_pool):
    Volatile.calls = []
    pool = make_pool('x')
    obj = pool.root = pool.new(Volatile)
    assert Volatile.calls == [None, '__init__']
    assert obj._v_ready == 'ready'
    pool = make_pool.reopen(pool)
    Volatile.calls = []
    assert pool.root.name == 'v'
    assert pool.root._v_ready == 'ready'
    assert Volatile.calls == ['v']


def test_new_refuses_types_without_the_pool_protocol(pool):
    with pytest.raises(TypeError, match='not a pool type'):
        pool.new(list)
    import persistent
    with pytest.raises(TypeError, match='not a pool type'):
        pool.new(persistent.Persistent)


def test_new_passes_arguments_and_objects_know_their_pool(pool):
    thing = pool.new(Thing, name='bob')
    assert thing.name == 'bob' and thing.shout() == 'BOB'
    assert thing._p_mm is pool.mm
    assert pool.mm.new(PersistentDict, a=1) == {'a': 1}
    assert PersistentList()._p_mm is None


def test_object_attributes_persist(make_pool):
    pool = make_pool('x')
    thing = pool.root = pool.new(Thing)
    thing.bar = 1
    thing.bar += 1
    thing.kind += '!'
    thing.child = pool.new(PersistentDict, a='b')
    del thing.name
    with pytest.raises(AttributeError):
        del thing.missing
    pool = make_pool.reopen(pool)
    thing = pool.root
    assert (thing.bar, thing.kind, thing.child) == (2, 'thing!', {'a': 'b'})
    assert Thing.kind == 'thing'
    assert not hasattr(thing, 'name')
    assert thing._p_mm is pool.mm


def test_objects_made_outside_a_pool_join_it_when_stored(make_pool):
    Volatile.calls = []
    pool = make_pool('x')
    inner = PersistentDict(v=Volatile())
    outer = PersistentList([inner, (inner,)])
    assert outer._p_mm is None
    pool.root = outer
    assert outer._p_mm is pool.mm and inner._p_mm is pool.mm
    assert inner['v']._v_ready == 'ready'
    pool = make_pool.reopen(pool)
    root = pool.root
    assert root[0] is root[1][0]
    assert root[0]['v'].name == 'v'


def test_plain_objects_made_outside_accept_anything_until_stored(pool):
    loose = PersistentList()
    loose.append([1])
    with pytest.raises(TypeError):
        pool.root = loose
    assert pool.root is None
    assert loose._p_mm is None


# -- transactions ----------------------------------------------------------


def test_transaction_commits_every_kind_of_change_together(make_pool):
    pool = make_pool('x')
    root = pool.root = pool.new(PersistentDict)
    with pool.transaction():
        root['list'] = pool.new(PersistentList, [1])
        root['list'].append(2)
        root['thing'] = pool.new(Thing)
        root['thing'].extra = 'e'
    pool = make_pool.reopen(pool)
    assert pool.root['list'] == [1, 2]
    assert pool.root['thing'].extra == 'e'


def test_exception_rolls_back_every_kind_of_change(make_pool):
    pool = make_pool('x')
    root = pool.root = pool.new(PersistentDict, a=1)
    lst = root['list'] = pool.new(PersistentList, [1, 2])
    thing = root['thing'] = pool.new(Thing)
    with pytest.raises(RuntimeError, match='boo'):
        with pool.transaction():
            root['a'] = 2
            del root['list']
            lst.append(3)
            lst[0] = 'changed'
            thing.name = 'changed'
            thing.new_attr = 1
            pool.root = 'other root'
            raise RuntimeError('boo')
    assert pool.root is root
    assert root == {'a': 1, 'list': lst, 'thing': thing}
    assert lst == [1, 2]
    assert thing.name == 'x' and not hasattr(thing, 'new_attr')
    pool = make_pool.reopen(pool)
    assert pool.root['a'] == 1 and pool.root['list'] == [1, 2]
    with pool.transaction():
        pool.root['a'] = 3
    assert pool.root['a'] == 3


def test_nested_blocks_join_the_outer_one(make_pool):
    pool = make_pool('x')
    root = pool.root = pool.new(PersistentList)
    with pool.transaction():
        root.append(1)
        with pool.transaction():
            root.append(2)
        root.append(3)
    assert root == [1, 2, 3]


def test_nested_block_commit_is_not_durable_before_the_outer_ends(
        make_pool):
    pool = make_pool('x')
    root = pool.root = pool.new(PersistentList)
    last = pool._db.lastTransaction()
    with pool.transaction():
        with pool.transaction():
            root.append(1)
        assert pool._db.lastTransaction() == last
    assert pool._db.lastTransaction() != last


def test_exception_in_a_nested_block_rolls_back_everything(pool):
    root = pool.root = pool.new(PersistentList)
    with pytest.raises(errors.TransactionError, match='nested'):
        with pool.transaction():
            root.append(1)
            try:
                with pool.transaction():
                    root.append(2)
                    raise KeyError('inner')
            except KeyError:
                pass
            root.append(3)
    assert root == []
    with pool.transaction():
        root.append(4)
    assert root == [4]


def test_nested_exception_propagating_out_reraises_it(pool):
    root = pool.root = pool.new(PersistentList)
    with pytest.raises(KeyError):
        with pool.transaction():
            root.append(1)
            with pool.transaction():
                raise KeyError('inner')
    assert root == []


def test_each_change_outside_a_transaction_commits_on_its_own(pool):
    root = pool.root = pool.new(PersistentList)
    last = pool._db.lastTransaction()
    root.append(1)
    after_append = pool._db.lastTransaction()
    assert after_append > last
    with pytest.raises(IndexError):
        root.pop(5)
    assert pool._db.lastTransaction() == after_append
    assert root == [1]


def test_pool_never_uses_the_threads_transaction_manager(pool):
    root = pool.root = pool.new(PersistentList)
    outside = transaction.get()
    with pool.transaction():
        root.append(1)
    root.append(2)
    assert transaction.get() is outside
    assert not outside._resources
    transaction.abort()
    assert root == [1, 2]


def test_gc_and_close_refuse_to_run_inside_a_transaction(pool):
    with pool.transaction():
        with pytest.raises(errors.TransactionError):
            pool.gc()
        with pytest.raises(errors.TransactionError):
            pool.close()
    pool.close()


# -- gc ---------------------------------------------------------------------


def test_gc_frees_orphans_and_unreachable_cycles(make_pool):
    pool = make_pool('x')
    pool.new(PersistentList)
    pool.new(PersistentDict)
    type_counts, gc_counts = pool.gc(debug=True)
    assert gc_counts['objects-gced'] == 2
    assert 'PersistentList' not in type_counts
    root = pool.root = pool.new(PersistentList)
    root.append(pool.new(PersistentList))
    root.append(pool.new(PersistentList))
    root[0].append(root[1])
    root[1].append(root[0])
    type_counts, gc_counts = pool.gc(debug=True)
    assert type_counts['PersistentList'] == 3
    assert gc_counts['objects-gced'] == 0
    records = storage_records(pool)
    root.clear()
    type_counts, gc_counts = pool.gc(debug=True)
    assert type_counts['PersistentList'] == 1
    assert gc_counts['objects-gced'] == 2
    assert storage_records(pool) == records - 2


def test_gc_without_debug_returns_nothing_and_debug_logs_orphans(
        make_pool, caplog):
    pool = make_pool('x', debug=True)
    pool.new(PersistentList)
    assert pool.gc(debug=False) is None
    pool.new(PersistentList)
    with caplog.at_level(logging.WARNING, logger='objstore.pool'):
        result = pool.gc()
    assert result is not None
    assert any('unreachable' in r.getMessage() for r in caplog.records)


def test_gc_keeps_counts_stable_when_the_root_is_replaced(pool):
    pool.root = pool.new(PersistentList, [1, 2])
    before = pool.gc(debug=True)
    pool.root = pool.new(PersistentList, [3, 4])
    after = pool.gc(debug=True)
    assert before[0] == after[0]


def test_close_runs_gc(make_pool):
    pool = make_pool('x')
    pool.root = pool.new(PersistentList)
    pool.new(PersistentDict)
    pool = make_pool.reopen(pool)
    type_counts, gc_counts = pool.gc(debug=True)
    assert 'PersistentDict' not in type_counts
    assert gc_counts['objects-gced'] == 0


def test_unclean_close_recovers_and_runs_gc(make_pool):
    pool = make_pool('x')
    pool.root = pool.new(PersistentList, [1])
    pool.new(PersistentDict)
    # Stop using the pool without closing it (as a crash would).
    pool.closed = True
    pool._db.close()
    again = make_pool('w')
    assert again.recovered
    assert again.root == [1]
    type_counts, gc_counts = again.gc(debug=True)
    assert 'PersistentDict' not in type_counts
    assert gc_counts['objects-gced'] == 0
    again = make_pool.reopen(again)
    assert not again.recovered


def test_vars_of_an_object_not_yet_loaded_shows_its_attributes(make_pool):
    pool = make_pool('x')
    pool.root = pool.new(Thing, name='n')
    pool = make_pool.reopen(pool)
    assert pool.root._p_changed is None         # a ghost
    assert vars(pool.root) == {'name': 'n'}


def test_a_call_that_raises_changes_nothing(pool):
    # Where builtins may keep part of a failed call, pool objects keep none.
    root = pool.root = pool.new(PersistentDict)
    with pytest.raises(ValueError):
        root.update([(1, 2), (3,)])
    assert root == {}
    lst = root['l'] = pool.new(PersistentList)

    def failing():
        yield 1
        raise RuntimeError('half way')
    with pytest.raises(RuntimeError):
        lst.extend(failing())
    assert lst == []
    with pytest.raises(TypeError):
        lst.extend([1, object()])
    assert lst == []


def test_another_threads_change_waits_for_a_transaction_block(make_pool):
    import threading
    pool = make_pool('x')
    root = pool.root = pool.new(PersistentList)
    inside = threading.Event()
    done = threading.Event()

    def other_thread():
        inside.wait(10)
        root.append('other')        # waits for the block, then commits
        done.set()

    thread = threading.Thread(target=other_thread)
    thread.start()
    with pytest.raises(RuntimeError):
        with pool.transaction():
            root.append('block')
            inside.set()
            assert not done.wait(0.2)
            raise RuntimeError('roll the block back')
    thread.join(10)
    assert done.is_set()
    assert root == ['other']
    with pytest.raises(errors.TransactionError):
        # The other thread cannot allocate inside this thread's block.
        with pool.transaction():
            failures = []
            worker = threading.Thread(target=lambda: failures.append(
                _try(lambda: pool.mm.alloc(4))))
            worker.start()
            worker.join(0.2)
            raise errors.TransactionError('done')
    worker.join(10)
    assert failures == [errors.TransactionError]
    pool = make_pool.reopen(pool)
    assert pool.root == ['other']


def _try(fn):
    try:
        fn()
    except Exception as exc:
        return type(exc)
    return None
