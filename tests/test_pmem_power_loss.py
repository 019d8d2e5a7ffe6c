"""PMemStorage after a power loss at any moment: what the pool may keep.

First the model itself (:mod:`objstore.testing.pmem_powerloss`), on
writes made by hand through the ``pmemio`` seam. Then the workload of
:class:`objstore.testing.pmem_workload.PMemWorkload` (with a process
death at a commit point and the open that recovers from it) runs once
with every pmemio call recorded, and many power-loss images are built
from prefixes of that log: everything a completed flush covered (in
8-byte units for persistent memory, pages for a page cache) and the size
at the last fsync stay; of the rest, ``prefix`` keeps the writes in
order up to one, torn (a random set of its units), ``reorder`` each unit
as of a random moment. Each image must open to the state after the last
step done before the power went or after the step in progress (a pool
whose creation was cut may be refused as not a pool), read right, take
a commit and open through ``objstore.DB``.

``OBJSTORE_POWER_LOSS_REPLAYS`` sets how many random images to check for
each mode ``OBJSTORE_POWER_LOSS_MODE`` names and each unit (default 100
for each of ``prefix,reorder`` and 8, 4096 bytes; a long run: 2000).
"""
import os
import random
import shutil

import pytest

from objstore.storages.pmem import pmemio as io
from objstore.testing import pmem_faults, pmem_powerloss
from objstore.testing.pmem_recovered import check_recovered
from objstore.testing.pmem_workload import PMemWorkload, candidates

REPLAYS = int(os.environ.get('OBJSTORE_POWER_LOSS_REPLAYS', '100'))
MODES = os.environ.get('OBJSTORE_POWER_LOSS_MODE',
                       'prefix,reorder').split(',')
UNITS = [pmem_powerloss.PMEM_UNIT, pmem_powerloss.PAGE_UNIT]


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


# -- PMemStorage's workload, replayed --------------------------------------

@pytest.fixture(scope='module')
def recorded(tmp_path_factory):
    """The workload's log and steps (recorded once for the module)."""
    directory = str(tmp_path_factory.mktemp('recorded'))
    with pmem_faults.PMemSeams(sync=False) as seams:
        workload = PMemWorkload(directory, seams)
        workload.run()
    return directory, seams.log, workload


def check_image(files, directory, k, workload):
    """Write the image, then check it: a problem or None."""
    pmem_powerloss.write_files(files, directory)
    states, dirty = candidates(workload.steps, k)
    try:
        return check_recovered(os.path.join(directory, 'data.pool'), states,
                               workload.oids, dirty)
    finally:
        shutil.rmtree(directory)


def replay(recorded, tmp_path, unit, images):
    """Check ``images``: ``(k, choices)`` pairs, ``k`` ascending; return
    the failures."""
    root, log, workload = recorded
    model = pmem_powerloss.PoolModel(root, unit)
    applied = 0
    failures = []
    for n, (k, choices) in enumerate(images):
        while applied < k:
            model.apply(log[applied])
            applied += 1
        files, how = model.image(choices)
        problem = check_image(files, str(tmp_path / ('image%d' % n)), k,
                              workload)
        if problem:
            failures.append('after op %d of %d (%r): %s\n    image: %s'
                            % (k, len(log), log[k - 1] if k else None,
                               problem, how))
    return failures


def test_the_recorded_workload_has_what_the_replays_need(recorded):
    root, log, workload = recorded
    names = [step.name for step in workload.steps]
    assert names.count('process death') == 1
    assert 'recovering open' in names and 'pack' in names
    assert sum(1 for op in log if op.kind == 'truncate') >= 3  # grows
    assert sum(1 for op in log if op.kind == 'flush') >= 40
    # Writes long enough to tear in 8-byte units, and in pages.
    assert sum(1 for op in log if op.kind == 'write'
               and len(op.data) > 2 * pmem_powerloss.PAGE_UNIT) >= 5


@pytest.mark.parametrize('unit', UNITS, ids=['pmem', 'page'])
@pytest.mark.parametrize('mode', MODES)
def test_every_random_power_loss_image_opens_to_a_committed_state(
        recorded, tmp_path, mode, unit):
    root, log, workload = recorded
    rng = random.Random(5151 + unit)
    images = sorted(((rng.randint(0, len(log)), pmem_powerloss.RandomChoices(
        random.Random(rng.random()), mode)) for _ in range(REPLAYS)),
        key=lambda pair: pair[0])
    failures = replay(recorded, tmp_path, unit, images)
    assert not failures, '%d of %d images failed:\n%s' % (
        len(failures), len(images), '\n'.join(failures[:10]))


class TornLast:
    """Every pending write kept, in order, up to write ``seq``, which is
    torn: the units ``keep(number)`` accepts of it reach the file."""

    def __init__(self, seq, keep, what):
        self.seq = seq
        self.keep = keep
        self.what = what

    def file(self, pool_file, unit):
        def keep(piece):
            if piece.seq < self.seq:
                return [(piece.offset, piece.data)]
            if piece.seq > self.seq:
                return []
            return [(offset, data) for number, offset, data
                    in pmem_powerloss.units_of(piece, unit)
                    if self.keep(number)]
        sizes = [s for seq, s in pool_file.sizes if seq < self.seq]
        size = sizes[-1] if sizes else pool_file.durable_size
        return pool_file.build(size, keep), self.what


def test_the_power_fails_in_every_root_and_flag_write(recorded, tmp_path):
    """Each write into the header (root slots, the clean-shutdown flag,
    the magic) torn: its first half of 8-byte units kept, then its second
    half, every earlier write kept."""
    root, log, workload = recorded
    model = pmem_powerloss.PoolModel(root)
    failures = []
    checked = 0
    for k, op in enumerate(log):
        model.apply(op)
        if op.kind == 'write' and op.offset < 4096:
            first = op.offset // 8
            middle = (op.offset + len(op.data) // 2) // 8
            for name, keep in (('first half', lambda n: n < middle),
                               ('second half', lambda n: n >= middle)):
                if middle == first and name == 'first half':
                    continue
                checked += 1
                files, how = model.image(TornLast(
                    model.seq, keep, '%r, %s kept' % (op, name)))
                # The image holds a part of op k: it is after k+1 ops.
                problem = check_image(files, str(tmp_path / (
                    'torn%d-%s' % (k, name[0]))), k + 1, workload)
                if problem:
                    failures.append('write %d %r, %s kept: %s'
                                    % (k, op, name, problem))
    assert checked >= 40
    assert not failures, '%d of %d torn header writes failed:\n%s' % (
        len(failures), checked, '\n'.join(failures[:10]))


class LoseRootWrites:
    """Every pending write kept but those into the root slots: the power
    went after the storage wrote a new root and before a flush made it
    durable, and the root never reached the media."""

    what = 'every pending write kept but the root slots'

    def file(self, pool_file, unit):
        from objstore.storages.pmem import format as pmem_format
        low = pmem_format.SLOT_OFFSETS[0]
        high = pmem_format.SLOT_OFFSETS[-1] + pmem_format.SLOT_SIZE

        def keep(piece):
            if piece.offset < high and piece.end > low:
                return []
            return [(piece.offset, piece.data)]
        sizes = [s for _seq, s in pool_file.sizes]
        return pool_file.build(sizes[-1] if sizes else
                               pool_file.durable_size, keep), self.what


def test_a_root_that_never_reached_the_media_takes_nothing_with_it(
        recorded, tmp_path):
    """Wherever a written root slot is not yet flushed (between a
    commit's root write and its flush, and after a process death that
    left a written root unflushed until the slot is written again), the
    power fails and that root is lost while every other write is kept:
    the pool must still show an allowed state, the older root's records
    intact."""
    from objstore.storages.pmem import format as pmem_format
    root, log, workload = recorded
    model = pmem_powerloss.PoolModel(root)
    low = pmem_format.SLOT_OFFSETS[0]
    high = pmem_format.SLOT_OFFSETS[-1] + pmem_format.SLOT_SIZE
    failures = []
    checked = 0
    for k, op in enumerate(log, 1):
        model.apply(op)
        pool_file = model.files.get('data.pool')
        if pool_file is None or not any(
                piece.offset < high and piece.end > low
                for piece in pool_file.pending):
            continue
        checked += 1
        files, how = model.image(LoseRootWrites())
        problem = check_image(files, str(tmp_path / ('lost%d' % k)), k,
                              workload)
        if problem:
            failures.append('after op %d (%r): %s' % (k, op, problem))
    assert checked >= 30
    assert not failures, '%d of %d images failed:\n%s' % (
        len(failures), checked, '\n'.join(failures[:10]))


def test_no_write_lands_in_what_a_root_a_power_loss_may_leave_reaches(
        recorded):
    """Copy-on-write, checked at every write of the log, whatever the
    allocator picks: the roots a power loss at that moment may leave in
    force (each slot as flushed, or as written since; the valid one with
    the higher generation wins) reach table nodes and records that no
    write may touch."""
    from objstore.storages.pmem import format as pmem_format
    from objstore.storages.pmem import recovery
    root, log, workload = recorded
    model = pmem_powerloss.PoolModel(root)
    reached = {}
    failures = []
    checked = 0
    for k, op in enumerate(log):
        pool_file = model.files.get('data.pool')
        if (op.kind == 'write' and op.offset >= pmem_format.HEADER_SIZE
                and pool_file is not None):
            checked += 1
            for in_force in roots_a_power_loss_may_leave(pool_file):
                key = in_force.pack()
                if key not in reached:
                    reached[key] = recovery.used_extents(
                        workload.path, bytes(pool_file.current), in_force,
                        pool_file.size)[0]
                for start, length in reached[key]:
                    if start < op.end and op.offset < start + length:
                        failures.append(
                            'op %d %r overwrites [%d, %d), reached by the'
                            ' root of generation %d (tid %s)' % (
                                k, op, start, start + length,
                                in_force.generation, in_force.tid.hex()))
        model.apply(op)
    assert checked >= 60
    assert not failures, '%d writes break copy-on-write:\n%s' % (
        len(failures), '\n'.join(failures[:10]))


def roots_a_power_loss_may_leave(pool_file):
    """The roots that may be in force after a power loss now."""
    from objstore.storages.pmem import format as pmem_format
    versions = []
    for slot in pmem_format.SLOT_OFFSETS:
        end = slot + pmem_format.SLOT_SIZE
        versions.append({bytes(pool_file.base[slot:end]),
                         bytes(pool_file.current[slot:end])})
    result = {}
    for a in versions[0]:
        for b in versions[1]:
            valid = [root for root in (
                _root_in(a), _root_in(b)) if root is not None]
            if valid:
                best = max(valid, key=lambda root: root.generation)
                result[best.pack()] = best
    return list(result.values())


def _root_in(slot_bytes):
    from objstore.storages.pmem import format as pmem_format
    if len(slot_bytes) < pmem_format.ROOT.size + pmem_format.ROOT_CRC.size:
        return None
    return pmem_format.Root.unpack(slot_bytes, 0)
