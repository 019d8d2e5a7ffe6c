"""The README's main job: objects in a file, changed, reopened, time travel.

``python -m objstore demo [path]`` stores a small library (a root mapping, a
BTree of books, persistent ``Book`` objects) in an objstore FileStorage,
changes it in two more transactions, closes the database, reopens the file,
and prints the current state, every transaction with its metadata, and the
library as it was after the second transaction (``db.open(at=tid)``).
"""
import datetime
import os
import tempfile

import transaction
from BTrees.OOBTree import OOBTree
from persistent import Persistent

import objstore
from objstore.storages.base import tid_time


class Book(Persistent):
    """One book of the demo library; it lives in this module so that the
    reopened database can import its class."""

    def __init__(self, title, author, year):
        self.title = title
        self.author = author
        self.year = year
        self.lent_to = None

    def describe(self):
        text = '%s, %s (%d)' % (self.title, self.author, self.year)
        if self.lent_to:
            text += ' -- lent to %s' % self.lent_to
        return text


def commit(user, note):
    """Commit the thread's current transaction, signed ``user``."""
    txn = transaction.get()
    txn.user = user
    txn.note(note)
    txn.commit()


def show_library(root, out):
    out('  %s: %d books' % (root['name'], len(root['books'])))
    for key, book in root['books'].items():
        out('    %-7s %s' % (key, book.describe()))


def when(tid):
    moment = datetime.datetime.fromtimestamp(tid_time(tid), datetime.timezone.utc)
    return moment.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]


def run(path=None, out=print):
    """Run the demo on ``path``, a new file (default: in a temporary folder).

    Refuses an existing file rather than add to it. Returns the path.
    """
    if path is None:
        path = os.path.join(tempfile.mkdtemp(prefix='objstore-demo-'), 'library.fs')
    if os.path.exists(path):
        raise FileExistsError('%s exists; the demo writes a new file' % path)
    out('objstore demo: %s' % path)

    # 1. Store objects: the root is a PersistentMapping; put a BTree in it.
    db = objstore.open(path)
    conn = db.open()
    root = conn.root()
    root['name'] = 'Riverside library'
    root['books'] = OOBTree({
        'dune': Book('Dune', 'Frank Herbert', 1965),
        'hobbit': Book('The Hobbit', 'J. R. R. Tolkien', 1937),
    })
    commit('alice', 'Open the library')

    # 2. Change them in later transactions: only changed objects are written.
    root['books']['dune'].lent_to = 'carol'
    commit('bob', 'Lend Dune to carol')
    root['books']['dune'].lent_to = None
    root['books']['sicp'] = Book('Structure and Interpretation of Computer '
                                 'Programs', 'Abelson and Sussman', 1985)
    commit('alice', 'Dune returned; add SICP')
    conn.close()
    db.close()
    out('Stored a library in 3 transactions and closed the database.')

    # 3. Reopen the file: the objects are back, loaded as they are used.
    db = objstore.open(path)
    conn = db.open()
    out('\nThe library now:')
    show_library(conn.root(), out)

    # 4. Every transaction is kept, with its metadata.
    out('\nTransactions (each writes only the objects it changed):')
    tids = []
    for txn in db.storage.iterator():
        tids.append(txn.tid)
        out('  %s UTC  %-5s  %-26s %d object(s)' % (
            when(txn.tid), txn.user.decode() or '-', txn.description.decode(),
            len(list(txn))))

    # 5. Time travel: a read-only connection on the database as it was.
    past = db.open(at=tids[-2])
    out('\nThe library as it was after "Lend Dune to carol" (db.open(at=tid)):')
    show_library(past.root(), out)
    past.close()
    conn.close()
    db.close()
    return path
