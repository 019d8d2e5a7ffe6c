"""FileStorage after a power loss at any moment: what the disk may keep.

A workload (commits big and small, an abort, a deletion, an undo, two
packs, periodic and closing index checkpoints, a process death and its
recovery) runs once with every file-system call recorded through the
``fsio`` seams. Then many crash images are built from prefixes of that
log (:class:`objstore.testing.powerloss.FileSystemModel`): each file
keeps everything up to its last fsync and, of the writes after it, a
prefix whose last write may be torn at a 512-byte boundary (the rest
missing, or zeros), or (``reorder``) any of the 512-byte sectors they
touched, each as of some moment (a prefix of the writes to it); the
directory keeps its renames up to the last fsync_dir and a prefix of the
later ones. Each image must open (a warning about a cut tail
is fine) to exactly the state after the last step that completed before
the power went, or after the step in progress; every read must agree with
it; and a new commit and a reopen must work.

``OBJSTORE_POWER_LOSS_REPLAYS`` sets how many random images to check
for each of the modes ``OBJSTORE_POWER_LOSS_MODE`` names (default 150 for
each of ``prefix,reorder``; a long run: 5000).
"""
import os
import random
import shutil
import warnings

import pytest

from objstore import errors
from objstore.storages.base import z64
from objstore.storages.file import FileStorage, TruncatedTailWarning
from objstore.storages.file import format as fmt
from objstore.storages.file import log as file_log
from objstore.storages.file import pack as file_pack
from objstore.testing import faults, powerloss
from objstore.testing.recovered import (
    Workload, candidates, check_recovered, snapshot)
from objstore.testing.helpers import commit, record

REPLAYS = int(os.environ.get('OBJSTORE_POWER_LOSS_REPLAYS', '150'))
#: ``prefix`` (writes reach the disk in order, the last one maybe torn) or
#: ``reorder`` (any subset of the 512-byte sectors the writes after the
#: last fsync touched, see ``powerloss.RandomChoices``); both by default.
MODES = os.environ.get('OBJSTORE_POWER_LOSS_MODE',
                       'prefix,reorder').split(',')


@pytest.fixture(scope='module')
def recorded(tmp_path_factory):
    """The workload's log and steps (recorded once for the module)."""
    directory = str(tmp_path_factory.mktemp('recorded'))
    patch = pytest.MonkeyPatch()
    # Small checkpoints and pack chunks, so that both happen often and
    # take several writes.
    patch.setattr(file_log, 'CHECKPOINT_BYTES', 2048)
    patch.setattr(file_pack, 'WRITE_CHUNK', 1500)
    try:
        with faults.Seams() as seams, warnings.catch_warnings():
            # The recovering open cuts what the process death left.
            warnings.simplefilter('ignore', TruncatedTailWarning)
            workload = Workload(directory, seams)
            workload.run()
    finally:
        patch.undo()
    return directory, seams.log, workload


def check_image(files, directory, expected, oids):
    """Write the image, then :func:`check_recovered`: a problem or None."""
    powerloss.write_files(files, directory)
    try:
        return check_recovered(os.path.join(directory, 'data.fs'), expected,
                               oids)
    finally:
        shutil.rmtree(directory)


def replay(recorded, tmp_path, images):
    """Check ``images``: ``(k, choices)`` pairs, ``k`` ascending; return
    the failures."""
    root, log, workload = recorded
    model = powerloss.FileSystemModel(root)
    applied = 0
    failures = []
    for n, (k, choices) in enumerate(images):
        while applied < k:
            model.apply(log[applied])
            applied += 1
        files, how = model.image(choices)
        problem = check_image(files, str(tmp_path / ('image%d' % n)),
                              candidates(workload.steps, k), workload.oids)
        if problem:
            failures.append('after op %d of %d (%r): %s\n    image: %s'
                            % (k, len(log), log[k - 1] if k else None,
                               problem, how))
    return failures


def test_the_workload_exercises_what_it_should(recorded):
    root, log, workload = recorded
    kinds = [op.kind for op in log]
    names = [os.path.basename(op.path) for op in log]
    replaced = [os.path.basename(op.dst) for op in log if op.kind == 'replace']
    assert replaced.count('data.fs') == 2               # two packs
    assert replaced.count('data.fs.index') >= 6        # checkpoints
    assert kinds.count('truncate') >= 2                # abort, recovery
    assert sum(1 for op in log if op.kind == 'write'
               and faults.tear_points(op)) >= 20       # tearable writes
    assert 'data.fs.pack' in names
    assert [s.name for s in workload.steps].count('process death') == 1


@pytest.mark.parametrize('mode', MODES)
def test_every_random_power_loss_image_opens_to_a_committed_state(
        recorded, tmp_path, mode):
    root, log, workload = recorded
    rng = random.Random(4242)
    images = sorted(((rng.randint(0, len(log)), powerloss.RandomChoices(
        random.Random(rng.random()), mode)) for _ in range(REPLAYS)),
        key=lambda pair: pair[0])
    failures = replay(recorded, tmp_path, images)
    assert not failures, '%d of %d images failed:\n%s' % (
        len(failures), len(images), '\n'.join(failures[:10]))


class Torn:
    """Everything pending applied, then one write torn at ``cut``."""

    def __init__(self, inode, op, cut, zeros):
        self.inode = inode
        self.op = op
        self.cut = cut
        self.zeros = zeros

    def directory(self, pending):
        return len(pending)

    def file(self, inode):
        buf = bytearray(inode.durable)
        for op in inode.pending:
            faults.apply_op(buf, op)
        if inode is self.inode:
            faults.tear_write(buf, self.op, self.cut, self.zeros)
            return bytes(buf), '%r torn at %d%s' % (
                self.op, self.cut, ' (rest zeros)' if self.zeros else '')
        return bytes(buf), 'all later ops'


def test_every_write_torn_at_a_sector_boundary(recorded, tmp_path):
    """Each write torn at one random 512-byte boundary inside it, the rest
    missing, and again with the rest zeros; each write that grows its
    file also with none of its data arrived (all zeros)."""
    root, log, workload = recorded
    rng = random.Random(99)
    model = powerloss.FileSystemModel(root)
    images = []
    for k, op in enumerate(log):
        if op.kind == 'write':
            inside = faults.tear_points(op)
            if inside:
                cut = rng.choice(inside)
                images.append((k, op, cut, False))
                images.append((k, op, cut, True))
            if op.offset + len(op.data) > len(model.inode_of(op.fd).current):
                images.append((k, op, op.offset, True))
        model.apply(op)
    model = powerloss.FileSystemModel(root)
    failures = []
    applied = 0
    for n, (k, op, cut, zeros) in enumerate(images):
        while applied < k:
            model.apply(log[applied])
            applied += 1
        inode = model.inode_of(op.fd)
        files, how = model.image(Torn(inode, op, cut, zeros))
        problem = check_image(files, str(tmp_path / ('torn%d' % n)),
                              candidates(workload.steps, k + 1),
                              workload.oids)
        if problem:
            failures.append('write %d %r torn at %d%s: %s' % (
                k, op, cut, ' (rest zeros)' if zeros else '', problem))
    assert not failures, '%d of %d torn writes failed:\n%s' % (
        len(failures), len(images), '\n'.join(failures[:10]))


# -- reordered sectors of the last commit -----------------------------------
#
# tpc_vote writes the body, tpc_finish the trailer, then one fsync flushes
# both: a disk may write their sectors in any order, so a power loss during
# that fsync can keep the trailer and lose an earlier sector of the body.
# The file had grown, so the lost sector reads as zeros.

def record_last_commit(path, stores, first=None):
    """Commit three acknowledged transactions to a real file, then record
    the writes of a last one. Returns ``(durable, writes, before)``: the
    file as fsynced before the last commit, that commit's writes (body,
    trailer) and the snapshot it must recover to. With ``first``, one more
    acknowledged commit is sized so that the last one starts ``first``
    bytes before a sector boundary (its first sector shared with the
    previous transaction's end)."""
    storage = FileStorage(path)
    try:
        for n in range(3):
            commit(storage, {storage.new_oid(): (z64, record('ack %d' % n))})
        if first is not None:
            # Every byte of a one-record commit but its data is overhead.
            size = storage.getSize()
            commit(storage, {storage.new_oid(): (z64, b'')})
            overhead = storage.getSize() - size
            pad = (-first - storage.getSize() - overhead) % faults.SECTOR
            commit(storage, {storage.new_oid(): (z64, b'p' * pad)})
        before = snapshot(storage)
        with open(path, 'rb') as f:
            durable = f.read()
        with faults.Seams() as seams:
            commit(storage, stores(storage))
    finally:
        storage.close()
    kinds = [op.kind for op in seams.log]
    assert kinds == ['write', 'write', 'fsync'], kinds  # one fsync a commit
    return durable, seams.log[:2], before


def image_without(durable, writes, dropped):
    """The file after a power loss that wrote every 512-byte piece of
    ``writes`` except those starting at an offset in ``dropped``."""
    buf = bytearray(durable)
    for op in writes:
        for start, piece in faults.pieces(op):
            if start in dropped:
                # The file grew past it: an unwritten sector reads zeros.
                if len(buf) < start + len(piece):
                    buf.extend(bytes(start + len(piece) - len(buf)))
            else:
                faults.apply_op(buf, faults.Op('write', offset=start,
                                               data=piece))
    return bytes(buf)


def open_image(directory, content):
    """``(storage, warnings)`` of a FileStorage opened on ``content``."""
    os.makedirs(directory)
    path = os.path.join(directory, 'data.fs')
    with open(path, 'wb') as f:
        f.write(content)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        storage = FileStorage(path)
    return storage, [w.category for w in caught]


def body_sectors(body, tpos):
    """Offsets of the whole sectors of the body write after its header."""
    hlen = fmt.parse_txn_header(body.data, 0, tpos, len(body.data))[7]
    return [start for start, piece in faults.pieces(body)
            if len(piece) == faults.SECTOR and start >= tpos + hlen]


def big_record_stores(storage):
    return {storage.new_oid(): (z64, record('x' * 3000)),
            storage.new_oid(): (z64, record('small')),
            storage.new_oid(): (z64, record('y' * 2000))}


def test_a_lost_sector_of_the_unacknowledged_last_commit_is_cut(tmp_path):
    durable, (body, trailer), before = record_last_commit(
        str(tmp_path / 'data.fs'), big_record_stores)
    sectors = body_sectors(body, body.offset)
    assert len(sectors) >= 8
    for n, sector in enumerate(sectors):
        storage, caught = open_image(
            str(tmp_path / ('lost%d' % n)),
            image_without(durable, [body, trailer], {sector}))
        try:
            assert caught == [TruncatedTailWarning], sector
            assert snapshot(storage) == before
            tid = commit(storage, {storage.new_oid(): (z64, record('next'))})
            assert storage.lastTransaction() == tid
        finally:
            storage.close()


def test_every_body_sector_lost_but_the_trailer_kept_is_cut(tmp_path):
    durable, (body, trailer), before = record_last_commit(
        str(tmp_path / 'data.fs'), big_record_stores)
    storage, caught = open_image(
        str(tmp_path / 'image'),
        image_without(durable, [body, trailer],
                      set(body_sectors(body, body.offset))))
    try:
        assert caught == [TruncatedTailWarning]
        assert snapshot(storage) == before
    finally:
        storage.close()


def test_a_bit_flip_in_the_last_commit_is_never_cut(tmp_path):
    # Same transaction, all of it written; one flipped bit in a record
    # (no zero sector) is damage to a committed transaction.
    durable, (body, trailer), _before = record_last_commit(
        str(tmp_path / 'data.fs'), big_record_stores)
    content = bytearray(image_without(durable, [body, trailer], set()))
    content[body_sectors(body, body.offset)[2] + 100] ^= 0x10
    with pytest.raises(errors.CorruptionError, match='not cut'):
        open_image(str(tmp_path / 'image'), bytes(content))
    assert os.path.getsize(str(tmp_path / 'image' / 'data.fs')) == len(
        content)


def test_zeros_a_record_checksum_accepts_are_not_a_lost_sector(tmp_path):
    # The record of 4000 zero bytes holds whole zero sectors that its own
    # checksum accepts; a bit flip in the other record is bit rot.
    def stores(storage):
        return {storage.new_oid(): (z64, b'\0' * 4000),
                storage.new_oid(): (z64, record('z' * 1500))}
    durable, (body, trailer), _before = record_last_commit(
        str(tmp_path / 'data.fs'), stores)
    content = bytearray(image_without(durable, [body, trailer], set()))
    content[len(content) - 200] ^= 0x01
    with pytest.raises(errors.CorruptionError, match='not cut'):
        open_image(str(tmp_path / 'image'), bytes(content))


# -- ... including the first sector, shared with the previous transaction --
#
# The header checksum cannot hold then; the trailer at the end of the file
# says how long the transaction is, and its tid.

def lost_first_sector(tmp_path, first, trailer_kept=True):
    """``(image, before)``: the last commit starting ``first`` bytes
    before a sector boundary, that first piece of it never written."""
    durable, (body, trailer), before = record_last_commit(
        str(tmp_path / 'data.fs'), big_record_stores, first)
    assert body.offset % faults.SECTOR == faults.SECTOR - first
    writes = [body, trailer] if trailer_kept else [body]
    return image_without(durable, writes, {body.offset}), before


def assert_cut_to(tmp_path, content, before):
    storage, caught = open_image(str(tmp_path / 'image'), content)
    try:
        assert caught == [TruncatedTailWarning]
        # The previous transaction, its end in the lost sector, is whole.
        assert snapshot(storage) == before
        tid = commit(storage, {storage.new_oid(): (z64, record('next'))})
        assert storage.lastTransaction() == tid
    finally:
        storage.close()


# 12: marker and tid lost; 20: also the length (both restored from the
# trailer, then every checksum is checked); 35: the whole fixed header;
# 300: the header and the start of the first record.
@pytest.mark.parametrize('first', [12, 20, 35, 300])
def test_a_lost_first_sector_of_the_unacknowledged_last_commit_is_cut(
        tmp_path, first):
    content, before = lost_first_sector(tmp_path, first)
    assert_cut_to(tmp_path, content, before)


@pytest.mark.parametrize('first', [20, 300])
def test_a_lost_first_sector_and_a_flipped_bit_elsewhere_are_corruption(
        tmp_path, first):
    # The flipped bit is in the last record, whose checksum then fails
    # with no lost sector to explain it.
    content, _before = lost_first_sector(tmp_path, first)
    content = bytearray(content)
    content[len(content) - 200] ^= 0x10
    with pytest.raises(errors.CorruptionError, match='not cut'):
        open_image(str(tmp_path / 'image'), bytes(content))
    assert os.path.getsize(str(tmp_path / 'image' / 'data.fs')) == len(
        content)


@pytest.mark.parametrize('first', [20, 300])
@pytest.mark.parametrize('where, value', [(-9, 0x40), (-24, 0)],
                         ids=['length', 'tid'])
def test_a_lost_first_sector_with_a_trailer_that_does_not_fit_is_corruption(
        tmp_path, first, where, value):
    # The trailer's length (its last byte at -9) must be exactly what the
    # file holds from the end of the last valid transaction; its tid (its
    # first byte at -24) must be after that one's.
    content, _before = lost_first_sector(tmp_path, first)
    content = bytearray(content)
    content[where] ^= value or content[where]
    with pytest.raises(errors.CorruptionError, match='not cut'):
        open_image(str(tmp_path / 'image'), bytes(content))


def test_a_lost_header_sector_after_its_first_bytes_is_cut(tmp_path):
    # The header straddles a sector boundary; the sector after it is lost.
    durable, (body, trailer), before = record_last_commit(
        str(tmp_path / 'data.fs'), big_record_stores, 20)
    second = faults.pieces(body)[1][0]
    assert_cut_to(tmp_path, image_without(durable, [body, trailer],
                                          {second}), before)


@pytest.mark.parametrize('first', [20, 300])
def test_a_lost_first_sector_before_the_trailer_was_written_is_cut(
        tmp_path, first):
    # The vote wrote the body; the power went before tpc_finish.
    content, before = lost_first_sector(tmp_path, first,
                                        trailer_kept=False)
    assert_cut_to(tmp_path, content, before)


def test_a_trailer_whose_first_bytes_were_lost_is_cut(tmp_path):
    # A sector written after the vote and not again after the trailer
    # joined it: the trailer's bytes up to the boundary read as zeros.
    _durable, (body, _trailer), _before = record_last_commit(
        str(tmp_path / 'probe.fs'), big_record_stores)
    length = len(body.data)
    first = faults.SECTOR - (500 - length) % faults.SECTOR
    durable, (body, trailer), before = record_last_commit(
        str(tmp_path / 'data.fs'), big_record_stores, first)
    assert trailer.offset % faults.SECTOR == 500
    assert_cut_to(tmp_path, image_without(durable, [body, trailer],
                                          {trailer.offset}), before)


def test_a_lost_sector_followed_by_a_valid_transaction_is_corruption(
        tmp_path):
    path = str(tmp_path / 'data.fs')
    durable, (body, trailer), _before = record_last_commit(
        path, big_record_stores)
    lost = bytearray(image_without(durable, [body, trailer],
                                   {body_sectors(body, body.offset)[1]}))
    with open(path, 'rb') as f:
        full = f.read()
    # A later transaction after the damaged one (the commit the file got
    # before the reorder case was set up by hand).
    storage = FileStorage(path)
    commit(storage, {storage.new_oid(): (z64, record('later'))})
    storage.close()
    with open(path, 'rb') as f:
        later = f.read()[len(full):]
    with pytest.raises(errors.CorruptionError, match='valid transaction'):
        open_image(str(tmp_path / 'image'), bytes(lost) + later)
