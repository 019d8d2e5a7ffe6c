"""pool.mm: raw transactional blocks, direct() shadows, counts, persist."""
import pytest

from objstore import errors
from objstore.pool import (
    OID_NULL, POBJECT_TYPE_NUM, PersistentDict, PersistentList)
from test_pool_support import make_pool, pool  # noqa: F401 -- fixtures

RAW = 7     # a type_num other than POBJECT_TYPE_NUM: raw memory gc leaves


def test_alloc_free_realloc_outside_a_transaction_raise(pool):
    with pytest.raises(errors.TransactionError):
        pool.mm.alloc(8)
    with pytest.raises(errors.TransactionError):
        pool.mm.zalloc(8)
    with pool.transaction():
        oid = pool.mm.alloc(8, RAW)
    with pytest.raises(errors.TransactionError):
        pool.mm.realloc(oid, 16)
    with pytest.raises(errors.TransactionError):
        pool.mm.zrealloc(oid, 16)
    with pytest.raises(errors.TransactionError):
        pool.mm.free(oid)


def test_alloc_gives_zeroed_blocks_and_tuple_oids(pool):
    with pool.transaction():
        oid = pool.mm.alloc(16, RAW)
        zoid = pool.mm.zalloc(4, RAW)
        assert pool.mm.alloc(0) == OID_NULL
    assert isinstance(oid, tuple) and len(oid) == 2
    assert oid[0] == zoid[0] != 0
    assert bytes(pool.mm.direct(oid)) == bytes(16)
    assert bytes(pool.mm.direct(zoid)) == bytes(4)
    assert pool.mm.otuple(oid) is oid


def test_direct_writes_become_the_block_at_commit(make_pool):
    pool = make_pool('x')
    with pool.transaction():
        oid = pool.mm.alloc(8, RAW)
        view = pool.mm.direct(oid)
        view[:4] = b'abcd'
        # A second view of the same block sees the same shadow.
        assert bytes(pool.mm.direct(oid)[:4]) == b'abcd'
    assert bytes(pool.mm.direct(oid)) == b'abcd\0\0\0\0'
    pool.root = oid
    pool = make_pool.reopen(pool)
    assert bytes(pool.mm.direct(pool.root)) == b'abcd\0\0\0\0'


def test_direct_view_is_released_when_the_transaction_ends(pool):
    with pool.transaction():
        oid = pool.mm.alloc(8, RAW)
        view = pool.mm.direct(oid)
    with pytest.raises(ValueError):
        view[0] = 1
    with pytest.raises(ValueError):
        bytes(view)


def test_abort_leaves_the_old_bytes(pool):
    with pool.transaction():
        oid = pool.mm.alloc(4, RAW)
        pool.mm.direct(oid)[:] = b'old!'
    with pytest.raises(RuntimeError):
        with pool.transaction():
            pool.mm.direct(oid)[:] = b'new!'
            raise RuntimeError
    assert bytes(pool.mm.direct(oid)) == b'old!'


def test_direct_outside_a_transaction_is_read_only(pool):
    with pool.transaction():
        oid = pool.mm.alloc(4, RAW)
    view = pool.mm.direct(oid)
    assert view.readonly
    with pytest.raises(TypeError):
        view[0] = 1


def test_realloc_copies_truncates_and_zero_fills(pool):
    with pool.transaction():
        oid = pool.mm.alloc(4, RAW)
        pool.mm.direct(oid)[:] = b'wxyz'
        bigger = pool.mm.realloc(oid, 6)
        assert bigger != oid
        assert bytes(pool.mm.direct(bigger)) == b'wxyz\0\0'
        smaller = pool.mm.zrealloc(bigger, 2, RAW)
        assert bytes(pool.mm.direct(smaller)) == b'wx'
        with pytest.raises(errors.InvalidArgumentError, match='type_num'):
            pool.mm.realloc(smaller, 3, RAW + 1)
        with pytest.raises(errors.InvalidArgumentError, match='no allocated block'):
            pool.mm.direct(oid)
        assert pool.mm.realloc(smaller, 0) == OID_NULL
        fresh = pool.mm.realloc(OID_NULL, 3, RAW)
        assert bytes(pool.mm.direct(fresh)) == bytes(3)


def test_free_releases_a_block(pool):
    with pool.transaction():
        oid = pool.mm.alloc(4, RAW)
    with pool.transaction():
        pool.mm.free(oid)
        with pytest.raises(errors.InvalidArgumentError):
            pool.mm.direct(oid)
    with pytest.raises(errors.InvalidArgumentError):
        pool.mm.direct(oid)


def test_a_freed_block_is_gone_after_gc_and_raw_blocks_survive_gc(pool):
    with pool.transaction():
        kept = pool.mm.alloc(4, RAW)
        freed = pool.mm.alloc(4, RAW)
    with pool.transaction():
        pool.mm.free(freed)
    type_counts, gc_counts = pool.gc(debug=True)
    assert type_counts['Block'] == 1
    assert gc_counts['objects-gced'] == 1
    assert bytes(pool.mm.direct(kept)) == bytes(4)


def test_pobject_blocks_with_count_zero_are_orphans_gc_frees(pool):
    with pool.transaction():
        orphan = pool.mm.alloc(4)
        counted = pool.mm.alloc(4, POBJECT_TYPE_NUM)
        pool.mm.incref(counted)
    type_counts, gc_counts = pool.gc(debug=True)
    assert gc_counts['orphans0-gced'] == 1
    assert type_counts['Block'] == 1
    with pytest.raises(errors.InvalidArgumentError):
        pool.mm.direct(orphan)
    assert bytes(pool.mm.direct(counted)) == bytes(4)


def test_incref_decref_free_a_block_at_zero(pool):
    with pool.transaction():
        oid = pool.mm.alloc(4, RAW)
    pool.mm.incref(oid)         # outside a transaction: a change of its own
    pool.mm.incref(oid)
    pool.mm.decref(oid)
    assert bytes(pool.mm.direct(oid)) == bytes(4)
    pool.mm.decref(oid)
    with pytest.raises(errors.InvalidArgumentError):
        pool.mm.direct(oid)
    with pytest.raises(errors.InvalidArgumentError):
        pool.mm.decref(oid)
    pool.mm.xdecref(OID_NULL)
    pool.mm.incref(OID_NULL)


def test_incref_pins_a_pool_object_through_gc(make_pool):
    pool = make_pool('x')
    pinned = pool.new(PersistentList, [1])
    loose = pool.new(PersistentDict)
    pool.mm.incref(pinned._p_oid)
    pool.gc()
    oid = pool.mm.otuple(pinned._p_oid)
    pool = make_pool.reopen(pool)
    assert pool.mm.resurrect(oid) == [1]
    pool.mm.decref(oid)
    type_counts, gc_counts = pool.gc(debug=True)
    assert gc_counts['objects-gced'] == 1
    assert 'PersistentList' not in type_counts
    del loose


def test_free_refuses_pool_objects(pool):
    obj = pool.new(PersistentList)
    pool.mm.incref(obj._p_oid)
    with pool.transaction():
        with pytest.raises(errors.InvalidArgumentError, match='pool object'):
            pool.mm.free(obj._p_oid)


def test_persist_and_resurrect(make_pool):
    pool = make_pool('x')
    assert pool.mm.persist(None) == OID_NULL
    assert pool.mm.resurrect(OID_NULL) is None
    lst = pool.new(PersistentList)
    assert pool.mm.persist(lst) == pool.mm.otuple(lst._p_oid)
    assert pool.mm.resurrect(pool.mm.persist(lst)) is lst
    loose = PersistentDict(a=1)
    oid = pool.mm.persist(loose)
    assert loose._p_mm is pool.mm and pool.mm.resurrect(oid) is loose
    text = pool.mm.persist('some text')
    pool.mm.incref(text)
    number = pool.mm.persist(42)        # count 0: gone at the next gc
    assert pool.mm.resurrect(text) == 'some text'
    assert pool.mm.resurrect(number) == 42
    with pytest.raises(TypeError):
        pool.mm.persist(object())
    pool = make_pool.reopen(pool)
    assert pool.mm.resurrect(text) == 'some text'
    with pytest.raises(errors.InvalidArgumentError):
        pool.mm.resurrect(number)


def test_resurrect_of_raw_memory_and_foreign_oids_raise(pool):
    with pool.transaction():
        oid = pool.mm.alloc(4, RAW)
    with pytest.raises(errors.InvalidArgumentError, match='raw memory'):
        pool.mm.resurrect(oid)
    with pytest.raises(errors.InvalidArgumentError, match='not an oid'):
        pool.mm.direct((oid[0] + 1, oid[1]))
    with pytest.raises(errors.InvalidArgumentError):
        pool.mm.otuple('nonsense')
    with pytest.raises(errors.InvalidArgumentError):
        pool.mm.direct(pool.mm.persist(1))


def test_bad_sizes_and_type_nums(pool):
    with pool.transaction():
        for size in (-1, 1.5, '8', True):
            with pytest.raises(errors.InvalidArgumentError):
                pool.mm.alloc(size)
        with pytest.raises(errors.InvalidArgumentError):
            pool.mm.alloc(8, -3)


def test_objects_reach_their_memory_manager(pool):
    obj = pool.new(PersistentList)
    assert obj._p_mm is pool.mm
    with obj._p_mm.transaction():
        oid = obj._p_mm.alloc(2, RAW)
    assert list(obj._p_traverse()) == []
    obj.append(pool.new(PersistentList))
    assert list(obj._p_traverse()) == [pool.mm.otuple(obj[0]._p_oid)]
    assert list(obj._p_substructures()) == []
    assert oid
