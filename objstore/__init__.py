"""objstore: an object database for Python in the style of ZODB.

The public surface, re-exported here:

* :class:`DB` -- a database on a storage or a path;
* :func:`open` -- a DB from a path, a URI (``memory://``, ``file:///...``,
  ``zodb+file:///...`` and the schemes plugins register) or a storage;
* :func:`connection` -- a context manager yielding an open connection;
* shoobx.immutable's API (``import objstore as im``): :func:`create`,
  :func:`update`, :func:`failOnNonTransient`, :class:`ImmutableBase`,
  :class:`Immutable`, :class:`ImmutableDict`, :class:`ImmutableList`,
  :class:`ImmutableSet`, from :mod:`objstore.immutable`; and
  :func:`defaultInfo`, :class:`DefaultRevisionInfo`,
  :class:`RevisionedImmutableBase`, :class:`RevisionedImmutable`,
  :class:`SimpleRevisionedImmutableManager`, :class:`RevisionedMapping`,
  from :mod:`objstore.revisioned`;
* :class:`RevisionedContainer` -- many named revision histories in
  BTrees, from :mod:`objstore.container`;
* :func:`history`, :func:`as_of` and :func:`diff` -- the revisions of any
  persistent object, its past states and structural diffs, from
  :mod:`objstore.timeline`.

The storages live in :mod:`objstore.storages`, their contracts in
:mod:`objstore.interfaces` and the exceptions in :mod:`objstore.errors`.
objstore never imports ZODB unless a ZODB storage is used.
"""
# objstore.db imports the submodule objstore.connection, and importing a
# submodule binds its name in this package. It must come first, so that
# the function objstore.connection, bound after it, is what the name means.
from objstore.db import DB
from objstore.uri import connection, open  # noqa: A004 -- objstore.open
from objstore import interfaces  # noqa: F401 -- im.interfaces.IM_STATE_*
from objstore.immutable import (
    Immutable, ImmutableBase, ImmutableDict, ImmutableList, ImmutableSet,
    create, failOnNonTransient, update)
from objstore import revisioned  # noqa: F401 -- im.revisioned
from objstore.revisioned import (
    DefaultRevisionInfo, RevisionedImmutable, RevisionedImmutableBase,
    RevisionedMapping, SimpleRevisionedImmutableManager, defaultInfo)
from objstore.container import RevisionedContainer
from objstore.timeline import as_of, diff, history

__all__ = [
    'DB', 'open', 'connection',
    'create', 'update', 'failOnNonTransient', 'ImmutableBase', 'Immutable',
    'ImmutableDict', 'ImmutableList', 'ImmutableSet',
    'defaultInfo', 'DefaultRevisionInfo', 'RevisionedImmutableBase',
    'RevisionedImmutable', 'SimpleRevisionedImmutableManager',
    'RevisionedMapping', 'RevisionedContainer',
    'history', 'as_of', 'diff',
]
