"""Files a pool cannot open: an objstore error, and nothing written."""
import random

import pytest

from objstore import errors
from objstore import pool as pool_mod
from objstore.pool import PersistentDict, PersistentList
from test_pool_support import make_pool  # noqa: F401 -- fixture


def _snapshot(directory):
    return {p.name: p.read_bytes() for p in directory.iterdir()
            if p.is_file()}


@pytest.mark.parametrize('content', [b'', b'not a pool at all' * 100,
                                     b'\0' * 4096])
def test_a_file_that_is_not_a_pool_raises_and_is_not_written(
        make_pool, tmp_path, content):
    make_pool.path.write_bytes(content)
    before = _snapshot(tmp_path)
    with pytest.raises(errors.ObjstoreError):
        make_pool('w')
    with pytest.raises(errors.ObjstoreError):
        make_pool('c')
    assert _snapshot(tmp_path)[make_pool.path.name] == \
        before[make_pool.path.name]


def test_a_database_that_is_not_a_pool_raises_fileformaterror(
        make_pool, tmp_path):
    from objstore.db import DB
    storage = _plain_storage(make_pool, create=True)
    with DB(storage) as db:
        with db.transaction() as conn:
            conn.root()['app'] = 1
    before = make_pool.path.read_bytes()
    with pytest.raises(errors.FileFormatError, match='not a pool'):
        make_pool('w')
    assert make_pool.path.read_bytes() == before


def test_a_newer_pool_format_raises_unsupportedversionerror(make_pool):
    pool = make_pool('x')
    with pool._atomic():
        pool._header.format_version = pool_mod.FORMAT_VERSION + 1
    pool.close()
    before = make_pool.path.read_bytes()
    with pytest.raises(errors.UnsupportedVersionError, match='version 2'):
        make_pool('w')
    assert make_pool.path.read_bytes() == before


def _plain_storage(make_pool, create):
    if make_pool.factory is None:
        from objstore.storages import PMemStorage
        return PMemStorage(str(make_pool.path), create=create)
    return make_pool.factory(str(make_pool.path), create, None, False)


def _side_files(path):
    for other in path.parent.iterdir():
        if other != path:
            other.unlink()


def test_damaged_pool_files_raise_objstore_errors_or_read_right(make_pool):
    # A flipped byte anywhere: either the damage is found (an objstore
    # error, the file left as it was) or it hit bytes that do not matter
    # and the pool reads back exactly what was stored.
    pool = make_pool('x')
    expected = [{i: str(i)} for i in range(30)]
    pool.root = pool.new(PersistentList,
                         [pool.new(PersistentDict, d) for d in expected])
    pool.close()
    data = make_pool.path.read_bytes()
    rnd = random.Random(5)
    offsets = sorted({rnd.randrange(len(data)) for _ in range(25)}
                     | set(range(0, 512, 37)))
    for offset in offsets:
        damaged = bytearray(data)
        damaged[offset] ^= 0xFF
        make_pool.path.write_bytes(damaged)
        _side_files(make_pool.path)
        try:
            opened = make_pool('w')
        except errors.ObjstoreError:
            assert make_pool.path.read_bytes() == damaged, offset
            continue
        try:
            assert [dict(d) for d in opened.root] == expected, offset
        except errors.ObjstoreError:
            pass
        finally:
            opened.closed = True        # no gc or clean flag on damage
            opened._db.close()


@pytest.mark.filterwarnings('ignore:.*incomplete last transaction')
@pytest.mark.parametrize('keep', [0.02, 0.1, 0.5, 0.9, 0.999])
def test_truncated_pool_files_raise_objstore_errors_or_read_right(
        make_pool, keep):
    pool = make_pool('x')
    pool.root = pool.new(PersistentList, list(range(2000)))
    pool.close()
    data = make_pool.path.read_bytes()
    cut = data[:int(len(data) * keep)]
    make_pool.path.write_bytes(cut)
    _side_files(make_pool.path)
    try:
        opened = make_pool('w')
    except errors.ObjstoreError:
        assert make_pool.path.read_bytes() == cut
        return
    # Only the end of the log was cut (FileStorage recovers from that as
    # from a crash): what was committed before it reads back whole.
    try:
        assert list(opened.root) == list(range(2000))
    except errors.ObjstoreError:
        pass
