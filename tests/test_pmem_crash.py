"""PMemStorage after its process dies at a flush point.

First the injector itself (:class:`objstore.testing.pmem_faults.PMemSeams`)
on calls made by hand through the ``pmemio`` seam. Then the workload of
:class:`objstore.testing.pmem_workload.PMemWorkload` (pool creation, the
first commit, commits that free old revisions, commits while a snapshot
holds them and the release that frees them, commits that grow the file,
an abort, a pack, a clean close and reopen, a death at a commit point
and the open that recovers from it) dies in this process, through the
seam, at each of its pmemio calls in turn (every flush point, and
every write, also torn halfway), and the file it leaves must reopen to
the state before the step in progress or after it, whole.

The SIGKILL test of real processes is in ``test_pmem_processes.py``.
"""
import os

import pytest

from objstore.storages.pmem import pmemio
from objstore.testing import pmem_faults, pmem_powerloss
from objstore.testing.pmem_faults import SimulatedCrash
from objstore.testing.pmem_recovered import check_recovered
from objstore.testing.pmem_workload import PMemWorkload, crash_candidates


def test_a_death_at_the_second_flush_stops_every_later_call(tmp_path):
    path = str(tmp_path / 'pool')
    real = pmemio.flush
    with pytest.raises(SimulatedCrash):
        with pmem_faults.PMemSeams() as seams:
            death = seams.crash(kind='flush', nth=2)
            fd = pmemio.open(path, os.O_RDWR | os.O_CREAT)
            pmemio.truncate(fd, 4096)
            m = pmemio.map(fd, 4096)
            pmemio.write(m, 0, b'one')
            pmemio.flush(m, 0, 3)
            pmemio.write(m, 8, b'two')
            try:
                pmemio.flush(m, 8, 3)
            except SimulatedCrash:
                assert seams.crashed_by is death
                assert seams.crashed.kind == 'flush'
                # The dead process does nothing more.
                with pytest.raises(SimulatedCrash, match='never ran'):
                    pmemio.write(m, 16, b'three')
                raise
    assert pmemio.flush is real
    assert [op.kind for op in seams.log] == [
        'open', 'truncate', 'map', 'write', 'flush', 'write']
    # The kernel closed the dead process's map and file; the page cache
    # kept what it stored, flushed or not.
    assert m.closed
    with pytest.raises(OSError):
        os.fstat(fd)
    with open(path, 'rb') as f:
        assert f.read(11) == b'one\0\0\0\0\0two'


def test_a_torn_write_stores_its_first_bytes_then_dies(tmp_path):
    path = str(tmp_path / 'pool')
    with pmem_faults.PMemSeams(sync=False) as seams:
        fd = pmemio.open(path, os.O_RDWR | os.O_CREAT)
        pmemio.truncate(fd, 4096)
        m = pmemio.map(fd, 4096)
        seams.crash(kind='write', torn=5)
        with pytest.raises(SimulatedCrash):
            pmemio.write(m, 100, b'abcdefghij')
    assert seams.log[-1].kind == 'write'
    assert (seams.log[-1].offset, seams.log[-1].data) == (100, b'abcde')
    model = pmem_powerloss.PoolModel(str(tmp_path))
    for op in seams.log:
        model.apply(op)
    with open(path, 'rb') as f:
        assert model.current() == {'pool': f.read()}


def test_restart_lets_a_new_process_go_on(tmp_path):
    path = str(tmp_path / 'pool')
    with pmem_faults.PMemSeams(sync=False) as seams:
        seams.crash(kind='map', match=lambda op: op.size == 8192)
        fd = pmemio.open(path, os.O_RDWR | os.O_CREAT)
        pmemio.truncate(fd, 8192)
        with pytest.raises(SimulatedCrash):
            pmemio.map(fd, 8192)
        seams.restart()
        assert seams.crashed is None
        fd = pmemio.open(path, os.O_RDWR)
        m = pmemio.map(fd, 8192)
        pmemio.write(m, 0, b'x')
        pmemio.unmap(m)
        pmemio.close(fd)
    assert [op.kind for op in seams.log] == [
        'open', 'truncate', 'open', 'map', 'write', 'unmap', 'close']
    assert seams.counts['map'] == 2 and seams.calls == 8


def test_a_map_not_made_through_the_seams_is_refused(tmp_path):
    import mmap
    with pmem_faults.PMemSeams():
        with pytest.raises(ValueError, match='not mapped through'):
            pmemio.write(mmap.mmap(-1, 4096), 0, b'x')
    with pytest.raises(ValueError, match='no seam'):
        pmem_faults.PMemSeams().crash(kind='msync')


def test_a_death_releases_a_lock_taken_beside_the_pool(tmp_path):
    import fcntl
    path = str(tmp_path / 'pool')
    with pytest.raises(SimulatedCrash):
        with pmem_faults.PMemSeams(sync=False) as seams:
            lock = os.open(path + '.lock', os.O_RDWR | os.O_CREAT)
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fd = pmemio.open(path, os.O_RDWR | os.O_CREAT)
            seams.crash(kind='truncate')
            pmemio.truncate(fd, 4096)
    # The dead process's lock is gone; its descriptor number stays taken
    # (by /dev/null) until whatever held it closes it.
    other = os.open(path + '.lock', os.O_RDWR)
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(other)
    assert os.readlink('/proc/self/fd/%d' % lock) == os.devnull
    os.close(lock)


# -- PMemStorage killed at every call of its workload -------------------------

@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    """The short workload's log and steps, recorded once."""
    directory = str(tmp_path_factory.mktemp('reference'))
    with pmem_faults.PMemSeams(sync=False) as seams:
        workload = PMemWorkload(directory, seams, short=True)
        workload.run()
    return seams.log, workload


def call_number(reference, j):
    """The seam call (from 1) that op ``j`` of the reference log was: the
    workload's own planned death was a call that left no op."""
    _log, workload = reference
    death = [s for s in workload.steps if s.name == 'process death'][0]
    return j + 1 + (j >= death.end)


def test_the_workload_reaches_every_kind_of_commit(reference):
    log, workload = reference
    names = [step.name for step in workload.steps]
    for name in STEP_KINDS + ['hold a snapshot', 'release the snapshot']:
        assert name in names, name

    def kinds(name):
        return [op.kind for step in workload.steps if step.name == name
                for op in log[step.start:step.end]]
    assert 'truncate' in kinds('grow') and 'map' in kinds('grow')
    assert 'truncate' in kinds('grow again')
    assert kinds('first commit').count('flush') >= 2
    assert kinds('create').count('flush') >= 2
    assert all(op.path == workload.path for op in log if op.path)


def test_the_storage_changes_its_file_only_through_the_seam(reference):
    log, workload = reference
    model = pmem_powerloss.PoolModel(os.path.dirname(workload.path))
    for op in log:
        model.apply(op)
    with open(workload.path, 'rb') as f:
        assert model.current() == {'data.pool': f.read()}


def torn_at_half(op):
    """How many bytes of write ``op`` reach the map when a death stops it
    halfway, at an 8-byte boundary; None if it is too short to tear."""
    cut = op.offset + len(op.data) // 2
    cut += -cut % 8
    return cut - op.offset if op.offset < cut < op.end else None


def die_at(directory, nth, torn, reference_op):
    """Run the workload, the process dying at its ``nth`` seam call (a
    write ``torn``); return ``(workload, log, problem)``."""
    with pmem_faults.PMemSeams(sync=False) as seams:
        death = seams.crash(nth=nth, torn=torn)
        workload = PMemWorkload(directory, seams, short=True)
        try:
            workload.run()
        except SimulatedCrash:
            pass
    if seams.crashed_by is not death:
        return workload, seams.log, 'the death at call %d never came' % nth
    if not seams.crashed.same_call(reference_op):
        return workload, seams.log, 'call %d was %r, in the reference run' \
            ' %r' % (nth, seams.crashed, reference_op)
    return workload, seams.log, None


#: The steps of the short workload that call pmemio, by name (each test
#: below kills the process at every seam call of every step of that
#: name). Holding a snapshot and releasing it write nothing: the space a
#: release frees is reused by the next commit, a 'change' step.
STEP_KINDS = ['create', 'first commit', 'change', 'change while held',
              'grow', 'abort', 'change after grow', 'unlink', 'pack',
              'close', 'open', 'grow again', 'process death',
              'recovering open']


@pytest.mark.parametrize('name', STEP_KINDS)
def test_death_at_every_call_of_each_step(reference, tmp_path, name):
    """The process dies at each pmemio call of the step (a write also
    halfway through); the file it leaves (every write it made, flushed
    or not: the page cache outlives it) must open to the state before the
    step or, for a commit, after it, and pass :func:`check_recovered`."""
    log, ref = reference
    failures = []
    deaths = 0
    for step in [s for s in ref.steps if s.name == name]:
        for j in range(step.start, step.end):
            op = log[j]
            tears = [None]
            if op.kind == 'write' and torn_at_half(op):
                tears.append(torn_at_half(op))
            for torn in tears:
                deaths += 1
                where = 'call %d %r%s in %r' % (
                    j, op, ' torn after %d bytes' % torn if torn else '',
                    step)
                directory = str(tmp_path / ('death%d-%s' % (j, torn)))
                workload, crash_log, problem = die_at(
                    directory, call_number(reference, j), torn, op)
                if problem is None:
                    problem = same_as_the_log(workload, crash_log)
                if problem is None:
                    states, dirty = crash_candidates(workload.in_flight)
                    oids = workload.oids | set(
                        workload.in_flight.changes or ())
                    problem = check_recovered(workload.path, states, oids,
                                              dirty)
                if problem:
                    failures.append('%s: %s' % (where, problem))
    assert deaths >= 2
    assert not failures, '%d of %d deaths went wrong:\n%s' % (
        len(failures), deaths, '\n'.join(failures[:10]))


def same_as_the_log(workload, log):
    """The dead process's file must be its log replayed whole."""
    model = pmem_powerloss.PoolModel(os.path.dirname(workload.path))
    for op in log:
        model.apply(op)
    try:
        with open(workload.path, 'rb') as f:
            content = f.read()
    except FileNotFoundError:
        content = None
    if model.current().get('data.pool') != content:
        return 'the file is not what the seam calls made of it'
    return None
