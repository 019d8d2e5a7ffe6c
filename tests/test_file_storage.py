"""FileStorage: the whole conformance suite, plus what is its own.

Crash recovery, corruption and reader processes are in
``test_file_recovery.py`` and ``test_file_processes.py``.
"""
import os

import pytest

from objstore import errors, testing
from objstore.serialize import references
from objstore.storages.base import maxtid, z64
from objstore.storages.file import FileStorage
from objstore.storages.file import format as fmt
from objstore.testing.helpers import (
    commit, make_txn, new_object, record, set_value, undo, value_of)


class TestFileStorageConformance(
        testing.IStorageConformance,
        testing.IStorageIterationConformance,
        testing.IStorageUndoableConformance,
        testing.IStorageRestoreableConformance,
        testing.IStorageCurrentRecordIterationConformance,
        testing.ReadVerifyingStorageConformance,
        testing.IExternalGCConformance,
        testing.IHistoryWindowConformance,
        testing.ReopenConformance):

    def make_storage(self):
        return FileStorage(str(self.tmp_path / ('%d.fs' % self.count())))

    def reopen_storage(self, storage, read_only=False):
        storage.close()
        return FileStorage(storage.getName(), read_only=read_only)


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / 'data.fs')


@pytest.fixture
def storage(path):
    storage = FileStorage(path)
    yield storage
    storage.close()


def reopen(storage, **kw):
    storage.close()
    return FileStorage(storage.getName(), **kw)


# -- creating and reopening -------------------------------------------------

def test_a_missing_file_is_created_with_a_versioned_header(path):
    storage = FileStorage(path)
    storage.close()
    with open(path, 'rb') as f:
        head = f.read()
    assert head[:4] == b'OBJS'
    assert int.from_bytes(head[4:6], 'big') == fmt.VERSION
    assert len(head) == fmt.FILE_HEADER_SIZE


def test_transactions_persist_across_reopen(storage):
    oid, tid1 = new_object(storage, 'one')
    tid2 = set_value(storage, oid, 'two')
    storage = reopen(storage)
    try:
        assert storage.lastTransaction() == tid2
        assert value_of(storage.load(oid)[0]) == 'two'
        assert value_of(storage.loadSerial(oid, tid1)) == 'one'
        assert storage.loadBefore(oid, tid2)[1:] == (tid1, tid2)
        # new_oid never hands out a stored oid again.
        assert storage.new_oid() > oid
    finally:
        storage.close()


def test_create_true_starts_an_empty_file(storage, path):
    new_object(storage, 1)
    storage.close()
    storage = FileStorage(path, create=True)
    try:
        assert len(storage) == 0
        assert storage.lastTransaction() == z64
        assert list(storage.iterator()) == []
    finally:
        storage.close()


def test_an_empty_file_is_initialized(path):
    open(path, 'wb').close()
    storage = FileStorage(path)
    try:
        oid, tid = new_object(storage, 1)
        assert storage.load(oid)[1] == tid
    finally:
        storage.close()


def test_docstring_states_the_durability_guarantee():
    doc = FileStorage.__doc__
    assert 'Atomicity' in doc and 'Durability' in doc
    assert 'fsync=False' in doc


# -- bad input --------------------------------------------------------------

def test_a_foreign_file_is_refused_naming_what_was_found(path):
    with open(path, 'wb') as f:
        f.write(b'FS21' + b'\0' * 100)
    with pytest.raises(errors.FileFormatError) as info:
        FileStorage(path)
    assert path in str(info.value)
    assert "FS21" in str(info.value)


def test_a_newer_format_version_is_refused(path):
    FileStorage(path).close()
    with open(path, 'r+b') as f:
        f.write(fmt.encode_file_header(b'12345678')[:4]
                + (fmt.VERSION + 1).to_bytes(2, 'big'))
        head = fmt.FILE_HEADER.pack(fmt.MAGIC, fmt.VERSION + 1, 0,
                                    b'12345678', 0)[:16]
        f.seek(0)
        f.write(head + fmt.CRC.pack(fmt.crc32(head)))
    with pytest.raises(errors.UnsupportedVersionError) as info:
        FileStorage(path)
    assert path in str(info.value) and 'version 2' in str(info.value)


def test_use_after_close_raises(storage):
    oid, _ = new_object(storage, 1)
    storage.close()
    storage.close()  # again: nothing happens
    for call in (lambda: storage.load(oid), lambda: storage.new_oid(),
                 lambda: storage.loadBefore(oid, maxtid),
                 lambda: storage.history(oid), lambda: storage.undoLog(),
                 lambda: storage.iterator(),
                 lambda: storage.tpc_begin(make_txn())):
        with pytest.raises(errors.StorageClosedError):
            call()


def test_a_version_is_refused(storage):
    txn = make_txn()
    storage.tpc_begin(txn)
    with pytest.raises(errors.StorageError, match='versions'):
        storage.store(storage.new_oid(), z64, record(1), 'v1', txn)
    storage.tpc_abort(txn)


def test_too_long_metadata_is_refused_at_begin(storage):
    with pytest.raises(errors.TransactionTooLargeError):
        commit(storage, {}, user='u' * 70000)
    # The storage is still usable.
    new_object(storage, 1)


# -- commit -----------------------------------------------------------------

def test_abort_after_vote_leaves_nothing(storage, path):
    oid, tid = new_object(storage, 1)
    size = os.path.getsize(path)
    txn = make_txn()
    storage.tpc_begin(txn)
    storage.store(oid, tid, record(2), '', txn)
    storage.tpc_vote(txn)
    assert os.path.getsize(path) > size
    storage.tpc_abort(txn)
    assert os.path.getsize(path) == size
    assert value_of(storage.load(oid)[0]) == 1
    assert storage.lastTransaction() == tid


def test_vote_writes_without_trailer_and_finish_commits(storage, path):
    oid = storage.new_oid()
    size = os.path.getsize(path)
    txn = make_txn()
    storage.tpc_begin(txn)
    storage.store(oid, z64, record(1), '', txn)
    storage.tpc_vote(txn)
    voted = os.path.getsize(path)
    with pytest.raises(errors.POSKeyError):
        storage.load(oid)
    tid = storage.tpc_finish(txn)
    assert os.path.getsize(path) == voted + fmt.TRAILER_SIZE
    assert storage.load(oid)[1] == tid
    assert storage.getSize() == os.path.getsize(path) > size


def test_one_fsync_per_commit(storage, monkeypatch):
    from objstore.storages.file import fsio
    calls = []
    real = fsio.fsync
    monkeypatch.setattr(fsio, 'fsync', lambda fd: (calls.append(fd),
                                                   real(fd)))
    new_object(storage, 1)
    assert len(calls) == 1


def test_fsync_false_never_fsyncs_a_commit(path, monkeypatch):
    from objstore.storages.file import fsio
    storage = FileStorage(path, fsync=False)
    calls = []
    monkeypatch.setattr(fsio, 'fsync', calls.append)
    try:
        new_object(storage, 1)
        assert calls == []
    finally:
        monkeypatch.undo()
        storage.close()


# -- history, undo, deletion ------------------------------------------------

def test_history_is_newest_first_with_metadata(storage):
    oid, tid1 = new_object(storage, 1)
    tid2 = commit(storage, {oid: (tid1, record(2))}, user='ann',
                  description='second', extension={'k': 'v'})
    first, second = storage.history(oid, size=5)
    assert first['tid'] == first['serial'] == tid2
    assert first['user_name'] == b'ann'
    assert first['description'] == b'second'
    assert first['k'] == 'v'
    assert first['size'] == len(record(2))
    assert second['tid'] == tid1
    assert storage.history(oid) == [first]


def test_undo_restores_the_previous_revision_and_marks_data_txn(storage):
    oid, tid1 = new_object(storage, 1)
    tid2 = set_value(storage, oid, 2)
    assert [d['id'] for d in storage.undoLog()] == [tid2, tid1]
    tid3, oids = undo(storage, tid2)
    assert oids == {oid}
    assert value_of(storage.load(oid)[0]) == 1
    last = list(storage.iterator(tid3))[0]
    (rec,) = list(last)
    assert rec.data_txn == tid1


def test_undo_of_a_creation_writes_a_deletion_record(storage):
    oid, tid1 = new_object(storage, 1)
    undo(storage, tid1)
    with pytest.raises(errors.POSKeyError):
        storage.load(oid)
    storage = reopen(storage)
    try:
        with pytest.raises(errors.POSKeyError):
            storage.load(oid)
        assert value_of(storage.loadSerial(oid, tid1)) == 1
    finally:
        storage.close()


def test_undo_conflicting_with_a_later_change_fails(storage):
    oid, tid1 = new_object(storage, 1)
    tid2 = set_value(storage, oid, 2)
    set_value(storage, oid, 3)
    with pytest.raises(errors.UndoError):
        undo(storage, tid2)
    assert value_of(storage.load(oid)[0]) == 3


def test_deleted_object_keeps_older_revisions_until_pack(storage):
    oid, tid1 = new_object(storage, 1)
    tid2 = commit(storage, deletes={oid: tid1})
    with pytest.raises(errors.POSKeyError):
        storage.load(oid)
    assert storage.loadBefore(oid, tid2) == (record(1), tid1, tid2)
    storage.pack(storage_time(storage) + 1, references)
    with pytest.raises(errors.POSKeyError):
        storage.loadBefore(oid, tid2)
    assert len(storage) == 0


def storage_time(storage):
    from objstore.storages.base import tid_time
    return tid_time(storage.lastTransaction())


# -- restore and copy -------------------------------------------------------

def test_copy_between_two_file_storages_keeps_everything(storage, tmp_path):
    oid, tid1 = new_object(storage, 1)
    tid2 = set_value(storage, oid, 2)
    other = storage.new_oid()
    tid3 = commit(storage, {other: (z64, record('x'))}, user='bob',
                  extension={'a': 1})
    undo(storage, tid2, tid3)
    copy = FileStorage(str(tmp_path / 'copy.fs'))
    try:
        copy.copyTransactionsFrom(storage)
        copy = reopen(copy)
        original = [(t.tid, t.user, t.description, t.extension,
                     [(r.oid, r.tid, r.data, r.data_txn) for r in t])
                    for t in storage.iterator()]
        copied = [(t.tid, t.user, t.description, t.extension,
                   [(r.oid, r.tid, r.data, r.data_txn) for r in t])
                  for t in copy.iterator()]
        assert copied == original
        assert copy.lastTransaction() == storage.lastTransaction()
        assert copy.new_oid() > other
    finally:
        copy.close()


def test_record_iternext_skips_deleted_objects(storage):
    a, ta = new_object(storage, 'a')
    b, tb = new_object(storage, 'b')
    c, tc = new_object(storage, 'c')
    commit(storage, deletes={b: tb})
    oid, tid, data, nxt = storage.record_iternext()
    assert (oid, value_of(data)) == (a, 'a')
    oid, tid, data, nxt = storage.record_iternext(nxt)
    assert (oid, value_of(data), nxt) == (c, 'c', None)


# -- pack -------------------------------------------------------------------

def test_pack_with_gc_keeps_reachable_history_after_t_only(storage, path):
    from objstore.storages.base import tid_time
    from objstore.testing.helpers import after
    a = storage.new_oid()
    lost = storage.new_oid()
    t1 = commit(storage, {z64: (z64, record('root', refs=[a])),
                          a: (z64, record('a1')),
                          lost: (z64, record('lost'))})
    t2 = commit(storage, {a: (t1, record('a2'))})
    t3 = commit(storage, {a: (t2, record('a3'))})
    inode = os.stat(path).st_ino
    size = os.path.getsize(path)
    storage.pack(tid_time(t2) + 0.0001, references)
    assert os.stat(path).st_ino != inode
    assert os.path.getsize(path) < size
    assert not os.path.exists(path + '.pack')
    # Unreachable: gone entirely.
    with pytest.raises(errors.POSKeyError):
        storage.loadBefore(lost, maxtid)
    # Reachable: the revision current at t and everything after it stay.
    assert value_of(storage.load(a)[0]) == 'a3'
    assert value_of(storage.loadSerial(a, t2)) == 'a2'
    assert storage.loadBefore(a, after(t2))[1:] == (t2, t3)
    with pytest.raises(errors.POSKeyError):
        storage.loadSerial(a, t1)
    assert storage.loadBefore(a, t2) is None
    assert value_of(storage.load(z64)[0]) == 'root'
    # Transactions after t are unchanged; earlier ones are marked packed
    # and are no longer undoable.
    txns = list(storage.iterator())
    assert [t.tid for t in txns] == [t1, t2, t3]
    assert [t.status for t in txns] == ['p', 'p', ' ']
    assert [d['id'] for d in storage.undoLog()] == [t3]
    with pytest.raises(errors.UndoError):
        undo(storage, t2)
    # A checkpoint of the new file is in place: reopening scans nothing.
    storage = reopen(storage)
    try:
        assert storage.records_scanned == 0
        assert value_of(storage.load(a)[0]) == 'a3'
        assert storage.lastTransaction() == t3
    finally:
        storage.close()


def test_pack_without_gc_keeps_unreachable_objects(storage):
    lost, t1 = new_object(storage, 'lost')
    t2 = set_value(storage, lost, 'lost2')
    storage.pack(storage_time(storage) + 1, references, gc=False)
    assert value_of(storage.load(lost)[0]) == 'lost2'
    with pytest.raises(errors.POSKeyError):
        storage.loadSerial(lost, t1)
    assert storage.lastTransaction() == t2


def test_pack_keeps_the_files_permission_bits(storage, path):
    os.chmod(path, 0o600)
    lost, _ = new_object(storage, 'lost')
    set_value(storage, lost, 'lost2')
    storage.pack(storage_time(storage) + 1, references)
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o600)


def test_pack_uses_the_referencesf_it_is_given(storage):
    a = storage.new_oid()
    commit(storage, {z64: (z64, record('root')), a: (z64, record('a'))})
    seen = []

    def everything_refers_to_a(data, oids=None):
        seen.append(data)
        oids = [] if oids is None else oids
        oids.append(a)
        return oids
    storage.pack(storage_time(storage) + 1, everything_refers_to_a)
    assert seen
    assert value_of(storage.load(a)[0]) == 'a'


def test_a_failed_pack_leaves_the_old_file_in_use(storage, path,
                                                  monkeypatch):
    from objstore.storages.file import fsio
    o, t1 = new_object(storage, 1)
    set_value(storage, o, 2)
    inode = os.stat(path).st_ino

    def broken(src, dst):
        raise OSError('replace failed')
    monkeypatch.setattr(fsio, 'replace', broken)
    with pytest.raises(OSError):
        storage.pack(storage_time(storage) + 1, references)
    monkeypatch.undo()
    assert os.stat(path).st_ino == inode
    assert not os.path.exists(path + '.pack')
    assert value_of(storage.loadSerial(o, t1)) == 1
    new_object(storage, 3)


def test_a_leftover_pack_file_is_removed_on_open(storage, path):
    new_object(storage, 1)
    storage.close()
    with open(path + '.pack', 'wb') as f:
        f.write(b'half a pack')
    FileStorage(path).close()
    assert not os.path.exists(path + '.pack')


def test_commits_after_pack_continue_the_chain(storage):
    o, t1 = new_object(storage, 1, tid=None)
    storage.pack(storage_time(storage) + 1, references, gc=False)
    t2 = set_value(storage, o, 2)
    assert storage.loadBefore(o, t2)[:2] == (record(1), t1)
    storage = reopen(storage)
    try:
        assert storage.history(o, 5)[1]['tid'] == t1
    finally:
        storage.close()


def test_new_oids_stay_reserved_across_a_clean_reopen(storage):
    first = storage.new_oid()
    storage = reopen(storage)
    try:
        assert storage.new_oid() > first
    finally:
        storage.close()


def test_an_iterator_dropped_half_way_releases_its_descriptor(storage):
    import gc
    for value in range(3):
        new_object(storage, value)
    before = len(os.listdir('/proc/self/fd'))
    for _ in range(20):
        it = storage.iterator()
        next(it)
        del it
    gc.collect()
    assert len(os.listdir('/proc/self/fd')) <= before
