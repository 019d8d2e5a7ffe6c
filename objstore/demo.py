"""The README's main job: a short tour of the storage API on a real file.

It commits a few transactions to an objstore FileStorage, closes it, reopens
it and prints what the file holds: its transactions and one object's history.
"""
import os
import tempfile

import transaction as transaction_package

from objstore.serialize import dumps_record
from objstore.storages import FileStorage
from objstore.storages.base import z64


class Note:
    """The demo's record class; the storage never imports it."""


def _commit(storage, changes, user, description):
    txn = transaction_package.Transaction()
    txn.user = user
    txn.description = description
    storage.tpc_begin(txn)
    for oid, (serial, data) in changes.items():
        storage.store(oid, serial, data, '', txn)
    storage.tpc_vote(txn)
    return storage.tpc_finish(txn)


def run(path=None, out=print):
    """Run the demo on ``path`` (a new file in a temporary folder if None)."""
    if path is None:
        path = os.path.join(tempfile.mkdtemp(prefix='objstore-demo-'), 'demo.fs')
    storage = FileStorage(path, create=True)
    root_tid = _commit(storage, {z64: (z64, dumps_record(Note, {'title': 'root'}))},
                       'demo', 'create the root')
    note = storage.new_oid()
    serial = _commit(storage, {note: (z64, dumps_record(Note, {'text': 'v1'}))},
                     'alice', 'first draft')
    for n in (2, 3):
        serial = _commit(storage, {note: (serial, dumps_record(Note, {'text': 'v%d' % n}))},
                         'alice', 'revision %d' % n)
    storage.close()

    storage = FileStorage(path, read_only=True)
    try:
        out('objstore file storage: %s (%d bytes, %d objects)'
            % (path, storage.getSize(), len(storage)))
        out('transactions:')
        for txn in storage.iterator():
            out('  %s  %-6s %-16s %d record(s)' % (
                txn.tid.hex(), txn.user.decode(), txn.description.decode(),
                len(list(txn))))
        out('history of object %s:' % note.hex())
        for entry in storage.history(note, size=10):
            out('  %s  %s' % (entry['tid'].hex(), entry['description'].decode()))
        data, tid = storage.load(note)
        out('current revision %s, root written in %s' % (tid.hex(), root_tid.hex()))
    finally:
        storage.close()
    return path
