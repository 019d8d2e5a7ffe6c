"""PMemStorage after its process dies at a flush point.

First the injector itself (:class:`objstore.testing.pmem_faults.PMemSeams`)
on calls made by hand through the ``pmemio`` seam.
"""
import os

import pytest

from objstore.storages.pmem import pmemio
from objstore.testing import pmem_faults, pmem_powerloss
from objstore.testing.pmem_faults import SimulatedCrash


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
