"""PMemStorage after a power loss at any moment: what the pool may keep.

First the model itself (:mod:`objstore.testing.pmem_powerloss`), on
writes made by hand through the ``pmemio`` seam.
"""
import os
import random

import pytest

from objstore.storages.pmem import pmemio as io
from objstore.testing import pmem_faults, pmem_powerloss


def record(tmp_path, calls, unit=pmem_powerloss.PMEM_UNIT):
    """Run ``calls(io, path)`` under recording seams; return the model
    fed with the log, and the log."""
    path = str(tmp_path / 'pool')
    with pmem_faults.PMemSeams(io) as seams:
        calls(io, path)
    model = pmem_powerloss.PoolModel(str(tmp_path), unit)
    for op in seams.log:
        model.apply(op)
    return model, seams.log


def grown(io, path, size=8192):
    fd = io.open(path, os.O_RDWR | os.O_CREAT)
    io.truncate(fd, size)
    io.fsync(fd)
    return fd, io.map(fd, size)


def images(model, mode, n=300, seed=1):
    rng = random.Random(seed)
    return [model.image(pmem_powerloss.RandomChoices(rng, mode))[0]
            for _ in range(n)]


def test_the_seams_record_each_call_and_the_model_follows(tmp_path):
    real = {name: getattr(io, name) for name in pmem_faults.SEAMS}

    def calls(io, path):
        fd, m = grown(io, path)
        io.write(m, 10, b'abc')
        io.flush(m, 10, 3)
        io.unmap(m)
        io.close(fd)
    model, log = record(tmp_path, calls)
    assert [op.kind for op in log] == [
        'open', 'truncate', 'fsync', 'map', 'write', 'flush', 'unmap',
        'close']
    assert log[4].map == log[3].map == log[5].map == 1
    assert log[4].path == str(tmp_path / 'pool')
    assert (log[4].offset, log[4].data, log[5].length) == (10, b'abc', 3)
    with open(str(tmp_path / 'pool'), 'rb') as f:
        assert model.current() == {'pool': f.read()}
    seams = pmem_faults.PMemSeams(io)
    with seams:
        assert io.write is not real['write']
    assert {name: getattr(io, name) for name in pmem_faults.SEAMS} == real


@pytest.mark.parametrize('mode', ['prefix', 'reorder'])
def test_flushed_writes_survive_and_unflushed_ones_tear_at_8_bytes(
        tmp_path, mode):
    def calls(io, path):
        fd, m = grown(io, path)
        io.write(m, 0, b'A' * 64)
        io.flush(m, 0, 64)
        io.write(m, 64, b'B' * 64)      # never flushed
    model, _log = record(tmp_path, calls)
    seen = set()
    for files in images(model, mode):
        content = files['pool']
        assert len(content) == 8192
        assert content[:64] == b'A' * 64
        tail = content[64:128]
        for i in range(0, 64, 8):
            assert tail[i:i + 8] in (b'B' * 8, bytes(8)), tail
        assert content[128:] == bytes(8192 - 128)
        seen.add(tail.count(b'B') // 8)
    assert {0, 8} <= seen and len(seen) > 3


def test_page_units_tear_at_page_boundaries_only(tmp_path):
    def calls(io, path):
        fd, m = grown(io, path, 3 * 4096)
        io.write(m, 100, b'x' * 8200)
    model, _log = record(tmp_path, calls, pmem_powerloss.PAGE_UNIT)
    seen = set()
    for files in images(model, 'reorder'):
        pages = [files['pool'][i:i + 4096] for i in range(0, 3 * 4096, 4096)]
        # Each page all old or all new.
        assert pages[0] in (bytes(4096), bytes(100) + b'x' * 3996)
        assert pages[1] in (bytes(4096), b'x' * 4096)
        assert pages[2] in (bytes(4096), b'x' * 108 + bytes(3988))
        seen.add(tuple(p.count(b'x') > 0 for p in pages))
    assert len(seen) == 8


def test_a_flush_covers_the_units_its_range_touches(tmp_path):
    def calls(io, path):
        fd, m = grown(io, path)
        io.write(m, 0, b'a' * 20)
        io.flush(m, 9, 2)           # units [8, 16) only
    model, _log = record(tmp_path, calls)
    for files in images(model, 'reorder', 100):
        content = files['pool']
        assert content[8:16] == b'a' * 8
        assert content[:8] in (b'a' * 8, bytes(8))


def test_prefix_mode_keeps_unflushed_writes_in_order(tmp_path):
    def calls(io, path):
        fd, m = grown(io, path)
        for i in range(6):
            io.write(m, 100 * i, bytes([65 + i]) * 50)
    model, _log = record(tmp_path, calls)
    torn = 0
    for files in images(model, 'prefix'):
        content = files['pool']
        whole = [content[100 * i:100 * i + 50] == bytes([65 + i]) * 50
                 for i in range(6)]
        empty = [content[100 * i:100 * i + 50] == bytes(50)
                 for i in range(6)]
        k = whole.index(False) if False in whole else 6
        # Whole up to k, then at most one torn write, then nothing.
        assert all(empty[k + 1:])
        torn += k < 6 and not empty[k]
    assert torn > 20


def test_a_new_size_is_durable_only_after_fsync(tmp_path):
    def calls(io, path):
        fd, m = grown(io, path, 4096)
        io.write(m, 0, b'h' * 8)
        io.flush(m, 0, 8)
        io.unmap(m)
        io.truncate(fd, 3 * 4096)
        m = io.map(fd, 3 * 4096)
        io.write(m, 5000, b'g' * 8)
        io.flush(m, 5000, 8)        # flushed, but the size is not durable
    model, _log = record(tmp_path, calls)
    sizes = set()
    for mode in ('prefix', 'reorder'):
        for files in images(model, mode, 100):
            content = files['pool']
            assert content[:8] == b'h' * 8
            sizes.add(len(content))
            if len(content) > 5000:
                assert content[5000:5008] == b'g' * 8
    assert sizes == {4096, 3 * 4096}
    assert model.durable() == {'pool': b'h' * 8 + bytes(4088)}


def test_a_new_file_may_be_missing_until_fsynced(tmp_path):
    def calls(io, path):
        fd = io.open(path, os.O_RDWR | os.O_CREAT)
        io.truncate(fd, 4096)
    model, _log = record(tmp_path, calls)
    for mode in ('prefix', 'reorder'):
        found = {tuple(files.items())[0][1] if files else None
                 for files in images(model, mode, 100)}
        assert found == {None, b'', bytes(4096)}, mode
    assert model.durable() == {}


def test_fsync_makes_every_write_durable(tmp_path):
    def calls(io, path):
        fd, m = grown(io, path)
        io.write(m, 3, b'q' * 3000)
        io.fsync(fd)
    model, _log = record(tmp_path, calls)
    for files in images(model, 'reorder', 20):
        assert files == model.current()


def test_the_model_refuses_a_shrinking_file(tmp_path):
    def calls(io, path):
        fd, m = grown(io, path)
        io.unmap(m)
        io.truncate(fd, 10)
    with pmem_faults.PMemSeams(io) as seams:
        calls(io, str(tmp_path / 'pool'))
    model = pmem_powerloss.PoolModel(str(tmp_path))
    with pytest.raises(ValueError, match='growing files only'):
        for op in seams.log:
            model.apply(op)
