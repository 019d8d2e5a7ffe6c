"""The base class of every conformance mixin: how tests get storages.

A storage's test module subclasses the mixins it qualifies for and
implements :meth:`ConformanceBase.make_storage` (and, for storages that
keep their data, :meth:`ConformanceBase.reopen_storage`)::

    class TestFileStorage(IStorageConformance, IStorageIterationConformance):

        def make_storage(self):
            return FileStorage(str(self.tmp_path / ('%d.fs' % self.count())))

        def reopen_storage(self, storage, read_only=False):
            storage.close()
            return FileStorage(storage.getName(), read_only=read_only)
"""
import itertools

import pytest


class ConformanceBase:
    """Gives tests a ``storage`` fixture and closes every storage after.

    ``self.tmp_path`` is a fresh directory for each test.
    """

    def make_storage(self):
        """Return a new, empty, writable storage.

        Called once per test for the ``storage`` fixture, and again by tests
        that need a second storage (copies), so each call must give a
        separate one.
        """
        raise NotImplementedError('a conformance test class must define '
                                  'make_storage()')

    def reopen_storage(self, storage, read_only=False):
        """Close ``storage`` and return a new instance on the same data.

        Only storages whose data outlives ``close()`` define it, and they
        compose :class:`objstore.testing.reopen.ReopenConformance`.
        """
        raise NotImplementedError('%s keeps no data across close; leave '
                                  'ReopenConformance out of its tests'
                                  % type(storage).__name__)

    @pytest.fixture(autouse=True)
    def _conformance_setup(self, tmp_path):
        self.tmp_path = tmp_path
        self._storages = []
        self._counter = itertools.count(1)
        yield
        for storage in reversed(self._storages):
            storage.close()

    @pytest.fixture
    def storage(self):
        return self.new_storage()

    def count(self):
        """1, 2, 3... within a test: for naming files in ``make_storage``."""
        return next(self._counter)

    def new_storage(self):
        """A new storage from ``make_storage``, closed after the test."""
        storage = self.make_storage()
        self._storages.append(storage)
        return storage

    def reopen(self, storage, read_only=False):
        """``reopen_storage``, with the new instance closed after the test."""
        reopened = self.reopen_storage(storage, read_only=read_only)
        self._storages.append(reopened)
        return reopened
