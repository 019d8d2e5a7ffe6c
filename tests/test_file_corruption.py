"""FileStorage with one flipped bit anywhere: detected, or harmless.

A small file (eight transactions: creations, changes, user names,
descriptions, extensions, a deletion, an undo) with an index checkpoint
covering its first part is copied with one bit flipped, then opened and
read in every way: the iterator, load, loadBefore, loadSerial and history
of every revision, undoLog, lastTransaction. For every byte of the log
(one bit each) and a random sample of further bits, each read must
either return exactly what it returns on the intact file, or raise
``CorruptionError`` naming an offset inside the damaged transaction (the
file header: offset 0; its magic: ``FileFormatError``). Opening may also
cut the last transaction with a ``TruncatedTailWarning`` when the flip is
in it; then everything before it must read as before. Nothing else: no
other exception type, no other warning, never different data, never a
transaction gone without a word. The same for every bit of the checkpoint
file, where the log is intact and so every read must succeed.

``OBJSTORE_CORRUPTION_EXTRA_BITS`` sets the size of the random sample
(default 1000; a long run: all bits with ``all``).
"""
import os
import random
import shutil
import tempfile
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from objstore import errors
from objstore.storages.base import maxtid, p64, u64, z64
from objstore.storages.file import FileStorage, TruncatedTailWarning
from objstore.storages.file import format as fmt
from objstore.testing.recovered import revisions_of, snapshot
from objstore.testing.helpers import (
    Clock, after, commit, make_txn, record)

EXTRA_BITS = os.environ.get('OBJSTORE_CORRUPTION_EXTRA_BITS', '1000')


def build(directory):
    """Write the test file; return its path. Transactions after the
    checkpoint's position are the tail an open scans."""
    path = os.path.join(directory, 'data.fs')
    clock = Clock(1700000000)
    storage = FileStorage(path)
    a, b, c, d = (p64(i) for i in range(1, 5))
    serials = {}

    def put(k, values, deletes=(), **meta):
        stores = {oid: (serials.get(oid, z64), record(value, refs=refs))
                  for oid, (value, refs) in values.items()}
        tid = commit(storage, stores, {oid: serials.pop(oid)
                                       for oid in deletes},
                     tid=clock.tid(k), **meta)
        serials.update(dict.fromkeys(stores, tid))
        return tid

    put(1, {z64: ('root', [a, b, c]), a: ('a1', []), b: ('b1', []),
            c: ('c1', [])}, user='alice', description='create')
    put(2, {a: ('a2' * 20, [])}, description='a2',
        extension={'note': 'x' * 30})
    put(3, {b: ('b2', []), c: ('c2', [a])}, description='two')
    put(4, {z64: ('root', [a, b]), d: ('d1', [])})
    put(5, {}, deletes=[c], description='delete c')
    storage.close()                 # the checkpoint covers up to here
    storage = FileStorage(path)
    txn = make_txn(description='undo')
    storage.tpc_begin(txn, clock.tid(6))
    info = [i for i in storage.undoLog(0, 10)
            if i['description'] == b'a2'][0]
    _tid, oids = storage.undo(info['id'], txn)
    storage.tpc_vote(txn)
    tid = storage.tpc_finish(txn)
    serials.update(dict.fromkeys(oids, tid))
    put(7, {a: ('a3', []), d: ('d2', [])}, user='bob')
    put(8, {d: ('d3' * 10, [])})
    # Leave without closing, as a crash would: the checkpoint does not
    # cover the last transactions. Copy what is on disk now.
    crashed = os.path.join(directory, 'crashed')
    os.mkdir(crashed)
    for name in ('data.fs', 'data.fs.index'):
        shutil.copyfile(os.path.join(directory, name),
                        os.path.join(crashed, name))
    storage.close()
    return os.path.join(crashed, 'data.fs')


def transaction_ranges(data):
    """``[(start, end)]`` of the transactions of an intact log."""
    ranges = []
    pos = fmt.FILE_HEADER_SIZE
    while pos < len(data):
        tlen = int.from_bytes(data[pos + 12:pos + 20], 'big')
        ranges.append((pos, pos + tlen))
        pos += tlen
    return ranges


def _outcome(function, *args):
    try:
        return ('ok', function(*args))
    except errors.POSKeyError:
        return ('ok', 'POSKeyError')
    except Exception as exc:
        return ('raised', exc)


def read_everything(path, oids, tids):
    """``(warnings, {read: outcome})``: every read of the file at ``path``;
    an outcome is ``('ok', value)`` or ``('raised', exception)``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        opened = _outcome(FileStorage, path)
    found = [w.message for w in caught]
    if opened[0] != 'ok':
        return found, {'open': opened}
    storage = opened[1]
    reads = {}
    try:
        reads['iterator'] = _outcome(snapshot, storage)
        reads['lastTransaction'] = _outcome(storage.lastTransaction)
        reads['undoLog'] = _outcome(
            lambda: [(i['id'], i['description'])
                     for i in storage.undoLog(0, 100)])
        for oid in oids:
            reads['load', oid] = _outcome(storage.load, oid)
            reads['history', oid] = _outcome(
                lambda: [(h['tid'], h['size'], h['description'])
                         for h in storage.history(oid, None)])
            reads['loadBefore', oid, maxtid] = _outcome(storage.loadBefore,
                                                       oid, maxtid)
            for tid in tids:
                reads['loadBefore', oid, tid] = _outcome(
                    storage.loadBefore, oid, after(tid))
                reads['loadSerial', oid, tid] = _outcome(
                    storage.loadSerial, oid, tid)
    finally:
        storage.close()
    return found, reads


class Original:
    """The intact file and what reading it gives."""

    def __init__(self, path):
        self.path = path
        with open(path, 'rb') as f:
            self.log = f.read()
        with open(path + '.index', 'rb') as f:
            self.checkpoint = f.read()
        self.ranges = transaction_ranges(self.log)
        storage = FileStorage(path, read_only=True)
        snap = snapshot(storage)
        storage.close()
        self.oids = sorted(set(revisions_of(snap)) | {p64(9)})
        self.tids = [txn[0] for txn in snap]
        # Reads open the file as its writer, who writes a checkpoint on
        # close: they work on copies.
        scratch = os.path.join(os.path.dirname(path), 'scratch')
        self.reads = self._clean_reads(scratch, self.log)
        # What the reads give with the last transaction cut off.
        self.cut_reads = self._clean_reads(
            scratch, self.log[:self.ranges[-1][0]])

    def _clean_reads(self, directory, log):
        problems, reads = read_everything(
            materialize(directory, log, self.checkpoint), self.oids,
            self.tids)
        if problems or any(o[0] != 'ok' for o in reads.values()):
            raise AssertionError('the intact file does not read cleanly:'
                                 ' %s %s' % (problems, reads))
        return reads

    def damaged_range(self, offset):
        """``(start, end)`` of the transaction holding ``offset``, or of
        the file header."""
        if offset < fmt.FILE_HEADER_SIZE:
            return 0, fmt.FILE_HEADER_SIZE
        for start, end in self.ranges:
            if start <= offset < end:
                return start, end
        raise ValueError(offset)


@pytest.fixture(scope='module')
def original(tmp_path_factory):
    return Original(build(str(tmp_path_factory.mktemp('original'))))


def materialize(directory, log, checkpoint):
    """Write a log and its checkpoint (None: none) into ``directory``;
    return the log's path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, 'data.fs')
    with open(path, 'wb') as f:
        f.write(log)
    if checkpoint is None:
        if os.path.exists(path + '.index'):
            os.remove(path + '.index')
    else:
        with open(path + '.index', 'wb') as f:
            f.write(checkpoint)
    return path


def flip(data, offset, bit):
    damaged = bytearray(data)
    damaged[offset] ^= 1 << bit
    return bytes(damaged)


def judge_log_flip(original, offset, bit, directory, checkpoint=True):
    """A problem with the file whose log has bit ``bit`` of byte
    ``offset`` flipped (and the intact checkpoint, or none), or None."""
    path = materialize(directory, flip(original.log, offset, bit),
                       original.checkpoint if checkpoint else None)
    found, reads = read_everything(path, original.oids, original.tids)
    start, end = original.damaged_range(offset)
    expected = original.reads
    cut = [w for w in found if isinstance(w, TruncatedTailWarning)]
    others = [w for w in found if not isinstance(w, TruncatedTailWarning)]
    if others:
        return 'warned %s' % others
    if cut:
        if (start, end) != original.ranges[-1]:
            return ('cut the file (%s) although the flip is not in the last'
                    ' transaction' % cut[0])
        expected = original.cut_reads
    for read, outcome in reads.items():
        if outcome[0] == 'ok':
            if outcome != expected[read]:
                return '%r returned %.300r instead of %.300r' % (
                    read, outcome[1], expected[read][1])
            continue
        exc = outcome[1]
        if isinstance(exc, errors.FileFormatError) and offset < 4:
            continue    # the magic: "not an objstore file"
        if not isinstance(exc, errors.CorruptionError):
            return '%r raised %r' % (read, exc)
        if not start <= exc.offset < end:
            return ('%r raised %r naming offset %d, outside the damaged'
                    ' range [%d, %d)' % (read, exc, exc.offset, start, end))
    return None


def log_bits(original, extra):
    """Every byte with one bit, plus ``extra`` random (byte, bit) pairs."""
    rng = random.Random(2026)
    size = len(original.log)
    bits = [(offset, rng.randrange(8)) for offset in range(size)]
    if extra == 'all':
        return [(o, b) for o in range(size) for b in range(8)]
    return bits + [(rng.randrange(size), rng.randrange(8))
                   for _ in range(int(extra))]


def test_the_file_has_what_the_test_needs(original):
    assert len(original.ranges) == 8
    assert 2000 < len(original.log) < 6000
    # The checkpoint covers the first five transactions only.
    storage = FileStorage(original.path, read_only=True)
    try:
        assert storage.records_scanned == 4
    finally:
        storage.close()


def test_every_single_bit_flip_in_the_log_is_detected_or_harmless(
        original, tmp_path):
    """With the checkpoint: the first five transactions are read through
    it (damage shows when a read reaches it), the rest scanned at open."""
    failures = []
    for offset, bit in log_bits(original, EXTRA_BITS):
        problem = judge_log_flip(original, offset, bit, str(tmp_path))
        if problem:
            failures.append('bit %d of byte %d (%s): %s' % (
                bit, offset, where(original, offset), problem))
    assert not failures, '%d flips went wrong:\n%s' % (
        len(failures), '\n'.join(failures[:15]))


def test_every_single_bit_flip_in_a_log_without_checkpoint(original,
                                                           tmp_path):
    """Without a checkpoint: opening scans the whole log."""
    failures = []
    for offset, bit in log_bits(original, 0):
        problem = judge_log_flip(original, offset, bit, str(tmp_path),
                                 checkpoint=False)
        if problem:
            failures.append('bit %d of byte %d (%s): %s' % (
                bit, offset, where(original, offset), problem))
    assert not failures, '%d flips went wrong:\n%s' % (
        len(failures), '\n'.join(failures[:15]))


def where(original, offset):
    start, end = original.damaged_range(offset)
    if start == 0:
        return 'file header'
    number = [r[0] for r in original.ranges].index(start) + 1
    return 'transaction %d at [%d, %d), +%d' % (number, start, end,
                                                offset - start)


def test_every_single_bit_flip_in_the_checkpoint_is_harmless(
        original, tmp_path):
    """The log is intact, so every read must succeed as before: a damaged
    checkpoint is noticed and the log scanned instead."""
    failures = []
    for offset in range(len(original.checkpoint)):
        for bit in range(8):
            path = materialize(str(tmp_path), original.log,
                               flip(original.checkpoint, offset, bit))
            found, reads = read_everything(path, original.oids,
                                           original.tids)
            if found:
                failures.append('bit %d of byte %d: warned %s'
                                % (bit, offset, found))
                continue
            for read, outcome in reads.items():
                if outcome == original.reads.get(read):
                    continue
                if outcome[0] == 'raised' and isinstance(
                        outcome[1], errors.CorruptionError):
                    continue    # allowed, though a scan of the log would do
                failures.append('bit %d of byte %d: %r gave %.300r'
                                % (bit, offset, read, outcome))
                break
    assert not failures, '%d flips went wrong:\n%s' % (
        len(failures), '\n'.join(failures[:15]))


# -- walking back through revisions -----------------------------------------
#
# loadBefore and loadSerial checksum only the record they return and the
# one after it in the object's chain; the records passed over before
# those get a header check. The current record's tid and back pointer
# come from the index (built from checksummed bytes), so the walk starts
# at the record before the current one. These damage one record header
# in place, after the checkpoint was written (opening without it would
# find the damage in the scan), and check what each kind of damage leads
# to.

def chain(tmp_path, revisions=4):
    """A file with ``revisions`` revisions of oid 1 (one transaction each),
    closed; returns ``(path, tids, offsets)``, oldest first."""
    path = str(tmp_path / 'chain.fs')
    storage = FileStorage(path)
    oid = p64(1)
    tids = []
    serial = z64
    for k in range(revisions):
        serial = commit(storage, {oid: (serial, record('v%d' % k))})
        tids.append(serial)
    offsets = []
    pos = storage._index.get(oid)
    while pos:
        offsets.append(pos)
        pos = _header(path, pos)[2]
    storage.close()
    return path, tids, offsets[::-1]


def _header(path, pos):
    with open(path, 'rb') as f:
        f.seek(pos)
        return fmt.RECORD.unpack(f.read(fmt.RECORD_SIZE))


def patch(path, pos, field, value):
    """Overwrite one field of the record header at ``pos`` (its checksum
    left as it was, so the record is damaged)."""
    fields = list(_header(path, pos))
    fields[field] = value
    with open(path, 'r+b') as f:
        f.seek(pos)
        f.write(fmt.RECORD.pack(*fields))


PREV, TID = 2, 1


def reads(path, tids):
    """loadBefore as of each revision, and loadSerial of each; outcomes as
    ``_outcome`` gives them."""
    storage = FileStorage(path, read_only=True)
    try:
        oid = p64(1)
        return ([_outcome(storage.loadBefore, oid, after(t)) for t in tids]
                + [_outcome(storage.loadBefore, oid, tids[0])]
                + [_outcome(storage.loadSerial, oid, t) for t in tids])
    finally:
        storage.close()


def assert_damage_named_or_right(path, tids, damaged, expected):
    for got, want in zip(reads(path, tids), expected):
        if got[0] == 'ok':
            assert got == want
        else:
            assert isinstance(got[1], errors.CorruptionError)
            assert got[1].offset == damaged
            assert got[1].oid == p64(1)


def test_a_back_pointer_skipping_a_revision_is_never_followed_to_its_data(
        tmp_path):
    # The pointer of the record before the current one leads to the
    # revision before its real predecessor: a record of the same oid with
    # an older tid, so the header checks pass; the checksum of the
    # damaged record (the successor of what would be returned) catches it.
    path, tids, offsets = chain(tmp_path)
    expected = reads(path, tids)
    patch(path, offsets[2], PREV, offsets[0])
    got = reads(path, tids)
    assert_damage_named_or_right(path, tids, offsets[2], expected)
    assert got[1][0] == 'raised'        # as of revision 1: never v0's data


def test_a_back_pointer_cut_to_zero_does_not_end_the_history(tmp_path):
    path, tids, offsets = chain(tmp_path)
    expected = reads(path, tids)
    patch(path, offsets[2], PREV, 0)
    got = reads(path, tids)
    assert_damage_named_or_right(path, tids, offsets[2], expected)
    assert got[0][0] == got[4][0] == 'raised'   # never "no such revision"


def test_a_damaged_tid_is_never_returned_as_the_end_of_a_revision(tmp_path):
    # One more than the real tid still passes the header checks.
    path, tids, offsets = chain(tmp_path)
    expected = reads(path, tids)
    patch(path, offsets[2], TID, p64(u64(tids[2]) + 1))
    assert_damage_named_or_right(path, tids, offsets[2], expected)
    assert reads(path, tids)[1][0] == 'raised'  # revision 1 ends at it


def _flip_data_byte(path, pos):
    with open(path, 'r+b') as f:
        f.seek(pos + fmt.RECORD_SIZE + 3)
        byte = f.read(1)
        f.seek(pos + fmt.RECORD_SIZE + 3)
        f.write(bytes([byte[0] ^ 1]))


def test_damage_in_a_record_passed_over_is_harmless(tmp_path):
    # A flipped data byte in the record before the current one: reading
    # two revisions before the current one passes over it with a header
    # check only and returns the right revision; reading the one just
    # before it checksums it and says so.
    path, tids, offsets = chain(tmp_path)
    expected = reads(path, tids)
    _flip_data_byte(path, offsets[2])
    got = reads(path, tids)
    assert got[0] == expected[0]
    assert got[1][0] == 'raised' and got[1][1].offset == offsets[2]
    assert_damage_named_or_right(path, tids, offsets[2], expected)


def test_damage_in_the_current_record_only_affects_reading_it(tmp_path):
    # The index stands for the current record's tid and back pointer, so
    # reading an earlier revision never reads the current record; reading
    # the current revision checksums it.
    path, tids, offsets = chain(tmp_path)
    expected = reads(path, tids)
    _flip_data_byte(path, offsets[3])
    patch(path, offsets[3], PREV, offsets[1])
    got = reads(path, tids)
    assert got[:3] == expected[:3]
    assert got[3][0] == 'raised' and got[3][1].offset == offsets[3]
    assert_damage_named_or_right(path, tids, offsets[3], expected)


def test_a_back_pointer_into_another_object_names_the_pointing_record(
        tmp_path):
    path, tids, offsets = chain(tmp_path)
    expected = reads(path, tids)
    patch(path, offsets[2], PREV, offsets[1] + 5)
    assert_damage_named_or_right(path, tids, offsets[2], expected)
    assert reads(path, tids)[0][0] == 'raised'


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_any_flip_in_a_chain_of_revisions_is_detected_or_harmless(data):
    """Chains of revisions of a few objects, interleaved; one bit flipped
    anywhere in their records: every loadBefore and loadSerial returns
    what the intact file gives, or raises ``CorruptionError`` naming the
    damaged record."""
    writes = data.draw(st.lists(st.sampled_from([1, 2, 3]), min_size=2,
                                max_size=12), label='oids written')
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, 'data.fs')
        storage = FileStorage(path)
        serials, tids = {}, []
        for k, n in enumerate(writes):
            oid = p64(n)
            serials[oid] = commit(storage, {oid: (
                serials.get(oid, z64), record('r%d' % k))})
            tids.append(serials[oid])
        chains = {oid: _chain(path, storage._index.get(oid))
                  for oid in serials}
        storage.close()

        def read_all():
            opened = FileStorage(path, read_only=True)
            try:
                return {(oid, t, kind): _outcome(read, oid, t)
                        for oid in chains for t in tids + [after(tids[-1])]
                        for kind, read in (('before', opened.loadBefore),
                                           ('serial', opened.loadSerial))}
            finally:
                opened.close()

        intact = read_all()
        oid = data.draw(st.sampled_from(sorted(chains)), label='damaged oid')
        damaged = data.draw(st.sampled_from(chains[oid]), label='record')
        size = len(_record_bytes(path, damaged))
        # Half the flips in the header: that is where the walk trusts
        # most without a checksum.
        offset = damaged + data.draw(
            st.integers(0, fmt.RECORD_SIZE - 1) | st.integers(0, size - 1),
            label='byte')
        with open(path, 'r+b') as f:
            f.seek(offset)
            byte = f.read(1)[0]
            f.seek(offset)
            f.write(bytes([byte ^ 1 << data.draw(st.integers(0, 7),
                                                  label='bit')]))
        for read, outcome in read_all().items():
            if outcome[0] == 'ok':
                assert outcome == intact[read], read
            else:
                exc = outcome[1]
                assert isinstance(exc, errors.CorruptionError), read
                assert read[0] == oid == exc.oid, read
                assert exc.offset == damaged, read


def _chain(path, pos):
    """Offsets of an intact chain of records, newest first."""
    offsets = []
    while pos:
        offsets.append(pos)
        pos = _header(path, pos)[2]
    return offsets


def _record_bytes(path, pos):
    _oid, _tid, _prev, _tpos, flags, dlen = _header(path, pos)
    size = fmt.RECORD_SIZE + (8 if flags & fmt.FLAG_DATA_TXN else 0) + dlen + 4
    with open(path, 'rb') as f:
        f.seek(pos)
        return f.read(size)
