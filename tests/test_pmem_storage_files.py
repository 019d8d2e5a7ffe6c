"""PMemStorage on bad files: a clear objstore.errors exception, never a
crash of the interpreter, and nothing written to a file that failed to
open. (Crashes at each flush point and power loss are in
``test_pmem_crash.py`` and ``test_pmem_power_loss.py``.)"""
import hashlib
import os
import random

import pytest

from objstore import errors
from objstore.storages import PMemStorage
from objstore.storages.base import z64
from objstore.storages.pmem import format as fmt
from objstore.testing.helpers import new_object, record, set_value


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / 'data.pool')


def fingerprint(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest(), os.stat(path).st_mtime_ns


def refused(path, error, match=None, **kw):
    """Open ``path`` expecting ``error``; check the file did not change."""
    before = fingerprint(path)
    for read_only in (False, True):
        with pytest.raises(error, match=match):
            PMemStorage(path, read_only=read_only, **kw)
    assert fingerprint(path) == before


def make_pool(path, n=20, clean=True):
    storage = PMemStorage(path, pool_size=fmt.MIN_POOL_SIZE)
    oids = [new_object(storage, 'value %d' % i)[0] for i in range(n)]
    set_value(storage, oids[0], 'changed')
    if clean:
        storage.close()
    else:
        abandon(storage)
    return storage, oids


def abandon(storage):
    """Drop ``storage`` as a killed process would: no clean close."""
    storage._closed = True
    storage._release_files()


def patch(path, offset, data):
    with open(path, 'r+b') as f:
        f.seek(offset)
        f.write(data)


def test_a_file_that_is_not_a_pool(path):
    with open(path, 'wb') as f:
        f.write(b'just some text\n' * 1000)
    refused(path, errors.FileFormatError, 'not an objstore pmem pool')


def test_an_empty_or_tiny_file(path):
    open(path, 'wb').close()
    refused(path, errors.FileFormatError, 'not an objstore pmem pool')
    with open(path, 'wb') as f:
        f.write(b'OSPM')
    refused(path, errors.FileFormatError)


def test_a_pool_whose_creation_never_wrote_the_magic(path):
    make_pool(path)
    patch(path, 0, b'\0' * 8)
    refused(path, errors.FileFormatError, 'creation was interrupted')


def test_a_newer_format_version(path):
    make_pool(path)
    patch(path, 0, fmt.MAGIC_PREFIX + b'%02d' % (fmt.VERSION + 1))
    refused(path, errors.UnsupportedVersionError, 'version %d'
            % (fmt.VERSION + 1))
    assert issubclass(errors.UnsupportedVersionError, errors.FileFormatError)


def test_a_truncated_pool(path):
    make_pool(path)
    size = os.path.getsize(path)
    os.truncate(path, size // 2)
    refused(path, errors.CorruptionError, 'truncated')
    os.truncate(path, 100)
    refused(path, errors.CorruptionError, 'truncated')


def test_both_root_slots_damaged(path):
    make_pool(path)
    for offset in fmt.SLOT_OFFSETS:
        patch(path, offset + 8, b'\xff\xfe')
    refused(path, errors.CorruptionError, 'both root slots')


def test_a_torn_root_slot_falls_back_to_the_other(path):
    storage = PMemStorage(path, pool_size=fmt.MIN_POOL_SIZE)
    oid, before = new_object(storage, 'before')
    set_value(storage, oid, 'after')
    abandon(storage)
    with open(path, 'rb') as f:
        head = f.read(fmt.HEADER_SIZE)
    roots = [fmt.Root.unpack(head, offset) for offset in fmt.SLOT_OFFSETS]
    newest = max(range(2), key=lambda i: roots[i].generation)
    # The last commit's root write, torn: it fails its checksum, and the
    # pool opens as before that commit, whole.
    patch(path, fmt.SLOT_OFFSETS[newest] + 8, b'\xaa' * 8)
    reopened = PMemStorage(path)
    assert reopened.recovered is True
    assert reopened.lastTransaction() == before
    assert reopened.load(oid) == (record('before'), before)
    reopened.close()


def test_a_damaged_record_raises_corruption_error_on_load(path):
    storage, oids = make_pool(path)
    storage = PMemStorage(path)
    offset = storage._window.current.offset(int.from_bytes(oids[3], 'big'))
    storage.close()
    patch(path, offset + fmt.RECORD_HEAD + 5, b'\x00\x01\x02')
    storage = PMemStorage(path)
    with pytest.raises(errors.CorruptionError) as info:
        storage.load(oids[3])
    assert info.value.oid == oids[3] and info.value.offset == offset
    assert storage.load(oids[4])[0] == record('value 4')
    storage.close()


def test_a_damaged_table_node_raises_corruption_error(path):
    storage, oids = make_pool(path)
    storage = PMemStorage(path)
    table = storage._root.table
    storage.close()
    patch(path, table + 100, b'\x13\x37')
    storage = PMemStorage(path)
    with pytest.raises(errors.CorruptionError, match='table node'):
        storage.load(oids[0])
    storage.close()


def test_damage_found_by_recovery_writes_nothing(path):
    storage, oids = make_pool(path, clean=False)
    table = storage._root.table
    abandon(storage)
    patch(path, table + 100, b'\x13\x37')
    refused_writer = fingerprint(path)
    with pytest.raises(errors.CorruptionError):
        PMemStorage(path)
    assert fingerprint(path) == refused_writer


@pytest.mark.parametrize('seed', range(40))
def test_random_damage_never_crashes(path, seed):
    rng = random.Random(seed)
    make_pool(path, n=rng.randrange(1, 60), clean=rng.random() < 0.7)
    size = os.path.getsize(path)
    with open(path, 'r+b') as f:
        for _ in range(rng.randrange(1, 6)):
            where = rng.choice([rng.randrange(0, 512),
                                rng.randrange(fmt.HEADER_SIZE, size)])
            f.seek(where)
            f.write(bytes(rng.randrange(256) for _ in range(rng.randrange(
                1, 16))))
        if rng.random() < 0.2:
            f.truncate(rng.randrange(0, size))
    before = fingerprint(path)
    try:
        storage = PMemStorage(path, read_only=rng.random() < 0.5)
    except errors.ObjstoreError:
        assert fingerprint(path) == before
        return
    try:
        for n in range(64):
            oid = n.to_bytes(8, 'big')
            try:
                storage.load(oid)
                storage.history(oid)
            except (errors.POSKeyError, errors.CorruptionError):
                pass
        if not storage.isReadOnly():
            try:
                storage.collect_garbage()
            except errors.CorruptionError:
                pass
    finally:
        storage.close()


def test_a_missing_pool_is_created_unless_read_only(path):
    with pytest.raises(FileNotFoundError):
        PMemStorage(path, read_only=True)
    assert not os.path.exists(path)
    storage = PMemStorage(path)
    assert storage.lastTransaction() == z64
    storage.close()
    with open(path, 'rb') as f:
        assert f.read(8) == fmt.MAGIC
