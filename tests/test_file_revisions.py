"""FileStorage's walk back to earlier revisions, with the index's help.

The oid index keeps each current record's tid and back pointer, so
reading the revision before the current one takes one read of one
record, as a load of the current one does. These count the reads and
check the answers against MemoryStorage, for random histories, also
after reopening from a checkpoint and after pack.
"""
import os
import shutil
import tempfile
import time
import zlib

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from objstore import errors
from objstore.serialize import references
from objstore.storages import MemoryStorage
from objstore.storages.base import maxtid, p64, z64
from objstore.storages.file import FileStorage
from objstore.testing.helpers import Clock, after, commit, make_txn, record


def _counting_preads(monkeypatch, fd):
    """Record ``(size, offset)`` of every ``os.pread`` of ``fd`` from here
    on (the checkpoint's reads, on another descriptor, are not counted)."""
    calls = []
    real = os.pread

    def pread(f, size, offset):
        if f == fd:
            calls.append((size, offset))
        return real(f, size, offset)
    monkeypatch.setattr(os, 'pread', pread)
    return calls


def _three_revisions(path):
    """A file holding three revisions of oid 1 (and one of oid 2, so that
    the records are not the last ones); returns ``(oid, tids)``."""
    storage = FileStorage(path)
    oid = p64(1)
    tids = []
    serial = z64
    for k in range(3):
        serial = commit(storage, {oid: (serial, record(k)),
                                  p64(2 + k): (z64, record('other'))})
        tids.append(serial)
    storage.close()
    return oid, tids


@pytest.mark.parametrize('checkpoint', [True, False])
def test_loadBefore_one_revision_back_reads_one_record(tmp_path, monkeypatch,
                                                       checkpoint):
    path = str(tmp_path / 'data.fs')
    oid, tids = _three_revisions(path)
    if not checkpoint:
        os.remove(path + '.index')
    storage = FileStorage(path, read_only=True)
    try:
        previous = storage._index.entry(oid)[2]
        expected = storage.loadSerial(oid, tids[1])
        calls = _counting_preads(monkeypatch, storage._fd)
        assert storage.loadBefore(oid, tids[2]) == (expected, tids[1],
                                                    tids[2])
        assert [offset for _size, offset in calls] == [previous]
        del calls[:]
        # As many as the current-state read, which reads the current
        # record.
        storage.load(oid)
        assert len(calls) == 1
        del calls[:]
        storage.loadBefore(oid, maxtid)
        assert len(calls) == 1
    finally:
        storage.close()


def test_loadBefore_before_the_first_revision_reads_nothing(tmp_path,
                                                            monkeypatch):
    path = str(tmp_path / 'data.fs')
    storage = FileStorage(path)
    try:
        oid = p64(1)
        tid = commit(storage, {oid: (z64, record('only'))})
        calls = _counting_preads(monkeypatch, storage._fd)
        assert storage.loadBefore(oid, tid) is None
        assert calls == []
    finally:
        storage.close()


def test_the_index_entry_follows_commits_and_deletions(tmp_path):
    storage = FileStorage(str(tmp_path / 'data.fs'))
    try:
        oid = p64(1)
        first = commit(storage, {oid: (z64, record('a'))})
        pos1 = storage._index.get(oid)
        assert storage._index.entry(oid) == (pos1, first, 0)
        second = commit(storage, deletes={oid: first})
        pos2 = storage._index.get(oid)
        assert storage._index.entry(oid) == (pos2, second, pos1)
        with pytest.raises(errors.POSKeyError):
            storage.loadBefore(oid, maxtid)
        assert storage.loadBefore(oid, second)[1:] == (first, second)
    finally:
        storage.close()


def test_an_old_version_checkpoint_is_ignored_and_the_log_scanned(tmp_path):
    from objstore.storages.file import index as index_mod
    path = str(tmp_path / 'data.fs')
    oid, tids = _three_revisions(path)
    # Version 2's layout: offsets alone, 8 bytes an entry; header and
    # directory checksummed as they would have been.
    storage = FileStorage(path, read_only=True)
    offsets = dict(storage._index.items())
    storage.close()
    with open(path + '.index', 'rb') as f:
        data = f.read()
    head = bytearray(data[:index_mod._HEAD.size])
    head[4:6] = (2).to_bytes(2, 'big')
    body = b''.join(oid[6:] for oid in offsets) + b''.join(
        offset.to_bytes(6, 'big') for offset in offsets.values())
    directory = index_mod._ENTRY.pack(p64(0)[:6], len(offsets),
                                      zlib.crc32(body))
    with open(path + '.index', 'wb') as f:
        f.write(bytes(head) + directory + index_mod._CRC.pack(
            zlib.crc32(directory, zlib.crc32(head))) + body)
    assert index_mod.read_checkpoint(path + '.index', data[8:16],
                                     None) is None
    storage = FileStorage(path, read_only=True)
    try:
        assert storage.records_scanned == 6
        assert storage.loadBefore(oid, tids[2])[1:] == (tids[1], tids[2])
    finally:
        storage.close()


# -- random histories against MemoryStorage ----------------------------------

OIDS = [p64(n) for n in range(4)]

_step = st.one_of(
    st.tuples(st.just('store'),
              st.lists(st.sampled_from(OIDS), min_size=1, max_size=4,
                       unique=True)),
    st.tuples(st.just('delete'), st.sampled_from(OIDS)),
    st.tuples(st.just('undo'), st.just(None)),
)


def _apply(storages, serials, tid, step):
    """Run ``step`` as the transaction ``tid`` on each storage; the outcomes
    (oids written, or the error's class) must agree. Returns whether it
    committed; ``serials`` (oid -> serial to write over) follows."""
    kind, arg = step
    outcomes = []
    for storage in storages:
        try:
            if kind == 'store':
                # Oid 0 holds the others, so GC keeps what it links.
                commit(storage, {oid: (serials.get(oid, z64), record(
                    (tid, oid), refs=OIDS[1:] if oid == z64 else ()))
                    for oid in arg}, tid=tid)
                outcomes.append(set(arg))
            elif kind == 'delete':
                commit(storage, deletes={arg: serials.get(arg, z64)},
                       tid=tid)
                outcomes.append({arg})
            else:
                outcomes.append(_undo_newest(storage, tid))
        except (errors.POSKeyError, errors.ConflictError,
                errors.UndoError) as exc:
            outcomes.append(type(exc))
    assert len(set(map(repr, outcomes))) == 1, outcomes
    if isinstance(outcomes[0], type) or not outcomes[0]:
        return False
    for oid in outcomes[0]:
        serials[oid] = tid
    return True


def _undo_newest(storage, tid):
    last = storage.undoLog(0, 1)
    if not last:
        return set()
    txn = make_txn()
    storage.tpc_begin(txn, tid)
    try:
        oids = set(storage.undo(last[0]['id'], txn)[1])
        storage.tpc_vote(txn)
        storage.tpc_finish(txn)
    except BaseException:
        storage.tpc_abort(txn)
        raise
    return oids


def _reads(storage, moments):
    out = {}
    for oid in OIDS:
        for tid in [z64, maxtid] + moments + [after(t) for t in moments]:
            out['before', oid, tid] = _outcome(storage.loadBefore, oid, tid)
        for tid in moments:
            out['serial', oid, tid] = _outcome(storage.loadSerial, oid, tid)
    return out


def _outcome(function, *args):
    try:
        return ('ok', function(*args))
    except errors.POSKeyError:
        return ('POSKeyError',)


def _assert_agree(file_storage, memory, moments, label):
    got, wanted = _reads(file_storage, moments), _reads(memory, moments)
    for key in wanted:
        assert got[key] == wanted[key], (label, key)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(_step, min_size=1, max_size=12),
       pack_at=st.integers(0, 12), gc=st.booleans(),
       checkpoint=st.booleans())
def test_loadBefore_agrees_with_MemoryStorage(steps, pack_at, gc,
                                              checkpoint):
    directory = tempfile.mkdtemp(prefix='objstore-revisions-')
    path = os.path.join(directory, 'data.fs')
    file_storage = FileStorage(path)
    memory = MemoryStorage()
    clock = Clock(int(time.time()) - 3600)
    moments = []
    try:
        serials = {}
        for k, step in enumerate(steps, 1):
            if _apply([file_storage, memory], serials, clock.tid(k), step):
                moments.append(clock.tid(k))
        _assert_agree(file_storage, memory, moments, 'as committed')
        file_storage.close()
        if not checkpoint and os.path.exists(path + '.index'):
            os.remove(path + '.index')
        file_storage = FileStorage(path)
        _assert_agree(file_storage, memory, moments, 'reopened')
        t = clock.between(min(pack_at, len(steps)))
        file_storage.pack(t, references, gc=gc)
        memory.pack(t, references, gc=gc)
        _assert_agree(file_storage, memory, moments, 'packed')
        file_storage.close()
        file_storage = FileStorage(path)
        _assert_agree(file_storage, memory, moments, 'packed, reopened')
    finally:
        file_storage.close()
        memory.close()
        shutil.rmtree(directory)
