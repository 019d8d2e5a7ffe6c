"""The storage conformance suite: pytest mixins, one per interface.

A storage's test module subclasses the mixins for the interfaces the
storage declares and supplies a factory (see :mod:`objstore.testing.harness`)::

    from objstore import testing

    class TestMemoryStorage(testing.IStorageConformance,
                            testing.IStorageUndoableConformance):

        def make_storage(self):
            return MemoryStorage()

Every storage composes :class:`IStorageConformance`; it includes the test
that runs ``verifyObject`` for every interface the storage declares.
"""
from objstore.testing.basic import BasicConformance
from objstore.testing.conflicts import (
    ConflictConformance, ReadVerifyingStorageConformance)
from objstore.testing.gc import IExternalGCConformance
from objstore.testing.harness import ConformanceBase
from objstore.testing.history import HistoryConformance
from objstore.testing.iteration import (
    IStorageCurrentRecordIterationConformance, IStorageIterationConformance)
from objstore.testing.pack import PackConformance
from objstore.testing.reopen import ReopenConformance
from objstore.testing.restore import IStorageRestoreableConformance
from objstore.testing.threads import ConcurrencyConformance
from objstore.testing.undo import IStorageUndoableConformance
from objstore.testing.window import IHistoryWindowConformance


class IStorageConformance(BasicConformance, ConflictConformance,
                          HistoryConformance, PackConformance,
                          ConcurrencyConformance):
    """Everything IStorage promises: 2PC, reads, conflicts, history, pack,
    threads, and verifyObject for every declared interface."""


__all__ = [
    'ConformanceBase', 'IStorageConformance', 'BasicConformance',
    'ConflictConformance', 'HistoryConformance', 'PackConformance',
    'ConcurrencyConformance', 'IStorageIterationConformance',
    'IStorageCurrentRecordIterationConformance',
    'IStorageUndoableConformance', 'IStorageRestoreableConformance',
    'ReadVerifyingStorageConformance', 'IExternalGCConformance',
    'ReopenConformance', 'IHistoryWindowConformance',
]
