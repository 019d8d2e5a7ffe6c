"""The DB as the IStorageWrapper of ZODB storages, and its driving of
natively MVCC storages: instances polled at each transaction start and
released when their connection goes."""
import transaction
from ZODB.MappingStorage import MappingStorage
from ZODB.tests.MVCCMappingStorage import MVCCMappingStorage
from zope.interface.verify import verifyObject

from objstore import errors
from objstore.db import DB
from objstore.interfaces import IStorageWrapper
from objstore.serialize import references

from db_fixtures import Item


class RecordingMappingStorage(MappingStorage):
    """A ZODB storage that keeps what its ``registerDB`` is given, as
    ZEO's client storage does to report other processes' commits."""

    wrapper = None

    def registerDB(self, wrapper):
        self.wrapper = wrapper


def _committed_item(db):
    manager = transaction.TransactionManager()
    connection = db.open(manager)
    connection.root.item = Item(a=1)
    manager.commit()
    item = connection.root.item
    item.a      # loaded
    return connection, manager, item


def test_a_zodb_storage_is_given_an_istoragewrapper():
    storage = RecordingMappingStorage()
    db = DB(storage)
    try:
        assert verifyObject(IStorageWrapper, storage.wrapper)
        connection, manager, item = _committed_item(db)
        root_record = storage.load(connection.root()._p_oid)[0]
        assert storage.wrapper.references(root_record) == [item._p_oid]
        assert storage.wrapper.references(root_record, [b'x']) == [
            b'x', item._p_oid]
        connection.close()
    finally:
        db.close()


def test_invalidate_from_the_storage_ghosts_at_the_next_transaction():
    storage = RecordingMappingStorage()
    db = DB(storage)
    try:
        connection, manager, item = _committed_item(db)
        storage.wrapper.invalidate(db.lastTransaction(), [item._p_oid])
        assert item._p_changed is False     # not in the middle of one
        manager.begin()
        assert item._p_changed is None
        assert item.a == 1
        connection.close()
    finally:
        db.close()


def test_invalidate_cache_from_the_storage_keeps_a_running_transaction():
    storage = RecordingMappingStorage()
    db = DB(storage)
    try:
        connection, manager, item = _committed_item(db)
        other = connection.root()
        item.a = 2
        storage.wrapper.invalidateCache()
        assert item._p_changed and item.a == 2
        manager.commit()
        assert item._p_changed is None and other._p_changed is None
        assert item.a == 2
        connection.close()
    finally:
        db.close()


def test_db_invalidate_cache_waits_for_the_next_transaction():
    for storage in (MappingStorage(), MVCCMappingStorage()):
        db = DB(storage)
        try:
            connection, manager, item = _committed_item(db)
            item.a = 2
            db.invalidateCache()
            assert item._p_changed and item.a == 2
            manager.commit()
            assert item._p_changed is None, storage
            check = db.open(transaction.TransactionManager())
            assert check.root.item.a == 2
            check.close()
            connection.close()
        finally:
            db.close()


def test_db_references_are_the_record_references():
    db = DB(MappingStorage())
    try:
        connection, manager, item = _committed_item(db)
        record = db.storage.load(connection.root()._p_oid)[0]
        assert db.references(record) == references(record) == [item._p_oid]
        connection.close()
    finally:
        db.close()


class TransformingMVCCStorage(MVCCMappingStorage):
    """Asks its wrapper for the record transforms in registerDB, as
    RelStorage does."""

    def registerDB(self, wrapper):
        self.transform = wrapper.transform_record_data
        self.untransform = wrapper.untransform_record_data


def test_record_transforms_are_the_identity_for_storages_that_ask():
    storage = TransformingMVCCStorage()
    db = DB(storage)
    try:
        assert storage.transform(b'record') == b'record'
        assert storage.untransform(b'record') == b'record'
        with db.transaction() as connection:
            connection.root()['x'] = 1
        with db.transaction() as connection:
            assert connection.root()['x'] == 1
    finally:
        db.close()


class FlakyPollStorage(MVCCMappingStorage):
    """Its instances' polls fail once with DisconnectedError when told to,
    as a server storage's do when the server drops the session."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.fail_polls = 0

    def new_instance(self):
        instance = super().new_instance()
        poll = instance.poll_invalidations

        def flaky_poll():
            if self.fail_polls:
                self.fail_polls -= 1
                raise errors.DisconnectedError('server closed the session')
            return poll()
        instance.poll_invalidations = flaky_poll
        return instance


def test_a_lost_poll_after_a_commit_is_not_the_commits_failure():
    storage = FlakyPollStorage()
    db = DB(storage)
    manager = transaction.TransactionManager()
    try:
        connection = db.open(manager)
        connection.root()['item'] = item = Item(value=1)
        manager.commit()
        item.value = 2
        storage.fail_polls = 2      # the poll after the commit, and its retry
        manager.commit()            # committed: must not raise
        # The next transaction start drops the whole cache (the changes
        # the lost poll would have reported are unknown).
        manager.begin()
        assert item._p_changed is None
        assert connection.root()['item'].value == 2
        storage.fail_polls = 1      # a poll at begin() is asked again
        manager.begin()
        assert connection.root()['item'].value == 2
    finally:
        db.close()


class CountingMVCCStorage(MVCCMappingStorage):
    """ZODB's MVCC test storage, counting polls and releases of its
    instances."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.events = []

    def new_instance(self):
        instance = super().new_instance()
        events = self.events
        poll, release = instance.poll_invalidations, instance.release

        def counting_poll():
            events.append(('poll', id(instance)))
            return poll()

        def counting_release():
            events.append(('release', id(instance)))
            return release()
        instance.poll_invalidations = counting_poll
        instance.release = counting_release
        return instance


def test_mvcc_instances_are_polled_at_every_transaction_start():
    storage = CountingMVCCStorage()
    db = DB(storage)
    try:
        manager = transaction.TransactionManager()
        connection = db.open(manager)
        instance = id(connection._storage._storage)
        for _ in range(3):
            polls = storage.events.count(('poll', instance))
            manager.begin()
            assert storage.events.count(('poll', instance)) > polls
        connection.close()
    finally:
        db.close()


def test_mvcc_instances_are_released_when_their_connection_goes():
    storage = CountingMVCCStorage()
    db = DB(storage, pool_size=1)

    def released():
        return [e[1] for e in storage.events if e[0] == 'release']
    try:
        ensure_root = len(released())   # the DB's own, to write the root
        managers = [transaction.TransactionManager() for _ in range(3)]
        connections = [db.open(m) for m in managers]
        connections[0].root.item = Item(a=1)
        managers[0].commit()
        historical = db.open(at=connections[0].root.item._p_serial)
        assert historical.root.item.a == 1
        assert len(released()) == ensure_root
        historical.close()      # historical connections are not pooled
        assert len(released()) == ensure_root + 1
        for connection in connections:
            connection.close()  # the pool keeps one, releases the others
        assert len(released()) == ensure_root + 3
    finally:
        db.close()
    assert len(released()) == ensure_root + 4
    assert len(set(released()[ensure_root:])) == 4
