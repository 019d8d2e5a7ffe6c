"""The contracts of objstore, declared with zope.interface.

Every layer may import this module; it imports nothing from objstore. It is
mostly docstring: each interface states what callers may rely on, and the
conformance suite (``objstore.testing``) checks it against every storage.

1. The storage protocol, ZODB's: the method names, signatures, semantics
   and grouping of ZODB 6's ``ZODB.interfaces``, so that ZODB can drive an
   objstore storage and objstore a ZODB one. Every storage provides
   :class:`IStorage`; each capability is a separate interface, declared
   only by storages that implement all of it: :class:`IMVCCStorage`,
   :class:`IStorageIteration` (yielding :class:`IStorageTransactionInformation`
   and :class:`IStorageRecordInformation`), :class:`IStorageUndoable`,
   :class:`IStorageRestoreable`, :class:`IStorageCurrentRecordIteration`,
   :class:`ReadVerifyingStorage`, :class:`IExternalGC`. A storage calls
   back into :class:`IStorageWrapper`.
2. The core: :class:`IDatabase` and :class:`IConnection`.
3. Immutables and revisions (shoobx.immutable's): ``IImmutable``,
   ``IImmutableObject``, ``IRevisionedImmutable``,
   ``IRevisionedImmutableManager`` and the ``IM_*`` constants.

The other fronts (pools, nodes, watched values) add theirs later.
These are objstore's interface objects, not ZODB's; ``objstore.zodb.adapt``
declares ZODB's for code that checks those.

Terms. An *oid* is 8 bytes, an unsigned big-endian integer; ``z64`` (eight
zero bytes) is the root's. A *tid* is the 8 raw bytes of a
``persistent.TimeStamp``: tids compare as bytes in commit order and map to
the UTC time of the commit; ``z64`` means "no transaction yet" and
``maxtid`` is above every tid. A revision's *serial* is the tid that wrote
it. A *record* is a revision's bytes in ZODB's format
(``objstore.serialize``), opaque to storages except through the functions
they are handed (``referencesf``, ``objstore.conflict``). A *deletion
record* has data None: the object does not exist from that transaction on
(undo of its creation, ``IExternalGC.deleteObject``); loading it raises
``POSKeyError``, iteration yields it. Exceptions named below are those of
``objstore.errors``.

The declarations live in submodules by layer (``storage``, ``core``,
``immutable``); import them from here.
"""
from objstore.interfaces.core import IConnection, IDatabase
from objstore.interfaces.immutable import (
    IM_MODE_MASTER, IM_MODE_SLAVE, IM_MODES, IM_STATE_DELETED,
    IM_STATE_LOCKED, IM_STATE_RETIRED, IM_STATE_TRANSIENT, IM_STATES,
    IM_STATES_OUTDATED, IM_STATES_REVISIONED, IMMUTABLE_TYPES, IImmutable,
    IImmutableObject, IRevisionedImmutable, IRevisionedImmutableManager)
from objstore.interfaces.storage import (
    IExternalGC, IHistoryWindow, IMVCCStorage, IStorage,
    IStorageCurrentRecordIteration, IStorageIteration,
    IStorageRecordInformation, IStorageRestoreable,
    IStorageTransactionInformation, IStorageUndoable, IStorageWrapper,
    ReadVerifyingStorage)

__all__ = [
    # the storage protocol
    'IStorageWrapper', 'IStorage', 'IMVCCStorage', 'IStorageIteration',
    'IStorageTransactionInformation', 'IStorageRecordInformation',
    'IStorageUndoable', 'IStorageRestoreable',
    'IStorageCurrentRecordIteration', 'ReadVerifyingStorage', 'IExternalGC',
    'IHistoryWindow',
    # the core
    'IDatabase', 'IConnection',
    # immutables and revisions
    'IImmutable', 'IImmutableObject', 'IRevisionedImmutableManager',
    'IRevisionedImmutable',
    'IM_MODE_MASTER', 'IM_MODE_SLAVE', 'IM_MODES', 'IM_STATE_LOCKED',
    'IM_STATE_TRANSIENT', 'IM_STATE_RETIRED', 'IM_STATE_DELETED',
    'IM_STATES', 'IM_STATES_REVISIONED', 'IM_STATES_OUTDATED',
    'IMMUTABLE_TYPES',
]
