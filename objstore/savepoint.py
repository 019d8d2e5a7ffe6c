"""Savepoints of a connection: object records kept aside until commit.

A savepoint writes the state of every changed object into a
:class:`SavepointStore`, an in-memory map from oid to record that the
connection reads before its storage, so the rest of the transaction sees
the savepoint's data. At commit these records are what the connection
stores; rolling back to a savepoint restores the map as it was then.

Trade-off: ZODB keeps savepoint records in a temporary file, which bounds
memory for huge transactions; objstore keeps them in memory, which is
simpler and faster for the transactions applications usually run.
"""
from zope.interface import implementer
from transaction.interfaces import IDataManagerSavepoint

from objstore.storages.base import z64


class SavepointStore:
    """The records the savepoints of one transaction hold.

    ``records`` maps oid to ``(data, serial)``: the object's last
    savepointed record and the serial the transaction started from (``z64``
    for objects the transaction creates). ``creating`` maps the oids of the
    objects created in savepoints to the objects.
    """

    def __init__(self):
        self.records = {}
        self.creating = {}

    def __contains__(self, oid):
        return oid in self.records

    def __len__(self):
        return len(self.records)

    def load(self, oid):
        """``(data, serial)`` of the savepointed record; KeyError if none."""
        return self.records[oid]

    # The signature of IStorage.store, so the connection's store loop
    # writes to a savepoint and to a storage the same way.
    def store(self, oid, serial, data, version, transaction):
        """Keep ``data`` for ``oid``; the serial is the one it started from."""
        self.records[oid] = (data, serial or z64)

    def mark(self):
        """A copy of the current contents, for :meth:`reset`."""
        return dict(self.records), dict(self.creating)

    def reset(self, mark):
        """Go back to the contents ``mark`` recorded."""
        records, creating = mark
        self.records = dict(records)
        self.creating = dict(creating)


@implementer(IDataManagerSavepoint)
class Savepoint:
    """One savepoint of one connection; ``rollback()`` returns to it."""

    def __init__(self, connection, mark):
        self.connection = connection
        self.mark = mark

    def rollback(self):
        """Forget every change made after this savepoint was taken."""
        self.connection._rollback_savepoint(self.mark)
