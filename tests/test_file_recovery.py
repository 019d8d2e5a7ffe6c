"""FileStorage: checkpoints, crash recovery, corruption, injected faults."""
import errno
import os
import random
import shutil
import warnings

import pytest

from objstore import errors
from objstore.storages.base import maxtid, z64
from objstore.storages.file import FileStorage, TruncatedTailWarning
from objstore.storages.file import format as fmt
from objstore.storages.file import fsio, log
from objstore.testing.helpers import (
    commit, make_txn, new_object, record, set_value, undo)


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / 'data.fs')


def fill(storage, transactions, per_txn=3):
    """Commit ``transactions`` transactions of new objects; return
    ``{oid: (value, tid)}``."""
    state = {}
    for t in range(transactions):
        stores = {}
        for i in range(per_txn):
            oid = storage.new_oid()
            stores[oid] = (z64, record((t, i)))
        tid = commit(storage, stores)
        for oid in stores:
            state[oid] = ((stores[oid][1]), tid)
    return state


def crash_copy(storage, tmp_path, name='crashed.fs'):
    """Copy the file and its checkpoint as they are now, as a crash of the
    writer would leave them (no close, no final checkpoint)."""
    target = str(tmp_path / name)
    shutil.copyfile(storage.getName(), target)
    if os.path.exists(storage.getName() + '.index'):
        shutil.copyfile(storage.getName() + '.index', target + '.index')
    return target


def assert_state(storage, state):
    for oid, (data, tid) in state.items():
        assert storage.load(oid) == (data, tid)


# -- checkpoints ------------------------------------------------------------

def test_open_after_clean_close_reads_only_the_checkpoint(path):
    storage = FileStorage(path)
    state = fill(storage, 20)
    storage.close()
    storage = FileStorage(path)
    try:
        assert storage.records_scanned == 0
        assert_state(storage, state)
    finally:
        storage.close()


def test_open_after_crash_reads_checkpoint_plus_tail(path, tmp_path,
                                                     monkeypatch):
    monkeypatch.setattr(log, 'CHECKPOINT_BYTES', 2000)
    storage = FileStorage(path)
    try:
        state = fill(storage, 40)
        assert os.path.exists(path + '.index')
        monkeypatch.setattr(log, 'CHECKPOINT_BYTES', 1 << 30)
        state.update(fill(storage, 2))
        crashed = crash_copy(storage, tmp_path)
    finally:
        storage.close()
    reopened = FileStorage(crashed)
    try:
        # Periodic checkpoints cover all but the last few transactions.
        assert 6 <= reopened.records_scanned < 20
        assert_state(reopened, state)
    finally:
        reopened.close()


def test_without_checkpoint_the_whole_log_is_scanned(path):
    storage = FileStorage(path)
    state = fill(storage, 10)
    storage.close()
    os.remove(path + '.index')
    storage = FileStorage(path)
    try:
        assert storage.records_scanned == 30
        assert_state(storage, state)
    finally:
        storage.close()


@pytest.mark.parametrize('damage', ['flip-header', 'flip-directory',
                                    'truncate', 'garbage'])
def test_a_bad_checkpoint_is_ignored(path, damage):
    storage = FileStorage(path)
    state = fill(storage, 10)
    storage.close()
    cp = path + '.index'
    with open(cp, 'r+b') as f:
        data = bytearray(f.read())
        if damage == 'flip-header':
            data[20] ^= 0x10
        elif damage == 'flip-directory':
            data[60] ^= 0x01
        elif damage == 'truncate':
            data = data[:len(data) // 2]
        else:
            data = bytearray(b'nonsense')
        f.seek(0)
        f.truncate()
        f.write(data)
    storage = FileStorage(path)
    try:
        assert storage.records_scanned == 30
        assert_state(storage, state)
    finally:
        storage.close()


def test_a_damaged_checkpoint_group_is_rebuilt_from_the_log(path):
    storage = FileStorage(path)
    state = fill(storage, 10)
    storage.close()
    with open(path + '.index', 'r+b') as f:
        f.seek(-3, os.SEEK_END)
        byte = f.read(1)
        f.seek(-3, os.SEEK_END)
        f.write(bytes([byte[0] ^ 0x20]))
    storage = FileStorage(path)
    try:
        # Groups are checked when first used, not at open.
        assert storage.records_scanned == 0
        assert_state(storage, state)
        assert len(storage) == 30
        state.update(fill(storage, 1))
    finally:
        storage.close()
    storage = FileStorage(path)
    try:
        assert storage.records_scanned == 0
        assert_state(storage, state)
    finally:
        storage.close()


def test_a_checkpoint_of_a_longer_log_is_ignored(path, tmp_path):
    storage = FileStorage(path)
    fill(storage, 3)
    early = crash_copy(storage, tmp_path, 'early.fs')
    state = fill(storage, 3)
    storage.close()
    # The checkpoint of the full log next to the shorter log.
    shutil.copyfile(path + '.index', early + '.index')
    storage = FileStorage(early)
    try:
        assert storage.records_scanned == 9
        for oid in state:
            with pytest.raises(errors.POSKeyError):
                storage.load(oid)
    finally:
        storage.close()


# -- torn tails -------------------------------------------------------------

def voted_copy(storage, tmp_path):
    """A copy of the file taken between tpc_vote and tpc_finish."""
    txn = make_txn()
    storage.tpc_begin(txn)
    storage.store(storage.new_oid(), z64, record('voted'), '', txn)
    storage.tpc_vote(txn)
    copy = crash_copy(storage, tmp_path, 'voted.fs')
    storage.tpc_abort(txn)
    return copy


def test_a_transaction_without_trailer_is_cut_with_a_warning(path, tmp_path):
    storage = FileStorage(path)
    state = fill(storage, 5)
    good_size = os.path.getsize(path)
    copy = voted_copy(storage, tmp_path)
    storage.close()
    assert os.path.getsize(copy) > good_size
    with pytest.warns(TruncatedTailWarning) as caught:
        reopened = FileStorage(copy)
    try:
        message = str(caught[0].message)
        assert copy in message and 'offset %d' % good_size in message
        assert os.path.getsize(copy) == good_size
        assert_state(reopened, state)
        assert reopened.lastTransaction() == max(t for _, t in state.values())
    finally:
        reopened.close()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        FileStorage(copy).close()


@pytest.mark.parametrize('keep', [1, 20, 40, 100, -30, -24, -1])
def test_every_prefix_of_a_last_transaction_is_cut(path, tmp_path, keep):
    storage = FileStorage(path)
    state = fill(storage, 3)
    good_size = os.path.getsize(path)
    set_value(storage, next(iter(state)), 'last')
    storage.close()
    with open(path, 'r+b') as f:
        full = os.path.getsize(path)
        f.truncate(good_size + keep if keep > 0 else full + keep)
    os.remove(path + '.index')
    with pytest.warns(TruncatedTailWarning):
        storage = FileStorage(path)
    try:
        assert os.path.getsize(path) == good_size
        assert_state(storage, state)
    finally:
        storage.close()


def test_zeros_at_the_end_are_cut(path):
    storage = FileStorage(path)
    state = fill(storage, 3)
    storage.close()
    size = os.path.getsize(path)
    with open(path, 'ab') as f:
        f.write(bytes(1000))
    with pytest.warns(TruncatedTailWarning):
        storage = FileStorage(path)
    try:
        assert os.path.getsize(path) == size
        assert_state(storage, state)
    finally:
        storage.close()


# -- corruption -------------------------------------------------------------

def test_damage_followed_by_valid_transactions_is_corruption(path):
    storage = FileStorage(path)
    fill(storage, 5)
    storage.close()
    os.remove(path + '.index')
    size = os.path.getsize(path)
    with open(path, 'r+b') as f:
        f.seek(size // 3)
        byte = f.read(1)
        f.seek(size // 3)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(errors.CorruptionError) as info:
        FileStorage(path)
    assert info.value.offset is not None and path in str(info.value)
    assert 'valid transaction follows' in str(info.value)
    assert os.path.getsize(path) == size  # nothing was cut


def test_a_complete_damaged_last_transaction_is_not_cut(path):
    storage = FileStorage(path)
    fill(storage, 3)
    storage.close()
    os.remove(path + '.index')
    size = os.path.getsize(path)
    with open(path, 'r+b') as f:
        f.seek(size - 40)
        byte = f.read(1)
        f.seek(size - 40)
        f.write(bytes([byte[0] ^ 4]))
    with pytest.raises(errors.CorruptionError):
        FileStorage(path)
    assert os.path.getsize(path) == size


def test_a_damaged_record_raises_on_load_naming_offset_and_oid(path):
    storage = FileStorage(path)
    state = fill(storage, 3)
    storage.close()
    oid = sorted(state)[4]
    storage = FileStorage(path)
    pos = storage._index.get(oid)
    storage.close()
    with open(path, 'r+b') as f:
        f.seek(pos + fmt.RECORD_SIZE + 3)
        byte = f.read(1)
        f.seek(pos + fmt.RECORD_SIZE + 3)
        f.write(bytes([byte[0] ^ 0x80]))
    storage = FileStorage(path)  # the checkpoint covers it: opens
    try:
        with pytest.raises(errors.CorruptionError) as info:
            storage.load(oid)
        assert info.value.offset == pos and info.value.oid == oid
        with pytest.raises(errors.CorruptionError):
            list(storage.iterator())
    finally:
        storage.close()


def snapshot(storage):
    """Everything a reader can see, for comparing before and after."""
    oids = [oid for oid, _ in storage._index.items()]
    return {
        'iteration': [(t.tid, t.status, t.user, t.description,
                       t.extension_bytes,
                       [(r.oid, r.tid, r.data, r.data_txn) for r in t])
                      for t in storage.iterator()],
        'current': {oid: _try(storage.load, oid) for oid in oids},
        'history': {oid: storage.history(oid, None) for oid in oids},
        'undo': storage.undoLog(0, 1000),
        'last': storage.lastTransaction(),
    }


def _try(call, *args):
    try:
        return call(*args)
    except errors.POSKeyError:
        return 'missing'


def small_file(path):
    storage = FileStorage(path)
    a, ta = new_object(storage, 'a')
    b, tb = new_object(storage, 'b', refs=[a])
    set_value(storage, a, 'a2')
    commit(storage, deletes={b: tb}, user='me', description='drop b',
           extension={'x': 1})
    undo(storage, storage.undoLog()[1]['id'])
    storage.close()


@pytest.mark.parametrize('with_checkpoint', [True, False])
def test_every_single_bit_flip_is_detected_or_harmless(tmp_path,
                                                       with_checkpoint):
    original = str(tmp_path / 'orig.fs')
    small_file(original)
    storage = FileStorage(original)
    expected = snapshot(storage)
    storage.close()
    with open(original, 'rb') as f:
        image = f.read()
    with open(original + '.index', 'rb') as f:
        checkpoint = f.read()
    target = str(tmp_path / 'flipped.fs')
    outcomes = {'detected': 0, 'harmless': 0}
    for bit in range(len(image) * 8):
        flipped = bytearray(image)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with open(target, 'wb') as f:
            f.write(flipped)
        if with_checkpoint:
            with open(target + '.index', 'wb') as f:
                f.write(checkpoint)
        elif os.path.exists(target + '.index'):
            os.remove(target + '.index')
        with warnings.catch_warnings():
            # A cut tail would be silent loss of an acknowledged commit.
            warnings.simplefilter('error')
            try:
                storage = FileStorage(target, read_only=True)
            except (errors.CorruptionError, errors.FileFormatError) as exc:
                assert exc.args, bit
                outcomes['detected'] += 1
                continue
            try:
                seen = snapshot(storage)
            except errors.CorruptionError as exc:
                assert exc.offset is not None, bit
                outcomes['detected'] += 1
            else:
                assert seen == expected, 'bit %d changed data silently' % bit
                outcomes['harmless'] += 1
            finally:
                storage.close()
    assert outcomes['detected'] > outcomes['harmless']


def test_every_single_bit_flip_of_the_checkpoint_is_harmless(tmp_path):
    path = str(tmp_path / 'orig.fs')
    small_file(path)
    storage = FileStorage(path, read_only=True)
    expected = snapshot(storage)
    storage.close()
    with open(path + '.index', 'rb') as f:
        checkpoint = f.read()
    for bit in range(len(checkpoint) * 8):
        flipped = bytearray(checkpoint)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with open(path + '.index', 'wb') as f:
            f.write(flipped)
        storage = FileStorage(path, read_only=True)
        try:
            assert snapshot(storage) == expected, bit
        finally:
            storage.close()


# -- injected faults --------------------------------------------------------

def failing_after(real, count, exc):
    calls = []

    def fake(*args):
        calls.append(args)
        if len(calls) > count:
            raise exc
        return real(*args)
    return fake


def test_a_failed_vote_write_leaves_nothing(path, monkeypatch):
    storage = FileStorage(path)
    state = fill(storage, 2)
    size = os.path.getsize(path)

    def half_then_fail(fd, data, offset):
        fsio_write(fd, bytes(data)[:len(data) // 2], offset)
        raise OSError(errno.ENOSPC, 'No space left on device')
    fsio_write = fsio.write
    monkeypatch.setattr(fsio, 'write', half_then_fail)
    txn = make_txn()
    storage.tpc_begin(txn)
    storage.store(storage.new_oid(), z64, record('x' * 1000), '', txn)
    with pytest.raises(OSError):
        storage.tpc_vote(txn)
    storage.tpc_abort(txn)
    monkeypatch.undo()
    assert os.path.getsize(path) == size
    state.update(fill(storage, 1))
    storage.close()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        storage = FileStorage(path)
    try:
        assert_state(storage, state)
    finally:
        storage.close()


def test_a_failed_fsync_in_finish_closes_and_leaves_nothing(path,
                                                            monkeypatch):
    storage = FileStorage(path)
    state = fill(storage, 2)
    size = os.path.getsize(path)
    monkeypatch.setattr(fsio, 'fsync', failing_after(
        fsio.fsync, 0, OSError(errno.EIO, 'Input/output error')))
    txn = make_txn()
    storage.tpc_begin(txn)
    storage.store(storage.new_oid(), z64, record('x'), '', txn)
    storage.tpc_vote(txn)
    with pytest.raises(OSError):
        storage.tpc_finish(txn)
    monkeypatch.undo()
    with pytest.raises(errors.StorageClosedError):
        storage.load(next(iter(state)))
    storage.close()
    assert os.path.getsize(path) == size
    storage = FileStorage(path)
    try:
        assert_state(storage, state)
        assert storage.lastTransaction() == max(t for _, t in state.values())
    finally:
        storage.close()


def test_a_failed_checkpoint_write_does_not_fail_the_commit(path,
                                                            monkeypatch):
    monkeypatch.setattr(log, 'CHECKPOINT_BYTES', 100)
    storage = FileStorage(path)
    real_replace = fsio.replace
    monkeypatch.setattr(fsio, 'replace', failing_after(
        real_replace, 0, OSError(errno.EACCES, 'Permission denied')))
    state = fill(storage, 3)
    monkeypatch.setattr(fsio, 'replace', real_replace)
    assert_state(storage, state)
    storage.close()
    storage = FileStorage(path)
    try:
        assert_state(storage, state)
    finally:
        storage.close()


# -- power loss: replaying prefixes of the recorded writes ------------------

class Recorder:
    """Records every write, truncate and fsync on the log file."""

    def __init__(self, monkeypatch, path):
        self.ops = []
        self.path = path
        self.fds = set()
        real_open, real_write = fsio.open, fsio.write
        real_truncate, real_fsync = fsio.truncate, fsio.fsync

        def open_(p, flags, mode=0o644):
            fd = real_open(p, flags, mode)
            if p == path:
                self.fds.add(fd)
            return fd

        def write(fd, data, offset):
            if fd in self.fds:
                self.ops.append(('write', bytes(data), offset))
            real_write(fd, data, offset)

        def truncate(fd, size):
            if fd in self.fds:
                self.ops.append(('truncate', size))
            real_truncate(fd, size)

        def fsync(fd):
            if fd in self.fds:
                self.ops.append(('fsync',))
            real_fsync(fd)
        for name, fake in (('open', open_), ('write', write),
                           ('truncate', truncate), ('fsync', fsync)):
            monkeypatch.setattr(fsio, name, fake)


def replay(ops, count, tear=None):
    """The file image after the first ``count`` ops, the last write torn
    to its first ``tear`` bytes (rounded to a 512-byte boundary)."""
    image = bytearray()
    for i, op in enumerate(ops[:count]):
        if op[0] == 'write':
            data, offset = op[1], op[2]
            if tear is not None and i == count - 1:
                end = ((offset + tear) // 512) * 512
                data = data[:max(0, end - offset)]
            if len(image) < offset:
                image.extend(bytes(offset - len(image)))
            image[offset:offset + len(data)] = data
        elif op[0] == 'truncate':
            del image[op[1]:]
    return bytes(image)


def test_power_loss_at_any_write_keeps_every_acknowledged_commit(
        tmp_path, monkeypatch):
    path = str(tmp_path / 'data.fs')
    recorder = Recorder(monkeypatch, path)
    storage = FileStorage(path)
    acknowledged = []    # (number of ops when tpc_finish returned, state)
    state = {}
    rng = random.Random(7)
    oids = []
    for t in range(12):
        stores = {}
        if oids and rng.random() < 0.5:
            oid = rng.choice(oids)
            stores[oid] = (state[oid][1], record(('upd', t, 'x' * rng.randrange(2000))))
        oid = storage.new_oid()
        oids.append(oid)
        stores[oid] = (z64, record(('new', t, 'y' * rng.randrange(1500))))
        tid = commit(storage, stores)
        for oid, (_, data) in stores.items():
            state[oid] = (data, tid)
        acknowledged.append((len(recorder.ops), dict(state)))
        if t == 6:
            # An aborted transaction in the middle.
            txn = make_txn()
            storage.tpc_begin(txn)
            storage.store(storage.new_oid(), z64, record('gone'), '', txn)
            storage.tpc_vote(txn)
            storage.tpc_abort(txn)
    storage.close()
    monkeypatch.undo()
    ops = recorder.ops
    assert sum(op[0] == 'fsync' for op in ops) >= 13
    target = str(tmp_path / 'replayed.fs')
    for count in range(1, len(ops) + 1):
        tears = [None]
        if ops[count - 1][0] == 'write':
            tears += [0, 512, 1024, 3000]
        for tear in tears:
            with open(target, 'wb') as f:
                f.write(replay(ops, count, tear))
            barrier = max([i + 1 for i, op in enumerate(ops[:count])
                           if op[0] == 'fsync'] or [0])
            must = {}
            for done, snapshot_state in acknowledged:
                if done <= barrier:
                    must = snapshot_state
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', TruncatedTailWarning)
                storage = FileStorage(target)
            try:
                for oid, (data, tid) in must.items():
                    got = storage.loadBefore(oid, maxtid)
                    assert got is not None
                    # A later acknowledged-or-not commit may be present too,
                    # but never a partial one: every visible state is one
                    # of the committed states.
                    assert (got[0], got[1]) == (data, tid) or \
                        got[1] > tid, (count, tear)
                visible = storage.lastTransaction()
                states = [s for _, s in acknowledged]
                matching = [s for s in states
                            if max((t for _, t in s.values()),
                                   default=z64) == visible]
                if visible != z64:
                    assert matching, (count, tear)
                    for oid, (data, tid) in matching[0].items():
                        assert storage.load(oid) == (data, tid)
            finally:
                storage.close()
            os.remove(target)
            if os.path.exists(target + '.index'):
                os.remove(target + '.index')


def test_a_creation_cut_short_is_created_again(path):
    # The header write never reached the disk, but the file had grown.
    with open(path, 'wb') as f:
        f.write(bytes(fmt.FILE_HEADER_SIZE))
    storage = FileStorage(path)
    try:
        assert storage.lastTransaction() == z64
        new_object(storage, 1)
    finally:
        storage.close()
