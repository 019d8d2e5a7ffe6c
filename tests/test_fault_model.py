"""The fault-injection seams and the power-loss model the crash tests
rely on (:mod:`objstore.testing.faults`, :mod:`objstore.testing.powerloss`).
"""
import os
import random

import pytest

from objstore.storages.file import fsio
from objstore.testing import faults, powerloss


def test_the_model_keeps_what_was_synced_and_may_lose_the_rest(tmp_path):
    log_path = str(tmp_path / 'log')
    new_path = str(tmp_path / 'new')
    real = {name: getattr(fsio, name) for name in faults.SEAMS}
    with faults.Seams() as seams:
        fd = fsio.open(log_path, os.O_RDWR | os.O_CREAT)
        fsio.write(fd, b'a' * 1000, 0)
        fsio.fsync(fd)
        fsio.fsync_dir(log_path)
        fsio.write(fd, b'b' * 1000, 1000)
        other = fsio.open(new_path, os.O_RDWR | os.O_CREAT)
        fsio.write(other, b'new', 0)
        fsio.fsync(other)
        fsio.close(other)
        fsio.replace(new_path, log_path)
        fsio.close(fd)
    assert {name: getattr(fsio, name) for name in faults.SEAMS} == real
    assert [op.kind for op in seams.log] == [
        'open', 'write', 'fsync', 'fsync_dir', 'write', 'open', 'write',
        'fsync', 'close', 'replace', 'close']
    model = powerloss.FileSystemModel(str(tmp_path))
    for op in seams.log:
        model.apply(op)
    assert model.current() == {'log': b'new'}
    seen = set()
    rng = random.Random(5)
    for _ in range(300):
        files, _how = model.image(powerloss.RandomChoices(rng))
        if files == {'log': b'new'}:
            seen.add('renamed')
            continue
        # Not renamed: the old file, its synced part whole, and maybe the
        # new one under its own name.
        assert files.pop('new', b'new') == b'new'
        assert set(files) == {'log'}
        content = files['log']
        assert content[:1000] == b'a' * 1000
        tail = content[1000:]
        assert len(tail) <= 1000
        assert tail.strip(b'\0') == b'b' * len(tail.strip(b'\0'))
        seen.add(len(tail))
    assert 'renamed' in seen and 0 in seen and 1000 in seen
    assert len(seen) > 3        # torn at 512-byte boundaries too


def test_a_reordered_sector_holds_a_prefix_of_the_writes_to_it(tmp_path):
    # A disk writes a whole sector as the page cache held it: the trailer
    # written into the sector where the body ends is never there without
    # that body end.
    root = str(tmp_path)
    path = os.path.join(root, 'log')
    model = powerloss.FileSystemModel(root)
    for op in (faults.Op('open', path=path, fd=3, flags=os.O_CREAT),
               faults.Op('fsync_dir', path=path),
               faults.Op('write', path=path, fd=3, offset=0,
                         data=b'a' * 600),
               faults.Op('write', path=path, fd=3, offset=600,
                         data=b'b' * 24)):
        model.apply(op)
    rng = random.Random(7)
    seen = set()
    for _ in range(200):
        files, _how = model.image(powerloss.RandomChoices(rng, 'reorder'))
        second = files['log'][512:]
        assert second in (b'', b'a' * 88, b'a' * 88 + b'b' * 24), second
        seen.add(len(second))
    assert seen == {0, 88, 112}


def test_seams_put_fsio_back_after_a_simulated_death(tmp_path):
    real = fsio.write
    with pytest.raises(faults.SimulatedCrash):
        with faults.Seams() as seams:
            fd = fsio.open(str(tmp_path / 'x'), os.O_RDWR | os.O_CREAT)
            seams.crash(kind='write', torn=3)
            fsio.write(fd, b'abcdef', 0)
    assert fsio.write is real
    with open(str(tmp_path / 'x'), 'rb') as f:
        assert f.read() == b'abc'
    # The dead process's descriptor was closed, as the kernel would.
    with pytest.raises(OSError):
        os.fstat(fd)
