"""Parts of the DB and Connection API not covered elsewhere: metadata seen
by iteration, undo in the current transaction, a closed DB, ``conn.db()``,
and the documentation pages the issue asks for."""
import os
import pathlib
import subprocess
import sys
import time

import pytest
import transaction

from objstore import errors

from db_fixtures import (  # noqa: F401 (fixtures)
    Item, close_connection, conn, db, open_connection, storage_factory)

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_transaction_metadata_is_returned_by_iteration(db, conn):
    conn.root.item = Item(a=1)
    txn = conn.transaction_manager.get()
    txn.note('Create the item')
    txn.user = 'alice'
    txn.extension['ip'] = '192.0.2.1'
    conn.transaction_manager.commit()
    [record] = [t for t in db.storage.iterator()
                if t.tid == db.lastTransaction()]
    assert record.user == b'alice'
    assert record.description == b'Create the item'
    assert record.extension == {'ip': '192.0.2.1'}
    assert {r.oid for r in record} == {conn.root()._p_oid,
                                       conn.root.item._p_oid}


@pytest.mark.history
def test_transaction_note_is_stored_and_seen_by_iteration(db):
    with db.transaction('Add an item') as connection:
        connection.root.item = Item(a=1)
    last = list(db.storage.iterator())[-1]
    assert last.description == b'Add an item'
    assert db.undoLog(0, 1)[0]['description'] == 'Add an item'


@pytest.mark.history
def test_undo_without_a_transaction_joins_the_current_one(db):
    connection = db.open()      # the thread's transaction manager
    try:
        connection.root.item = item = Item(a=1)
        transaction.commit()
        item.a = 2
        transaction.commit()
        db.undo(db.undoLog(0, 1)[0]['id'])
        assert item.a == 2      # undone when the transaction commits
        transaction.commit()
        assert item.a == 1
    finally:
        transaction.abort()
        connection.close()


@pytest.mark.history
def test_pack_with_t_and_days_keeps_what_is_newer(db, conn):
    conn.root.item = item = Item(a=1)
    conn.transaction_manager.commit()
    item.a = 2
    conn.transaction_manager.commit()
    db.pack(days=1)
    assert len(db.history(item, size=10)) == 2
    db.pack(t=time.time() + 2 * 86400, days=1)    # a day from now
    assert [h['tid'] for h in db.history(item, size=10)] == [item._p_serial]


@pytest.mark.history
def test_history_takes_an_object_or_an_oid_and_a_size(db, conn):
    conn.root.item = item = Item(a=0)
    conn.transaction_manager.commit()
    for value in range(1, 4):
        item.a = value
        conn.transaction_manager.commit()
    assert len(db.history(item)) == 1
    assert len(db.history(item, size=3)) == 3
    assert db.history(item._p_oid, 10) == db.history(item, size=10)
    assert len(db.history(item, size=10)) == 4


def test_connection_db_get_and_add(db, conn):
    assert conn.db() is db
    item = Item(a=1)
    conn.add(item)
    assert conn.get(item._p_oid) is item
    conn.root.item = item
    conn.transaction_manager.commit()
    other = open_connection(db)
    try:
        assert other.get(item._p_oid).a == 1
        assert other.get(item._p_oid) is other.root.item
    finally:
        close_connection(other)


@pytest.mark.history
def test_a_closed_db_refuses_open_pack_and_undo(storage_factory):
    from objstore.db import DB
    database = DB(storage_factory())
    undo_id = database.undoLog(0, 1)[0]['id']
    database.close()
    for call in (database.open, database.pack,
                 lambda: database.undo(undo_id)):
        with pytest.raises(errors.ConnectionStateError, match='closed'):
            call()


@pytest.mark.parametrize('page', ['quickstart', 'coming-from-zodb',
                                  'transactions', 'time-travel', 'storages'])
def test_narrative_docs_pages_exist_with_running_examples(page):
    # test_docs runs every page with examples; this makes sure the pages
    # the issue asks for are there and have some.
    text = (ROOT / 'docs' / (page + '.rst')).read_text(encoding='utf-8')
    assert text.count('>>>') >= 10
    index = (ROOT / 'docs' / 'index.rst').read_text(encoding='utf-8')
    assert '\n   %s\n' % page in index


def test_api_page_is_generated_from_the_interfaces():
    text = (ROOT / 'docs' / 'api.rst').read_text(encoding='utf-8')
    assert '.. automodule:: objstore.interfaces' in text
    assert 'objstore.errors' in text


def test_docs_build_without_warnings(tmp_path):
    # Sphinx is in the test extra, so this runs wherever the suite does.
    result = subprocess.run(
        [sys.executable, '-m', 'sphinx', '-W', '-q', '-b', 'html',
         '-d', str(tmp_path / 'doctrees'), str(ROOT / 'docs'),
         str(tmp_path / 'html')],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / 'html' / 'api.html').exists()


def test_the_connection_joins_the_transaction_on_the_first_change(db, conn):
    conn.root.item = Item(a=1)
    conn.transaction_manager.commit()
    txn = conn.transaction_manager.get()
    assert conn.root.item.a == 1        # reading does not join
    assert conn not in txn._resources
    conn.root.item.a = 2
    conn.root.item.b = 3
    assert txn._resources.count(conn) == 1
    conn.transaction_manager.commit()


WRITER = '''
import sys, transaction
from objstore.db import DB
from objstore.storages.file import FileStorage
db = DB(FileStorage(sys.argv[1]))
conn = db.open()
conn.root.item.a = 2
conn.root.other = 5
transaction.commit()
db.close()
'''


def test_a_commit_of_another_process_is_seen_at_the_next_transaction(
        tmp_path):
    from objstore.db import DB
    from objstore.storages.file import FileStorage
    path = tmp_path / 'Data.fs'
    with DB(FileStorage(path)) as writer:
        with writer.transaction() as connection:
            connection.root.item = Item(a=1)
    reader = DB(FileStorage(path, read_only=True))
    try:
        manager = transaction.TransactionManager()
        connection = reader.open(manager)
        item = connection.root.item
        assert item.a == 1
        env = dict(os.environ,
                   PYTHONPATH=str(ROOT / 'tests'))
        subprocess.run([sys.executable, '-c',
                        'from db_fixtures import Item\n' + WRITER,
                        str(path)], check=True, env=env)
        assert item.a == 1 and 'other' not in connection.root()
        manager.begin()
        assert item._p_changed is None      # ghosted, not reloaded
        assert (item.a, connection.root.other) == (2, 5)
        connection.close()
    finally:
        reader.close()


def test_open_at_the_largest_tid_shows_the_current_state(db, conn):
    conn.root.item = Item(a=1)
    conn.transaction_manager.commit()
    past = db.open(at=b'\xff' * 8)
    try:
        assert past.root.item.a == 1
    finally:
        past.close()


def test_history_of_an_object_never_stored_says_so():
    from persistent.mapping import PersistentMapping
    from objstore.db import DB
    db = DB(None)
    try:
        with pytest.raises(errors.InvalidArgumentError,
                           match='no oid until a commit stores it'):
            db.history(PersistentMapping())
        with pytest.raises(ValueError):
            db.history('not an oid')
    finally:
        db.close()
