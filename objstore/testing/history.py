"""IStorage.history: an object's revisions with their transaction metadata."""
import pytest

from objstore import errors
from objstore.storages.base import p64, tid_time, z64
from objstore.testing.harness import ConformanceBase
from objstore.testing.helpers import commit, new_object, record

KEYS = {'time', 'tid', 'serial', 'user_name', 'description', 'size'}


class HistoryConformance(ConformanceBase):
    """Revisions newest first, with user, description and extension."""

    def _three_revisions(self, storage):
        oid = storage.new_oid()
        tids, serial = [], z64
        for n, user in enumerate(['ann', 'bob', 'cy']):
            serial = commit(storage, {oid: (serial, record('v' * (n + 1)))},
                            user=user, description='change %d' % n,
                            extension={'n': n, 'color': 'red'})
            tids.append(serial)
        return oid, tids

    def test_history_is_newest_first_with_metadata(self, storage):
        oid, tids = self._three_revisions(storage)
        entries = storage.history(oid, 10)
        assert [e['tid'] for e in entries] == tids[::-1]
        for n, entry in zip((2, 1, 0), entries):
            assert KEYS <= set(entry)
            assert entry['serial'] == entry['tid']
            assert entry['user_name'] == [b'ann', b'bob', b'cy'][n]
            assert entry['description'] == b'change %d' % n
            assert entry['n'] == n and entry['color'] == 'red'
            assert entry['size'] == len(record('v' * (n + 1)))
            assert entry['time'] == pytest.approx(tid_time(entry['tid']),
                                                  abs=1e-3)

    def test_size_limits_the_number_of_entries(self, storage):
        oid, tids = self._three_revisions(storage)
        assert [e['tid'] for e in storage.history(oid)] == [tids[2]]
        assert [e['tid'] for e in storage.history(oid, 2)] == tids[:0:-1]
        assert len(storage.history(oid, 3)) == 3

    def test_history_shows_only_the_objects_own_revisions(self, storage):
        oid, first = new_object(storage, 1)
        new_object(storage, 'other')
        assert [e['tid'] for e in storage.history(oid, 10)] == [first]

    def test_extension_cannot_hide_standard_keys(self, storage):
        oid = storage.new_oid()
        tid = commit(storage, {oid: (z64, record(1))}, user='u',
                     description='real', extension={
                         'description': 'fake', 'tid': 'fake', 'size': -1,
                         'extra': 'kept'})
        entry, = storage.history(oid)
        assert entry['description'] == b'real'
        assert entry['tid'] == tid
        assert entry['size'] == len(record(1))
        assert entry['extra'] == 'kept'

    def test_text_metadata_is_stored_as_utf8(self, storage):
        oid = storage.new_oid()
        commit(storage, {oid: (z64, record(1))}, user='zoë',
               description='café')
        entry, = storage.history(oid)
        assert entry['user_name'] == 'zoë'.encode('utf-8')
        assert entry['description'] == 'café'.encode('utf-8')

    def test_history_of_an_unknown_oid_raises(self, storage):
        new_object(storage, 1)
        with pytest.raises(errors.POSKeyError):
            storage.history(p64(999))
