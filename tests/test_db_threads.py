"""Threads: each with its own connection, retrying conflicts, money is kept."""
import random
import threading

from BTrees.Length import Length
from persistent.list import PersistentList

from db_fixtures import (  # noqa: F401 (fixtures)
    Item, close_connection, db, open_connection, storage_factory)

ACCOUNTS = 50
THREADS = 4
TRANSFERS = 2500
START = 1000


def _transfer(connection, rng, stats):
    manager = connection.transaction_manager
    source, target = rng.sample(range(ACCOUNTS), 2)
    amount = rng.randint(1, 50)
    for attempt in manager.attempts(1000):
        with attempt:
            stats['tries'] += 1
            accounts = connection.root.accounts
            accounts[source].balance -= amount
            accounts[target].balance += amount
            connection.root.transfers.change(1)


def test_random_transfers_in_four_threads_keep_the_total(db):
    setup = open_connection(db)
    setup.root.accounts = PersistentList(
        Item(balance=START) for _ in range(ACCOUNTS))
    setup.root.transfers = Length()
    setup.transaction_manager.commit()
    close_connection(setup)

    failures = []
    stats = [{'tries': 0} for _ in range(THREADS)]

    def run(index):
        rng = random.Random(index)
        connection = open_connection(db)
        try:
            for _ in range(TRANSFERS // THREADS):
                _transfer(connection, rng, stats[index])
        except BaseException as exc:     # reported by the main thread
            failures.append(exc)
        finally:
            close_connection(connection)

    threads = [threading.Thread(target=run, args=(i,))
               for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []

    check = open_connection(db)
    try:
        balances = [a.balance for a in check.root.accounts]
        assert sum(balances) == ACCOUNTS * START
        assert check.root.transfers() == TRANSFERS
    finally:
        close_connection(check)
    tries = sum(s['tries'] for s in stats)
    assert tries >= TRANSFERS
