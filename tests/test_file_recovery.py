"""FileStorage: index checkpoints, and the recovery rule's cases one by one.

The systematic versions live beside: process deaths and injected I/O
errors in ``test_file_crash``, power loss in ``test_file_power_loss``,
single bit flips everywhere in ``test_file_corruption``, random histories
against a model in ``test_file_statemachine``."""
import os
import shutil
import warnings

import pytest

from objstore import errors
from objstore.storages.base import z64
from objstore.storages.file import FileStorage, TruncatedTailWarning
from objstore.storages.file import format as fmt
from objstore.storages.file import log
from objstore.testing.helpers import (
    commit, make_txn, new_object, record, set_value)


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


def assert_reopens(path, state, scanned):
    """Open ``path``: it reads ``scanned`` log records and shows ``state``."""
    storage = FileStorage(path)
    try:
        assert storage.records_scanned == scanned
        assert_state(storage, state)
    finally:
        storage.close()


def assert_cut_on_open(path, size, state):
    """Opening ``path`` cuts it to ``size`` with a warning naming the file
    and the offset, and shows ``state``; the next open is silent."""
    with pytest.warns(TruncatedTailWarning) as caught:
        storage = FileStorage(path)
    try:
        message = str(caught[0].message)
        assert path in message and 'offset %d' % size in message
        assert os.path.getsize(path) == size
        assert_state(storage, state)
        assert storage.lastTransaction() == max(t for _, t in state.values())
    finally:
        storage.close()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        FileStorage(path).close()


# -- checkpoints ------------------------------------------------------------

def test_open_after_clean_close_reads_only_the_checkpoint(path):
    storage = FileStorage(path)
    state = fill(storage, 20)
    storage.close()
    assert_reopens(path, state, scanned=0)


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
    assert_reopens(path, state, scanned=30)


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
    assert_reopens(path, state, scanned=30)


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
    assert_reopens(path, state, scanned=0)


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
    assert_cut_on_open(copy, good_size, state)


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
    assert_cut_on_open(path, good_size, state)


def test_zeros_at_the_end_are_cut(path):
    storage = FileStorage(path)
    state = fill(storage, 3)
    storage.close()
    size = os.path.getsize(path)
    with open(path, 'ab') as f:
        f.write(bytes(1000))
    assert_cut_on_open(path, size, state)


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


# -- creation ---------------------------------------------------------------

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
