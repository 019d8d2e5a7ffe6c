"""FileStorage after its process dies: the file as the dead process left it.

Two kinds. A real one: :func:`objstore.testing.crash.run` starts a worker
process that commits in a loop and kills it with SIGKILL at random moments,
reopening and checking the file after each kill
(``OBJSTORE_CRASH_KILLS``, default 15; ``python -m objstore.testing.crash
--kills N`` runs a long one). A systematic one, in this process: the
workload of :class:`objstore.testing.recovered.Workload` dies (through the
``fsio`` seams) at each of its file-system calls in turn, a write also
torn at its first page boundary (where a fatal signal may stop one), and
the files it leaves (the page cache survives a process death, so they are
the files as they are) must open to the state before or after the step in
progress, read consistently, take a new commit and reopen.

Also here: injected I/O errors (a failing write or fsync) leave nothing
half-written and the storage either usable or closed.
"""
import errno
import os
import random
import warnings

import pytest

from objstore import errors
from objstore.storages.base import z64
from objstore.storages.file import FileStorage, TruncatedTailWarning
from objstore.storages.file import log as file_log
from objstore.storages.file import pack as file_pack
from objstore.testing import crash, faults
from objstore.testing.recovered import (
    Workload, candidates, check_reads, check_recovered, snapshot)
from objstore.testing.helpers import commit, make_txn, record

KILLS = int(os.environ.get('OBJSTORE_CRASH_KILLS', '15'))


def test_a_worker_killed_again_and_again_loses_nothing_reported(tmp_path):
    seed = int(os.environ.get('OBJSTORE_CRASH_SEED', random.randrange(1 << 30)))
    result = crash.run(str(tmp_path), KILLS, seed)
    assert not result.failures, '\n'.join(result.failures)
    assert result.kills == KILLS
    assert result.transactions > KILLS


@pytest.fixture
def small_units(monkeypatch):
    """Checkpoints and pack writes small enough to happen often."""
    monkeypatch.setattr(file_log, 'CHECKPOINT_BYTES', 2048)
    monkeypatch.setattr(file_pack, 'WRITE_CHUNK', 1500)


def reference_run(directory):
    with faults.Seams() as seams, warnings.catch_warnings():
        warnings.simplefilter('ignore', TruncatedTailWarning)
        workload = Workload(directory, seams, short=True)
        workload.run()
    return seams.log, workload


def test_death_at_every_file_system_call(tmp_path, small_units):
    log, reference = reference_run(str(tmp_path / 'reference'))
    failures = []
    for j, op in enumerate(log):
        # A fatal signal interrupts a write between pages only.
        tears = [None] + [cut - op.offset
                          for cut in faults.tear_points(op, 4096)[:1]]
        for torn in tears:
            directory = str(tmp_path / ('death%d-%s' % (j, torn)))
            with faults.Seams() as seams, warnings.catch_warnings():
                warnings.simplefilter('ignore', TruncatedTailWarning)
                death = seams.crash(nth=j + 1, torn=torn)
                workload = Workload(directory, seams, short=True)
                try:
                    workload.run()
                except faults.SimulatedCrash:
                    pass
                if seams.crashed_by is not death:
                    failures.append('call %d (%r) never came' % (j, op))
                    continue
                if (seams.crashed.kind, seams.crashed.path,
                        seams.crashed.offset) != (op.kind, op.path.replace(
                            'reference', os.path.basename(directory)),
                            op.offset):
                    failures.append('call %d was %r, in the reference run %r'
                                    % (j, seams.crashed, op))
                    continue
            # Ops before j happened, op j maybe (torn: partly).
            expected = (candidates(reference.steps, j)
                        + candidates(reference.steps, j + 1))
            problem = check_recovered(workload.path, expected, reference.oids)
            if problem:
                failures.append('death at call %d %r%s: %s' % (
                    j, op, ' torn after %d bytes' % torn if torn else '',
                    problem))
    assert not failures, '%d of the deaths went wrong:\n%s' % (
        len(failures), '\n'.join(failures[:10]))


def test_the_storage_lets_a_simulated_death_through(tmp_path):
    """Nothing in the storage swallows a BaseException: a death in the
    middle of tpc_finish reaches the caller."""
    path = str(tmp_path / 'data.fs')
    with faults.Seams() as seams:
        storage = FileStorage(path)
        txn = make_txn()
        storage.tpc_begin(txn)
        storage.store(storage.new_oid(), z64, record('x'), '', txn)
        storage.tpc_vote(txn)
        seams.crash(kind='fsync')
        with pytest.raises(faults.SimulatedCrash):
            storage.tpc_finish(txn)
    # The trailer was written before the fsync: the page cache has it.
    storage = FileStorage(path)
    try:
        assert len(snapshot(storage)) == 1
    finally:
        storage.close()


# -- injected I/O errors ------------------------------------------------------

@pytest.mark.parametrize('torn', [None, 500])
def test_a_failing_vote_write_leaves_the_storage_usable(tmp_path, torn):
    """The disk fills up during tpc_vote's write (before any byte of it,
    or after some): the bytes are cut again, the storage goes on."""
    path = str(tmp_path / 'data.fs')
    storage = FileStorage(path)
    try:
        first = commit(storage, {storage.new_oid(): (z64, record('one'))})
        before = snapshot(storage)
        size = os.path.getsize(path)
        with faults.Seams() as seams:
            seams.fail('write', error=OSError(errno.ENOSPC, 'disk full'),
                       torn=torn)
            with pytest.raises(OSError):
                commit(storage, {storage.new_oid(): (z64,
                                                     record('x' * 1000))})
        assert os.path.getsize(path) == size
        assert snapshot(storage) == before
        assert storage.lastTransaction() == first
        tid = commit(storage, {storage.new_oid(): (z64, record('three'))})
        assert [t[0] for t in snapshot(storage)] == [first, tid]
    finally:
        storage.close()
    with warnings.catch_warnings():
        warnings.simplefilter('error')     # nothing to cut
        storage = FileStorage(path)
    try:
        assert [t[0] for t in snapshot(storage)] == [first, tid]
    finally:
        storage.close()


def test_a_failing_trailer_write_closes_and_leaves_nothing(tmp_path):
    path = str(tmp_path / 'data.fs')
    storage = FileStorage(path)
    first = commit(storage, {storage.new_oid(): (z64, record('one'))})
    with faults.Seams() as seams:
        seams.fail('write', nth=2)     # the vote's write, then the trailer
        with pytest.raises(OSError):
            commit(storage, {storage.new_oid(): (z64, record('two'))})
    with pytest.raises(errors.StorageClosedError):
        storage.load(z64)
    storage.close()
    storage = FileStorage(path)
    try:
        assert [t[0] for t in snapshot(storage)] == [first]
        assert check_reads(storage, snapshot(storage)) == []
    finally:
        storage.close()


def test_a_failing_fsync_in_finish_closes_and_leaves_nothing(tmp_path):
    """An fsync error means the data may not be on disk (and, on Linux,
    the error is not reported twice): the transaction must not count."""
    path = str(tmp_path / 'data.fs')
    storage = FileStorage(path)
    first = commit(storage, {storage.new_oid(): (z64, record('one'))})
    size = os.path.getsize(path)
    with faults.Seams() as seams:
        seams.fail('fsync')
        with pytest.raises(OSError):
            commit(storage, {storage.new_oid(): (z64, record('two'))})
    with pytest.raises(errors.StorageClosedError):
        commit(storage, {storage.new_oid(): (z64, record('three'))})
    storage.close()
    assert os.path.getsize(path) == size
    storage = FileStorage(path)
    try:
        assert [t[0] for t in snapshot(storage)] == [first]
        assert storage.lastTransaction() == first
    finally:
        storage.close()


@pytest.mark.parametrize('kind', ['open', 'write', 'fsync', 'replace',
                                  'fsync_dir'])
def test_a_failing_checkpoint_costs_nothing_but_time(tmp_path, small_units,
                                                     kind):
    path = str(tmp_path / 'data.fs')
    storage = FileStorage(path)
    tids = []
    try:
        with faults.Seams() as seams:
            seams.fail(kind, match=lambda op: '.index' in (op.path or '')
                       or '.index' in (op.dst or ''))
            for i in range(10):
                tids.append(commit(storage, {storage.new_oid(): (
                    z64, record('x' * 500))}))
            assert seams.failures, 'no checkpoint was written'
        assert [t[0] for t in snapshot(storage)] == tids
    finally:
        storage.close()
    storage = FileStorage(path)
    try:
        snap = snapshot(storage)
        assert [t[0] for t in snap] == tids
        assert check_reads(storage, snap) == []
    finally:
        storage.close()


def test_a_failing_pack_leaves_the_old_file(tmp_path, small_units):
    from objstore.serialize import references
    path = str(tmp_path / 'data.fs')
    storage = FileStorage(path)
    try:
        for i in range(5):
            commit(storage, {z64 if i == 0 else storage.new_oid(): (
                z64, record('x' * 800))})
        before = snapshot(storage)
        with faults.Seams() as seams:
            seams.fail('write', match=lambda op: op.path.endswith('.pack'))
            with pytest.raises(OSError):
                storage.pack(2e9, references)
        assert not os.path.exists(path + '.pack')
        assert snapshot(storage) == before
        commit(storage, {storage.new_oid(): (z64, record('after'))})
        after = snapshot(storage)
    finally:
        storage.close()
    storage = FileStorage(path)
    try:
        assert snapshot(storage) == after
    finally:
        storage.close()
