"""PostgreSQLStorage when its server sessions are killed.

Faults are injected with ``pg_terminate_backend`` on the storage's own
sessions (found by the ``application_name`` the storage is opened with;
``PostgreSQLStorage`` passes extra keywords to ``psycopg.connect``), never
by restarting the shared server. A COMMIT whose connection drops is
simulated at the one statement that carries it (``NOTIFY ...; COMMIT``),
by wrapping ``psycopg.Connection.execute`` for the test: the session is
killed just before the statement is sent (the transaction never
commits), or just after it was committed, before the client reads the
answer (it did commit, and the storage must find that out).

What must hold: the application gets ``DisconnectedError`` (a
``TransientError``, so ``TransactionManager.attempts()`` retries), the
storage reconnects at its next use, a retry succeeds, and no committed
transaction is lost or applied twice.
"""
import threading
import time

import psycopg
import pytest
import transaction
from persistent.mapping import PersistentMapping
from transaction.interfaces import TransientError

from objstore import errors
from objstore.db import DB
from objstore.storages.base import z64
from objstore.testing.helpers import make_txn, record, value_of
from objstore.testing.pg import pg_database  # noqa: F401 -- a fixture

VICTIM = 'objstore-victim'
OTHER = 'objstore-other'


def _storage(dsn, application_name, **options):
    from objstore.storages import PostgreSQLStorage
    return PostgreSQLStorage(dsn, application_name=application_name,
                             **options)


@pytest.fixture
def admin(pg_database):
    """An autocommit session of the test's database, for killing others."""
    with psycopg.connect(pg_database, autocommit=True) as conn:
        yield conn


def _sessions(admin, application_name):
    return [row[0] for row in admin.execute(
        'SELECT pid FROM pg_stat_activity WHERE application_name = %s'
        ' AND datname = current_database()', (application_name,))]


def _wait_gone(admin, pids):
    deadline = time.monotonic() + 10
    while admin.execute('SELECT count(*) FROM pg_stat_activity'
                        ' WHERE pid = ANY(%s)', (pids,)).fetchone()[0]:
        if time.monotonic() > deadline:
            raise AssertionError('sessions %s outlived pg_terminate_backend'
                                 % pids)
        time.sleep(0.01)


def kill(admin, application_name=VICTIM):
    """Terminate every session of ``application_name``; return how many."""
    pids = _sessions(admin, application_name)
    for pid in pids:
        admin.execute('SELECT pg_terminate_backend(%s)', (pid,))
    _wait_gone(admin, pids)
    return len(pids)


@pytest.fixture
def dbs(pg_database):
    """``(writer, victim)``: two DBs on the test's database; only the
    victim's sessions are killed."""
    writer = DB(_storage(pg_database, OTHER))
    victim = DB(_storage(pg_database, VICTIM))
    yield writer, victim
    victim.close()
    writer.close()


def _commit(db, change, note=None):
    manager = transaction.TransactionManager()
    conn = db.open(manager)
    try:
        with manager as txn:
            if note:
                txn.note(note)
            change(conn.root())
    finally:
        conn.close()


def _read(db, read):
    manager = transaction.TransactionManager()
    conn = db.open(manager)
    try:
        with manager:
            return read(conn.root())
    finally:
        conn.close()


def _notes(storage):
    """The descriptions of every committed transaction, oldest first."""
    return [txn.description.decode() for txn in storage.iterator()]


def _setup_counter(writer):
    def create(root):
        root['a'] = PersistentMapping(n=1)
        root['b'] = PersistentMapping(n=2)
        root['counter'] = PersistentMapping(n=0)
    _commit(writer, create, 'setup')


def _increment(root):
    root['counter']['n'] += 1


# -- reads --------------------------------------------------------------------

def test_a_session_killed_during_a_transaction_fails_its_next_load(
        admin, dbs):
    writer, victim = dbs
    _setup_counter(writer)
    manager = transaction.TransactionManager()
    conn = victim.open(manager)
    try:
        manager.begin()
        assert conn.root()['a']['n'] == 1       # the snapshot exists
        assert kill(admin) >= 1
        with pytest.raises(errors.DisconnectedError) as info:
            conn.root()['b']['n']               # a ghost: needs a load
        assert isinstance(info.value, TransientError)
        assert isinstance(info.value, errors.StorageError)
        manager.abort()
        # The next transaction reconnects and reads a new snapshot.
        manager.begin()
        assert conn.root()['b']['n'] == 2
        manager.abort()
        assert _sessions(admin, VICTIM)
    finally:
        manager.abort()
        conn.close()


def test_a_snapshot_is_never_resumed_on_a_new_session(admin, dbs):
    """After the kill, a load in the same transaction must fail even
    when the storage could reconnect: a new session would read a newer
    snapshot, mixing two moments in one transaction."""
    writer, victim = dbs
    _setup_counter(writer)
    manager = transaction.TransactionManager()
    conn = victim.open(manager)
    try:
        manager.begin()
        assert conn.root()['a']['n'] == 1
        kill(admin)
        _commit(writer, lambda root: root['b'].__setitem__('n', 3))
        for _ in range(3):
            with pytest.raises(errors.DisconnectedError):
                conn.root()['b']['n']
        manager.abort()
        manager.begin()
        assert conn.root()['b']['n'] == 3
    finally:
        manager.abort()
        conn.close()


def test_attempts_retry_a_transaction_whose_session_was_killed(admin, dbs):
    writer, victim = dbs
    _setup_counter(writer)
    manager = transaction.TransactionManager()
    conn = victim.open(manager)
    runs = []
    try:
        for attempt in manager.attempts(3):
            with attempt:
                runs.append(1)
                root = conn.root()
                root._p_activate()
                if len(runs) == 1:
                    kill(admin)
                root['counter']['n'] += 1
    finally:
        conn.close()
    assert len(runs) == 2
    assert _read(writer, lambda root: root['counter']['n']) == 1
    assert _notes(writer.storage).count('') == 1


def test_a_session_killed_between_transactions_is_replaced(admin, dbs):
    """An idle connection's sessions die: its next transaction starts on
    new ones, and retrying through attempts() gets the work done once."""
    writer, victim = dbs
    _setup_counter(writer)
    manager = transaction.TransactionManager()
    conn = victim.open(manager)
    runs = []
    try:
        with manager:
            conn.root()['a']['n']
        kill(admin)
        _commit(writer, lambda root: root['a'].__setitem__('n', 10))
        for attempt in manager.attempts(3):
            with attempt:
                runs.append(conn.root()['a']['n'])
                _increment(conn.root())
    finally:
        manager.abort()
        conn.close()
    # The retry (if any) saw the writer's change, and so did the one
    # attempt that committed.
    assert runs[-1] == 10
    assert _read(writer, lambda root: root['counter']['n']) == 1


def test_the_storage_object_reconnects_after_a_kill(admin, pg_database):
    storage = _storage(pg_database, VICTIM)
    try:
        oid = storage.new_oid()
        txn = make_txn()
        storage.tpc_begin(txn)
        storage.store(oid, z64, record('one'), '', txn)
        storage.tpc_vote(txn)
        tid = storage.tpc_finish(txn)
        kill(admin)
        with pytest.raises(errors.DisconnectedError):
            storage.load(oid)
        data, serial = storage.load(oid)
        assert (value_of(data), serial) == ('one', tid)
        assert storage.lastTransaction() == tid
    finally:
        storage.close()


def _listeners(admin):
    return [row[0] for row in admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
        " AND query LIKE 'LISTEN %%'", (VICTIM,))]


def _wait_listening(admin):
    """The pid of the victim's one LISTEN session, once it exists."""
    deadline = time.monotonic() + 10
    while len(_listeners(admin)) != 1:
        assert time.monotonic() < deadline, 'no LISTEN session'
        time.sleep(0.05)
    return _listeners(admin)


def test_a_killed_listener_does_not_hide_commits(admin, pg_database):
    """With a poll_interval, instances skip polling while the LISTEN
    session announces nothing new. When that session is killed, the
    commits announced meanwhile are lost to it: the next transaction
    must poll anyway and see them."""
    writer = DB(_storage(pg_database, OTHER))
    _setup_counter(writer)
    victim = DB(_storage(pg_database, VICTIM, poll_interval=60))
    manager = transaction.TransactionManager()
    conn = victim.open(manager)     # a new instance starts from the newest
    try:
        with manager:
            assert conn.root()['counter']['n'] == 0
        listeners = _wait_listening(admin)
        admin.execute('SELECT pg_terminate_backend(%s)', (listeners[0],))
        _wait_gone(admin, listeners)
        _commit(writer, _increment)
        with manager:
            assert conn.root()['counter']['n'] == 1
        # Once it listens again, announced commits are seen as before.
        _wait_listening(admin)
        _commit(writer, _increment)
        deadline = time.monotonic() + 10
        while True:
            with manager:
                if conn.root()['counter']['n'] == 2:
                    break
            assert time.monotonic() < deadline, 'the commit was never seen'
            time.sleep(0.05)
    finally:
        manager.abort()
        conn.close()
        victim.close()
        writer.close()


# -- the vote -----------------------------------------------------------------

def _stage(storage_or_instance, oid, serial, value):
    """tpc_begin and store on ``storage_or_instance``; return the txn."""
    txn = make_txn(description=value)
    storage_or_instance.tpc_begin(txn)
    storage_or_instance.store(oid, serial, record(value), '', txn)
    return txn


def test_a_session_killed_before_the_vote_aborts_the_transaction(
        admin, dbs):
    writer, victim = dbs
    _setup_counter(writer)
    manager = transaction.TransactionManager()
    conn = victim.open(manager)
    try:
        with manager as txn:           # the store session exists now
            txn.note('first')
            _increment(conn.root())
        txn = manager.begin()
        txn.note('lost')
        _increment(conn.root())
        kill(admin)
        with pytest.raises(errors.DisconnectedError):
            manager.commit()
        manager.abort()
        # Nothing of it was written, the commit lock is free, and the
        # connection commits again.
        assert _read(writer, lambda root: root['counter']['n']) == 1
        _commit(writer, lambda root: root['a'].__setitem__('n', 5), 'other')
        with manager as txn:
            txn.note('retry')
            _increment(conn.root())
    finally:
        manager.abort()
        conn.close()
    assert _read(writer, lambda root: root['counter']['n']) == 2
    assert _notes(writer.storage) == [
        'initial database creation', 'setup', 'first', 'other', 'retry']


def test_a_commit_that_succeeded_is_not_reported_as_failed(admin, dbs):
    """The load session dies while the transaction runs, after its last
    load; the commit goes through on the store session. The poll that
    follows the commit (the connection moves to a new snapshot) must not
    turn the success into a DisconnectedError: attempts() would run the
    transaction again and apply it twice."""
    writer, victim = dbs
    _setup_counter(writer)
    manager = transaction.TransactionManager()
    conn = victim.open(manager)
    runs = 0
    try:
        for attempt in manager.attempts(3):
            with attempt as txn:
                runs += 1
                txn.note('increment')
                _increment(conn.root())
                if runs == 1:
                    kill(admin)
    finally:
        manager.abort()
        conn.close()
    assert _read(writer, lambda root: root['counter']['n']) == 1
    assert _notes(writer.storage).count('increment') == 1
    assert runs == 1


def test_a_session_killed_while_its_vote_waits_for_the_lock(admin, dbs):
    """The vote blocks on the commit lock another process holds; its
    session is killed there: the vote fails with DisconnectedError, the
    holder commits, nothing of the victim's attempt is written, and the
    retry commits on a new session."""
    writer, victim = dbs
    _setup_counter(writer)
    holder = writer.storage.new_instance()
    manager = transaction.TransactionManager()
    conn = victim.open(manager)
    outcome = []
    try:
        a_oid = _read(writer, lambda root: root['a']._p_oid)
        serial = holder.load(a_oid)[1]
        held = _stage(holder, a_oid, serial, 'held')
        holder.tpc_vote(held)               # holds the commit lock now

        txn = manager.begin()
        txn.note('lost')
        _increment(conn.root())

        def commit():
            try:
                manager.commit()
                outcome.append('committed')
            except Exception as exc:
                outcome.append(exc)
        thread = threading.Thread(target=commit)
        thread.start()
        deadline = time.monotonic() + 10
        while not admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE"
                " application_name = %s AND wait_event_type = 'Lock'",
                (VICTIM,)).fetchone()[0]:
            assert time.monotonic() < deadline, 'the vote never waited'
            time.sleep(0.01)
        kill(admin)
        thread.join(10)
        assert not thread.is_alive()
        assert isinstance(outcome[0], errors.DisconnectedError), outcome
        manager.abort()
        holder.tpc_finish(held)
        with manager as txn:
            txn.note('retry')
            _increment(conn.root())
    finally:
        manager.abort()
        conn.close()
        holder.release()
    assert _read(writer, lambda root: root['counter']['n']) == 1
    assert _notes(writer.storage) == [
        'initial database creation', 'setup', 'held', 'retry']


def test_a_session_killed_between_vote_and_finish(admin, pg_database):
    """The vote wrote the records and holds the lock; the session dies:
    nothing commits, tpc_finish raises DisconnectedError, and the lock
    died with the session."""
    writer = _storage(pg_database, OTHER)
    victim = _storage(pg_database, VICTIM)
    try:
        oid = writer.new_oid()
        txn = _stage(writer, oid, z64, 'one')
        writer.tpc_vote(txn)
        first = writer.tpc_finish(txn)
        txn = _stage(victim, oid, first, 'lost')
        victim.tpc_vote(txn)
        kill(admin)
        with pytest.raises(errors.DisconnectedError) as info:
            victim.tpc_finish(txn)
        assert 'did not commit' in str(info.value)
        victim.tpc_abort(txn)
        assert value_of(writer.load(oid)[0]) == 'one'
        # Not blocked by a lock the dead session held.
        txn = _stage(writer, oid, first, 'two')
        writer.tpc_vote(txn)
        second = writer.tpc_finish(txn)
        # The victim retries on a new session (and must start from the
        # current serial, like any retry).
        txn = _stage(victim, oid, second, 'three')
        victim.tpc_vote(txn)
        third = victim.tpc_finish(txn)
        values = [value_of(writer.loadSerial(oid, t))
                  for t in (first, second, third)]
        assert values == ['one', 'two', 'three']
        assert _notes(writer) == ['one', 'two', 'three']
    finally:
        victim.close()
        writer.close()


# -- the COMMIT ---------------------------------------------------------------

class CommitDrop:
    """Kills the session that sends the storage's COMMIT, once.

    ``when='before'``: the session dies just before the statement is sent
    (the transaction does not commit). ``when='after'``: the statement
    commits, then the session dies before the client hears back (psycopg
    raises the error a dead connection gives).
    """

    def __init__(self, admin, when):
        self.admin = admin
        self.when = when
        self.armed = False
        self.fired = 0

    def install(self, monkeypatch):
        real = psycopg.Connection.execute
        drop = self

        def execute(conn, query, *args, **kwargs):
            if not (drop.armed and isinstance(query, str)
                    and query.startswith('NOTIFY ')
                    and query.rstrip().endswith('COMMIT')):
                return real(conn, query, *args, **kwargs)
            drop.armed = False
            drop.fired += 1
            pid = conn.info.backend_pid
            if drop.when == 'before':
                drop._kill(pid)
                return real(conn, query, *args, **kwargs)
            real(conn, query, *args, **kwargs)
            drop._kill(pid)
            # What the client sees when the answer never arrives.
            return real(conn, 'SELECT 1')
        monkeypatch.setattr(psycopg.Connection, 'execute', execute)

    def _kill(self, pid):
        self.admin.execute('SELECT pg_terminate_backend(%s)', (pid,))
        _wait_gone(self.admin, [pid])


@pytest.mark.parametrize('when', ['before', 'after'])
def test_a_drop_during_commit_is_settled_before_finish_reports(
        admin, pg_database, monkeypatch, when):
    writer = _storage(pg_database, OTHER)
    victim = _storage(pg_database, VICTIM)
    drop = CommitDrop(admin, when)
    drop.install(monkeypatch)
    try:
        oid = writer.new_oid()
        txn = _stage(writer, oid, z64, 'one')
        writer.tpc_vote(txn)
        first = writer.tpc_finish(txn)
        txn = _stage(victim, oid, first, 'two')
        victim.tpc_vote(txn)
        drop.armed = True
        seen = []
        if when == 'after':
            tid = victim.tpc_finish(txn, seen.append)
            assert seen == [tid]
            assert victim.lastTransaction() == tid
        else:
            with pytest.raises(errors.DisconnectedError) as info:
                victim.tpc_finish(txn, seen.append)
            assert 'did not commit' in str(info.value)
            assert seen == []
            victim.tpc_abort(txn)
        assert drop.fired == 1
        expected = ['one', 'two'] if when == 'after' else ['one']
        assert _notes(writer) == expected
        assert value_of(writer.load(oid)[0]) == expected[-1]
        # Either way the storage goes on, on a new session.
        serial = writer.load(oid)[1]
        txn = _stage(victim, oid, serial, 'three')
        victim.tpc_vote(txn)
        victim.tpc_finish(txn)
        assert _notes(writer) == expected + ['three']
    finally:
        victim.close()
        writer.close()


@pytest.mark.parametrize('when', ['before', 'after'])
def test_attempts_around_a_dropped_commit_apply_it_exactly_once(
        admin, dbs, monkeypatch, when):
    writer, victim = dbs
    _setup_counter(writer)
    drop = CommitDrop(admin, when)
    drop.install(monkeypatch)
    manager = transaction.TransactionManager()
    conn = victim.open(manager)
    runs = 0
    try:
        for attempt in manager.attempts(3):
            with attempt as txn:
                runs += 1
                txn.note('increment')
                _increment(conn.root())
                drop.armed = runs == 1
        # The connection goes on with the counter as committed.
        with manager:
            assert conn.root()['counter']['n'] == 1
            _increment(conn.root())
    finally:
        manager.abort()
        conn.close()
    assert drop.fired == 1
    assert runs == (2 if when == 'before' else 1)
    assert _read(writer, lambda root: root['counter']['n']) == 2
    assert _notes(writer.storage).count('increment') == 1
