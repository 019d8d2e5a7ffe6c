"""PostgreSQLStorage shared by four processes, each with its own DB.

Each worker process increments one ``BTrees.Length.Length`` and appends
to one shared ``OOBTree`` in 500 transactions, retrying through
``TransactionManager.attempts()`` when a commit conflicts. The counts at
the end must be exact, and every process must have seen the others'
commits: while it runs (the counter it reads outgrows its own
increments) and at the end (a new transaction shows all 2000).
"""
import json
import os
import subprocess
import sys
import textwrap
import time


from objstore.testing.pg import pg_database  # noqa: F401 -- a fixture

WORKERS = 4
INCREMENTS = 500

# A worker driven through stdin: it says "ready" once its DB is open,
# runs the increments after "go", says "done", and after "check" reports
# what a new transaction shows, as one JSON line.
WORKER = textwrap.dedent('''
    import json, sys
    import transaction
    from objstore.db import DB
    from objstore.errors import ConflictError
    from objstore.storages import PostgreSQLStorage

    dsn, name, increments = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    db = DB(PostgreSQLStorage(dsn, create_schema=False))
    manager = transaction.TransactionManager()
    conn = db.open(manager)
    print('ready', flush=True)
    sys.stdin.readline()

    observed = []       # the counter as each of our transactions saw it
    runs = 0            # transaction bodies run, retries included
    for i in range(increments):
        for attempt in manager.attempts(100):
            with attempt:
                runs += 1
                root = conn.root()
                length = root['length']
                length.change(1)
                value = length()
                root['tree'][(name, i)] = value
        observed.append(value)
    print('done', flush=True)
    sys.stdin.readline()

    with manager:
        root = conn.root()
        final = {'length': root['length'](),
                 'entries': len(root['tree']),
                 'others': sum(1 for key in root['tree'].keys()
                               if key[0] != name)}
    conn.close()
    db.close()
    print(json.dumps({'observed': observed, 'runs': runs, 'final': final}),
          flush=True)
''')


class Worker:
    """One worker process, started as soon as it is made."""

    def __init__(self, dsn, name):
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env['PYTHONPATH'] = root + os.pathsep + env.get('PYTHONPATH', '')
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, '-c', WORKER, dsn, str(name), str(INCREMENTS)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=env)

    def tell(self, line):
        self.proc.stdin.write(line + '\n')
        self.proc.stdin.flush()

    def expect(self, word):
        line = self.proc.stdout.readline().strip()
        if line != word:
            self.proc.wait(30)
            raise AssertionError('worker %d said %r instead of %r (exit %r)'
                                 % (self.name, line, word,
                                    self.proc.returncode))

    def report(self):
        line = self.proc.stdout.readline()
        self.proc.wait(30)
        assert self.proc.returncode == 0, (self.name, line)
        return json.loads(line)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _populate(dsn):
    """The schema, the root, and the shared counter and tree."""
    import transaction
    from BTrees.Length import Length
    from BTrees.OOBTree import OOBTree

    from objstore.db import DB
    from objstore.storages import PostgreSQLStorage

    db = DB(PostgreSQLStorage(dsn))
    try:
        manager = transaction.TransactionManager()
        conn = db.open(manager)
        with manager:
            conn.root()['length'] = Length()
            conn.root()['tree'] = OOBTree()
        conn.close()
    finally:
        db.close()


def _run_workers(dsn):
    """Start the workers together; return their reports and how long the
    increments took."""
    workers = [Worker(dsn, n) for n in range(WORKERS)]
    try:
        for worker in workers:
            worker.expect('ready')
        started = time.monotonic()
        for worker in workers:
            worker.tell('go')
        for worker in workers:
            worker.expect('done')
        elapsed = time.monotonic() - started
        for worker in workers:
            worker.tell('check')
        return [worker.report() for worker in workers], elapsed
    finally:
        for worker in workers:
            worker.kill()


def _stored(dsn):
    """``(counter, {key: value} of the tree)`` as a new DB reads them."""
    import transaction

    from objstore.db import DB
    from objstore.storages import PostgreSQLStorage

    db = DB(PostgreSQLStorage(dsn))
    try:
        manager = transaction.TransactionManager()
        conn = db.open(manager)
        with manager:
            result = conn.root()['length'](), dict(conn.root()['tree'].items())
        conn.close()
        return result
    finally:
        db.close()


def test_four_processes_count_exactly_and_see_each_other(pg_database):
    _populate(pg_database)
    reports, elapsed = _run_workers(pg_database)

    total = WORKERS * INCREMENTS
    for name, report in enumerate(reports):
        observed = report['observed']
        assert len(observed) == INCREMENTS
        # Each transaction starts from a snapshot that holds this process's
        # previous commit, so what it reads only grows.
        assert all(a < b for a, b in zip(observed, observed[1:])), name
        # It saw the others while it ran: the counter outgrew its own
        # increments.
        assert max(v - i - 1 for i, v in enumerate(observed)) > 0, name
        # A new transaction after everyone finished shows every commit.
        assert report['final'] == {
            'length': total, 'entries': total,
            'others': total - INCREMENTS}, name
    # Concurrent increments from one snapshot read the same value (the
    # counter resolves their conflict), so values may repeat, never exceed.
    assert max(r['observed'][-1] for r in reports) <= total

    # No transaction lost or applied twice: one entry per increment, each
    # holding the value its process read in that transaction.
    length, stored = _stored(pg_database)
    assert length == total
    assert sorted(stored) == [(n, i) for n in range(WORKERS)
                              for i in range(INCREMENTS)]
    for name, report in enumerate(reports):
        assert [stored[(name, i)] for i in range(INCREMENTS)] == \
            report['observed'], name
    assert elapsed < 60, elapsed
