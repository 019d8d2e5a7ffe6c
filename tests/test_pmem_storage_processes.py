"""PMemStorage across processes: one writer, read-only processes beside
it (the writer keeps what their snapshots read, also across its own
restart), reopening after a process died without closing. (Random
SIGKILLs during commits are in ``test_pmem_crash.py``.)"""
import subprocess
import sys
import textwrap

import pytest

from objstore import errors
from objstore.storages import PMemStorage
from objstore.storages.pmem import format as fmt
from objstore.testing.helpers import new_object, record, set_value, value_of


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / 'data.pool')


class Child:
    """A Python process running ``code`` line by line as told on stdin:
    each line sent is a statement it runs; what it prints comes back."""

    def __init__(self, setup):
        program = textwrap.dedent('''
            import sys
            from objstore.storages import PMemStorage
            from objstore.testing.helpers import record, value_of
            %s
            for line in sys.stdin:
                exec(line, globals())
                sys.stdout.flush()
        ''') % textwrap.dedent(setup)
        self.process = subprocess.Popen(
            [sys.executable, '-c', program], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def ask(self, statement):
        """Run ``statement`` (which prints one line); return that line."""
        self.process.stdin.write(statement + '\n')
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(self.process.stderr.read())
        return line.strip()

    def end(self):
        self.process.stdin.close()
        assert self.process.wait(30) == 0, self.process.stderr.read()


def test_a_pool_left_by_a_dead_process_reopens_recovered(path):
    child = subprocess.run([sys.executable, '-c', textwrap.dedent('''
        import os
        from objstore.storages import PMemStorage
        from objstore.testing.helpers import new_object, set_value
        storage = PMemStorage(%r)
        oids = [new_object(storage, n)[0] for n in range(30)]
        for n in range(30):
            set_value(storage, oids[n], n * 10)
        print(storage.lastTransaction().hex(), flush=True)
        os._exit(0)
    ''' % path)], capture_output=True, text=True, check=True)
    last = bytes.fromhex(child.stdout.strip())
    storage = PMemStorage(path)
    assert storage.clean_shutdown is False and storage.recovered is True
    assert storage.lastTransaction() == last
    assert len(storage) == 30
    assert [value_of(storage.load((n + 1).to_bytes(8, 'big'))[0])
            for n in range(30)] == [n * 10 for n in range(30)]
    oid, _ = new_object(storage, 'after recovery')
    storage.close()
    storage = PMemStorage(path)
    assert storage.clean_shutdown is True and storage.recovered is False
    assert value_of(storage.load(oid)[0]) == 'after recovery'
    storage.close()


def test_a_second_writer_process_is_refused(path):
    storage = PMemStorage(path)
    child = subprocess.run([sys.executable, '-c', textwrap.dedent('''
        from objstore import errors
        from objstore.storages import PMemStorage
        try:
            PMemStorage(%r)
        except errors.StorageLockedError as exc:
            print('locked', exc)
    ''' % path)], capture_output=True, text=True, check=True)
    assert child.stdout.startswith('locked')
    storage.close()


def test_a_reader_process_keeps_its_snapshot_while_the_writer_goes_on(path):
    storage = PMemStorage(path, pool_size=fmt.MIN_POOL_SIZE)
    oid, _ = new_object(storage, 'x' * 2000)
    reader = Child('''
        storage = PMemStorage(%r, read_only=True)
        instance = storage.new_instance()
    ''' % path)
    assert reader.ask('print(value_of(instance.load(%r)[0])[:3])' % oid) \
        == 'xxx'
    # Enough commits to reuse the space of everything superseded, many
    # times over, if the writer did not know what the reader reads.
    for n in range(200):
        set_value(storage, oid, str(n) * 2000)
    assert reader.ask('print(value_of(instance.load(%r)[0])[:3])' % oid) \
        == 'xxx'
    assert reader.ask('print(instance.poll_invalidations() == [%r])'
                      % oid) == 'True'
    assert reader.ask('print(value_of(instance.load(%r)[0])[:3])' % oid) \
        == '199'
    assert reader.ask('print(storage.history_start() == %r)'
                      % storage.lastTransaction()) == 'True'
    reader.ask('storage.close(); print()')
    reader.end()
    size = storage._pool.size
    for n in range(200):
        set_value(storage, oid, str(n) * 2000)
    # With the reader gone, space is reused: the pool does not grow.
    assert storage._pool.size == size
    storage.close()


def test_a_restarted_writer_keeps_what_a_reader_reads(path):
    storage = PMemStorage(path, pool_size=fmt.MIN_POOL_SIZE)
    oid, _ = new_object(storage, 'first')
    storage.close()
    reader = Child('''
        storage = PMemStorage(%r, read_only=True)
        instance = storage.new_instance()
    ''' % path)
    assert reader.ask('print(value_of(instance.load(%r)[0]))' % oid) == 'first'
    writer = subprocess.run([sys.executable, '-c', textwrap.dedent('''
        import os
        from objstore.storages import PMemStorage
        from objstore.testing.helpers import set_value
        storage = PMemStorage(%r)
        for n in range(100):
            set_value(storage, %r, str(n) * 2000)
        os._exit(0)
    ''' % (path, oid))], capture_output=True, text=True)
    assert writer.returncode == 0, writer.stderr
    # A new writer after the crash rebuilds its free space from its root
    # and carves out what the reader's snapshot still reaches.
    storage = PMemStorage(path)
    assert storage.recovered
    for n in range(100):
        set_value(storage, oid, str(n) * 3000)
    assert reader.ask('print(value_of(instance.load(%r)[0]))' % oid) == 'first'
    assert reader.ask('print(len(instance.poll_invalidations()))') == '1'
    assert reader.ask('print(value_of(instance.load(%r)[0])[:2])'
                      % oid) == '99'
    reader.ask('storage.close(); print()')
    reader.end()
    storage.close()


def test_a_reader_process_sees_commits_at_its_next_poll(path):
    import objstore
    storage = PMemStorage(path)
    db = objstore.DB(storage)
    with db.transaction() as conn:
        conn.root()['n'] = 1
    reader = Child('''
        import objstore, transaction
        db = objstore.DB(PMemStorage(%r, read_only=True))
        conn = db.open(transaction.TransactionManager())
    ''' % path)
    assert reader.ask("print(conn.root()['n'])") == '1'
    with db.transaction() as conn:
        conn.root()['n'] = 2
    assert reader.ask("print(conn.root()['n'])") == '1'
    assert reader.ask("conn.transaction_manager.begin(); "
                      "print(conn.root()['n'])") == '2'
    reader.ask('db.close(); print()')
    reader.end()
    db.close()


def test_a_dead_readers_slot_is_reused(path):
    storage = PMemStorage(path, pool_size=fmt.MIN_POOL_SIZE)
    oid, _ = new_object(storage, 'x')
    child = subprocess.run([sys.executable, '-c', textwrap.dedent('''
        import os
        from objstore.storages import PMemStorage
        storage = PMemStorage(%r, read_only=True)
        storage.new_instance()
        os._exit(0)
    ''' % path)], capture_output=True, text=True)
    assert child.returncode == 0, child.stderr
    size = storage._pool.size
    for n in range(200):
        set_value(storage, oid, str(n) * 2000)
    assert storage._pool.size == size
    assert storage.load(oid)[0] == record('199' * 2000)
    read_only = PMemStorage(path, read_only=True)
    with pytest.raises(errors.ReadOnlyError):
        read_only.new_oid()
    read_only.close()
    storage.close()
