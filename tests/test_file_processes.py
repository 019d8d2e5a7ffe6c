"""FileStorage across processes: the writer lock, readers following a writer."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from objstore import errors
from objstore.storages.base import z64
from objstore.storages.file import FileStorage
from objstore.testing.helpers import new_object, set_value, value_of

# A writer process driven line by line through stdin; it answers each
# command with one line.
WRITER = textwrap.dedent('''
    import sys, time
    from objstore.serialize import references
    from objstore.storages.base import z64
    from objstore.storages.file import FileStorage
    from objstore.testing.helpers import make_txn, record
    try:
        storage = FileStorage(sys.argv[1])
    except Exception as exc:
        print('error %s: %s' % (type(exc).__name__, exc), flush=True)
        sys.exit(0)
    print('ready %d' % len(storage), flush=True)
    serials = {}
    txn = None
    for line in sys.stdin:
        command, _, arg = line.strip().partition(' ')
        if command in ('commit', 'vote'):
            oid = (int(arg.split(':')[0])).to_bytes(8, 'big')
            value = arg.split(':')[1]
            txn = make_txn()
            storage.tpc_begin(txn)
            storage.store(oid, serials.get(oid, z64), record(value), '', txn)
            storage.tpc_vote(txn)
            if command == 'vote':
                print('voted', flush=True)
                continue
            command = 'finish'
        if command == 'finish':
            tid = storage.tpc_finish(txn)
            serials[oid] = tid
            print('committed %s' % tid.hex(), flush=True)
        elif command == 'pack':
            storage.pack(time.time() + 1, references)
            print('packed', flush=True)
        elif command == 'quit':
            storage.close()
            print('bye', flush=True)
            break
''')


class Writer:
    """A writer in a child process."""

    def __init__(self, path):
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env['PYTHONPATH'] = root + os.pathsep + env.get('PYTHONPATH', '')
        self.proc = subprocess.Popen(
            [sys.executable, '-c', WRITER, path], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, env=env)
        self.greeting = self.proc.stdout.readline().strip()

    def ask(self, line):
        self.proc.stdin.write(line + '\n')
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def commit(self, oid, value):
        answer = self.ask('commit %d:%s' % (oid, value))
        assert answer.startswith('committed'), answer
        return bytes.fromhex(answer.split()[1])

    def stop(self):
        if self.proc.poll() is None:
            self.ask('quit')
        self.proc.wait(10)


class FakeDB:
    def __init__(self):
        self.invalidations = []

    def invalidate(self, tid, oids):
        self.invalidations.append((tid, sorted(oids)))


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / 'data.fs')


def oid(n):
    return n.to_bytes(8, 'big')


# -- the writer lock --------------------------------------------------------

def test_a_second_writer_in_the_same_process_is_refused(path):
    storage = FileStorage(path)
    try:
        with pytest.raises(errors.StorageLockedError) as info:
            FileStorage(path)
        assert path in str(info.value)
        assert 'process %d' % os.getpid() in str(info.value)
    finally:
        storage.close()
    FileStorage(path).close()  # released on close


def test_a_writer_in_another_process_is_refused_with_our_pid(path):
    storage = FileStorage(path)
    try:
        writer = Writer(path)
        writer.proc.wait(30)
        assert writer.greeting.startswith('error StorageLockedError'), \
            writer.greeting
        assert 'process %d' % os.getpid() in writer.greeting
    finally:
        storage.close()


def test_pack_from_another_process_is_refused(path):
    writer = Writer(path)
    try:
        assert writer.greeting.startswith('ready')
        with pytest.raises(errors.StorageLockedError):
            FileStorage(path)   # what a packing tool would have to open
        reader = FileStorage(path, read_only=True)
        with pytest.raises(errors.ReadOnlyError):
            reader.pack(0, lambda data, oids=None: oids or [])
        reader.close()
    finally:
        writer.stop()


def test_a_killed_writer_leaves_no_stale_lock(path):
    writer = Writer(path)
    assert writer.greeting.startswith('ready')
    writer.commit(1, 'one')
    os.kill(writer.proc.pid, signal.SIGKILL)
    writer.proc.wait(10)
    storage = FileStorage(path)
    try:
        assert value_of(storage.load(oid(1))[0]) == 'one'
    finally:
        storage.close()


def test_read_only_instances_never_take_the_lock(path):
    storage = FileStorage(path)
    readers = [FileStorage(path, read_only=True) for _ in range(3)]
    try:
        o, tid = new_object(storage, 1)
        for reader in readers:
            reader.sync()
            assert reader.load(o)[1] == tid
            with pytest.raises(errors.ReadOnlyError):
                reader.new_oid()
    finally:
        for reader in readers:
            reader.close()
        storage.close()


def test_a_read_only_open_of_a_missing_file_fails_clearly(path):
    with pytest.raises(errors.StorageError, match='does not exist'):
        FileStorage(path, read_only=True)
    assert not os.path.exists(path)


# -- readers in this process, a writer in another ---------------------------

def test_a_reader_sees_commits_of_another_process_after_sync(path):
    writer = Writer(path)
    try:
        assert writer.greeting.startswith('ready')
        reader = FileStorage(path, read_only=True)
        db = FakeDB()
        reader.registerDB(db)
        tid1 = writer.commit(1, 'one')
        with pytest.raises(errors.POSKeyError):
            reader.load(oid(1))   # not before the next sync
        reader.sync()
        assert value_of(reader.load(oid(1))[0]) == 'one'
        assert reader.lastTransaction() == tid1
        assert db.invalidations == [(tid1, [oid(1)])]

        # A transaction voted but not finished is not visible yet.
        assert writer.ask('vote 2:two') == 'voted'
        reader.sync()
        with pytest.raises(errors.POSKeyError):
            reader.load(oid(2))
        tid2 = bytes.fromhex(writer.ask('finish').split()[1])
        reader.sync()
        assert value_of(reader.load(oid(2))[0]) == 'two'
        assert db.invalidations[-1] == (tid2, [oid(2)])
        assert reader.lastTransaction() == tid2
        reader.close()
    finally:
        writer.stop()


def test_a_reader_reopens_by_itself_after_a_pack_replaced_the_file(path):
    writer = Writer(path)
    try:
        reader = FileStorage(path, read_only=True)
        db = FakeDB()
        reader.registerDB(db)
        tid1 = writer.commit(0, 'root')
        writer.commit(0, 'root2')
        reader.sync()
        inode = os.stat(path).st_ino
        assert writer.ask('pack') == 'packed'
        assert os.stat(path).st_ino != inode
        # Before sync the reader still reads its snapshot of the old file.
        assert reader.loadSerial(z64, tid1)
        reader.sync()
        with pytest.raises(errors.POSKeyError):
            reader.loadSerial(z64, tid1)    # packed away
        assert value_of(reader.load(z64)[0]) == 'root2'
        tid3 = writer.commit(0, 'root3')
        reader.sync()
        assert reader.load(z64)[1] == tid3
        assert db.invalidations[-1] == (tid3, [z64])
        reader.close()
    finally:
        writer.stop()


def test_a_reader_sees_commits_after_sync_in_process(path):
    storage = FileStorage(path)
    reader = FileStorage(path, read_only=True)
    try:
        o, tid1 = new_object(storage, 1)
        tid2 = set_value(storage, o, 2)
        reader.sync()
        assert reader.loadBefore(o, tid2)[:2] == (storage.loadSerial(o, tid1),
                                                  tid1)
        assert reader.lastTransaction() == tid2
        assert reader.records_scanned == 2
    finally:
        reader.close()
        storage.close()


def test_a_reader_follows_a_writer_that_recreated_the_file(path):
    storage = FileStorage(path)
    o, tid = new_object(storage, 1)
    storage.close()
    reader = FileStorage(path, read_only=True)
    storage = FileStorage(path, create=True)
    try:
        o2, tid2 = new_object(storage, 2)
        reader.sync()
        assert reader.lastTransaction() == tid2
        assert value_of(reader.load(o2)[0]) == 2
    finally:
        storage.close()
        reader.close()
