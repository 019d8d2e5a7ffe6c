"""Revisioned immutables and a simple revision manager (shoobx.immutable).

A revisioned immutable is an :class:`~objstore.immutable.Immutable` that
knows its place in a history: ``__im_version__``, who made it
(``__im_creator__``), why (``__im_comment__``), and when it was active
(``__im_start_on__`` to ``__im_end_on__``, UTC-aware datetimes). Each
:func:`~objstore.immutable.update` of a revision that has a manager adds
the clone to the manager's history and retires the old revision.

:class:`SimpleRevisionedImmutableManager` keeps one history in a persistent
tuple: filters scan it, so it suits short histories; every revision is a
persistent object of its own and is shared, never copied. The camelCase
method names are shoobx.immutable's API, kept so its callers work as they
are.

Compared with shoobx.immutable: :func:`defaultInfo` lives in a context
variable, so threads and asyncio tasks each see their own, and
``create()`` honours it as ``update()`` does; ``rollbackToRevision`` keeps
exactly the revisions up to the one given, however far back; an unknown
revision raises ``KeyError``; timestamps are UTC-aware and strictly
increasing within a history.
"""
import collections.abc
import contextlib
import contextvars
import datetime

import persistent
from BTrees.OOBTree import OOBTree
from zope.interface import implementer

from objstore import errors
from objstore import interfaces
from objstore.immutable import Immutable

__all__ = [
    'defaultInfo', 'DefaultRevisionInfo', 'RevisionedImmutableBase',
    'RevisionedImmutable', 'SimpleRevisionedImmutableManager',
    'RevisionedMapping',
]

LOCKED = interfaces.IM_STATE_LOCKED
RETIRED = interfaces.IM_STATE_RETIRED
DELETED = interfaces.IM_STATE_DELETED

_ONE_TICK = datetime.timedelta(microseconds=1)


class DefaultRevisionInfo:
    """The creator and comment a new revision gets when none is given.

    Values, never changed in place: :func:`defaultInfo` makes a new one for
    its block.
    """

    __slots__ = ('creator', 'comment')

    def __init__(self, creator=None, comment=None):
        self.creator = creator
        self.comment = comment

    def __repr__(self):
        return '<DefaultRevisionInfo creator=%r comment=%r>' % (
            self.creator, self.comment)


_default_info = contextvars.ContextVar(
    'objstore_default_revision_info', default=DefaultRevisionInfo())


def current_default_info():
    """Return the :class:`DefaultRevisionInfo` in force here and now."""
    return _default_info.get()


# shoobx.immutable's name, part of its public API.
class defaultInfo(contextlib.ContextDecorator):
    """Set the default creator and comment of revisions made in a block.

    A context manager (``with defaultInfo('arthur', 'fix'):``) yielding the
    :class:`DefaultRevisionInfo` in force, and a decorator
    (``@defaultInfo('arthur')``). Blocks nest: a value left None is taken
    from the enclosing block. The value lives in a context variable, so
    each thread and each asyncio task sees only the blocks it entered.
    """

    def __init__(self, creator=None, comment=None):
        self.creator = creator
        self.comment = comment
        self._tokens = []

    def _recreate_cm(self):
        # A decorated function may run in several threads or tasks at
        # once, or recursively: each call gets its own token stack.
        return type(self)(self.creator, self.comment)

    def __enter__(self):
        outer = _default_info.get()
        info = DefaultRevisionInfo(
            outer.creator if self.creator is None else self.creator,
            outer.comment if self.comment is None else self.comment)
        self._tokens.append(_default_info.set(info))
        return info

    def __exit__(self, *exc_info):
        _default_info.reset(self._tokens.pop())
        return False


def _utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


@implementer(interfaces.IRevisionedImmutable)
class RevisionedImmutableBase(Immutable):
    """An immutable that is one revision in a history.

    ``create(cls, creator=..., comment=...)`` and
    ``update(obj, creator, comment)`` set the creator and comment; left
    None, they come from :func:`defaultInfo`. An update makes a clone with
    the next ``__im_version__`` and, when the revision has a manager, adds
    it there; a managed revision that is not its history's current one
    (retired, deleted, or rolled out of the history) raises
    ImmutableStateError before the update block runs.
    """

    __im_version__ = 0
    __im_start_on__ = None
    __im_end_on__ = None
    __im_creator__ = None
    __im_comment__ = None
    __im_manager__ = None

    def _im_set_info(self, creator, comment):
        info = _default_info.get()
        self.__im_creator__ = info.creator if creator is None else creator
        self.__im_comment__ = info.comment if comment is None else comment

    def __im_after_create__(self, creator=None, comment=None):
        self._im_set_info(creator, comment)

    def __im_before_update__(self, clone, creator=None, comment=None):
        manager = self.__im_manager__
        if (manager is not None
                and manager.getCurrentRevision(self) is not self):
            # A revision rolled out of its history is still locked, yet
            # only the current revision may have a successor; refusing
            # here, before the caller's block runs, spares it work that
            # addRevision would throw away.
            raise errors.ImmutableStateError(
                'Cannot update version %s of %s: it is not the current'
                ' revision of its history.'
                % (self.__im_version__, type(self).__name__))
        clone._im_set_info(creator, comment)
        clone.__im_version__ = self.__im_version__ + 1
        # The clone is not active until its manager adds it.
        clone.__im_start_on__ = None
        clone.__im_end_on__ = None

    def __im_after_update__(self, clone, creator=None, comment=None):
        if self.__im_manager__ is not None:
            self.__im_manager__.addRevision(clone, old=self)


class RevisionedImmutable(RevisionedImmutableBase):
    """Base class of application revisioned immutables."""


@implementer(interfaces.IRevisionedImmutableManager)
class SimpleRevisionedImmutableManager(persistent.Persistent):
    """One revision history, oldest first, stored as a persistent tuple.

    The ``obj`` argument of the query methods is accepted for the
    interface's sake and ignored: a manager holds a single history.
    Method names are shoobx.immutable's (camelCase) API.
    """

    def __init__(self):
        self._revisions = ()

    def _now(self):
        # Strictly increasing within the history, so that start times
        # order revisions even when the clock is coarse or steps back.
        now = _utc_now()
        if self._revisions:
            last = self._revisions[-1].__im_start_on__
            if last is not None and now <= last:
                now = last + _ONE_TICK
        return now

    def _index(self, revision):
        for index, candidate in enumerate(self._revisions):
            if candidate is revision:
                return index
        raise KeyError(revision)

    def getCurrentRevision(self, obj=None):
        """Return the active (locked) newest revision, or None when the
        history is empty or its newest revision is retired or deleted."""
        if self._revisions and self._revisions[-1].__im_state__ == LOCKED:
            return self._revisions[-1]
        return None

    def getNumberOfRevisions(self, obj=None):
        """Return the number of revisions in the history."""
        return len(self._revisions)

    def getRevisionHistory(
            self, obj=None, creator=None, comment=None,
            startBefore=None, startAfter=None,
            batchStart=0, batchSize=None, reversed=False):
        """Return an iterator over the revisions, oldest first.

        ``creator`` must equal, ``comment`` be a substring of the
        revision's; ``startBefore``/``startAfter`` are exclusive bounds on
        ``__im_start_on__``. ``reversed`` puts the newest first; the batch
        (``batchStart``, ``batchSize``) is cut from that order.
        """
        result = list(self._revisions)
        if creator is not None:
            result = [r for r in result if r.__im_creator__ == creator]
        if comment is not None:
            result = [r for r in result
                      if r.__im_comment__ is not None
                      and comment in r.__im_comment__]
        if startBefore is not None:
            result = [r for r in result
                      if r.__im_start_on__ is not None
                      and r.__im_start_on__ < startBefore]
        if startAfter is not None:
            result = [r for r in result
                      if r.__im_start_on__ is not None
                      and r.__im_start_on__ > startAfter]
        if reversed:
            result.reverse()
        if batchStart < 0 or (batchSize is not None and batchSize < 0):
            raise errors.InvalidArgumentError(
                'batchStart and batchSize must not be negative, got %r and'
                ' %r' % (batchStart, batchSize))
        end = None if batchSize is None else batchStart + batchSize
        return iter(result[batchStart:end])

    def addRevision(self, new, old=None):
        """Append the locked revision ``new`` and make it current.

        ``new`` gets ``__im_start_on__`` (now, UTC) and this manager. The
        revision that was current (``old``, when given, must be it) is
        retired, its ``__im_end_on__`` equal to the new start. Raises
        ImmutableStateError if ``new`` is not locked or ``old`` is not the
        current revision (that would fork the history), and
        InvalidArgumentError if ``new`` is in the history already.
        """
        if new.__im_state__ != LOCKED:
            raise errors.ImmutableStateError(
                'Only a locked revision can be added to a history; this %s'
                ' is %s.' % (type(new).__name__, new.__im_state__))
        if any(r is new for r in self._revisions):
            raise errors.InvalidArgumentError(
                'This %s is in the history already (version %s).'
                % (type(new).__name__, new.__im_version__))
        current = self.getCurrentRevision()
        if old is not None and old is not current:
            raise errors.ImmutableStateError(
                'Cannot add a revision after version %s of %s: it is not the'
                ' current revision of its history.'
                % (old.__im_version__, type(old).__name__))
        now = self._now()
        if current is not None:
            current.__im_end_on__ = now
            current.__im_set_state__(RETIRED)
        new.__im_start_on__ = now
        new.__im_end_on__ = None
        new.__im_manager__ = self
        self._revisions += (new,)

    def rollbackToRevision(self, revision, activate=True):
        """Make ``revision`` the newest revision of the history.

        The revisions after it leave the history; with ``activate`` it
        becomes current again (locked, ``__im_end_on__`` None), which also
        revives a deleted one. The revision that was current, if it leaves
        the history, is retired (as RevisionedContainer does), so it cannot
        be updated again. Raises KeyError if ``revision`` is not in the
        history.
        """
        index = self._index(revision)
        removed = self._revisions[index + 1:]
        current = self.getCurrentRevision()
        if current is not None and any(r is current for r in removed):
            current.__im_end_on__ = self._now()
            current.__im_set_state__(RETIRED)
        self._revisions = self._revisions[:index + 1]
        if activate:
            revision.__im_end_on__ = None
            revision.__im_set_state__(LOCKED)

    def _delete_current(self):
        """Mark the current revision deleted; the history keeps it."""
        current = self.getCurrentRevision()
        if current is None:
            raise KeyError('no current revision to delete')
        current.__im_end_on__ = self._now()
        current.__im_set_state__(DELETED)


class RevisionedMapping(persistent.Persistent, collections.abc.MutableMapping):
    """Named revision histories: a persistent mapping of name to the
    current revision, one :class:`SimpleRevisionedImmutableManager` each.

    ``mapping[name] = obj`` starts a new history for ``name``;
    ``del mapping[name]`` marks its current revision deleted and hides the
    name, but the history stays with :meth:`getRevisionManager`, and
    ``rollbackToRevision(revision)`` there revives it.
    """

    def __init__(self):
        self._managers = OOBTree()

    # shoobx.immutable's name, part of its public API.
    def getRevisionManager(self, key):
        """Return the manager of ``key``'s history (deleted ones too);
        KeyError if there is none."""
        return self._managers[key]

    def __getitem__(self, key):
        current = self._managers[key].getCurrentRevision()
        if current is None:
            raise KeyError(key)
        return current

    def __iter__(self):
        for key, manager in self._managers.items():
            if manager.getCurrentRevision() is not None:
                yield key

    def __len__(self):
        return sum(1 for _ in self)

    def __setitem__(self, key, value):
        manager = SimpleRevisionedImmutableManager()
        manager.addRevision(value)
        self._managers[key] = manager

    def __delitem__(self, key):
        try:
            self._managers[key]._delete_current()
        except KeyError:
            raise KeyError(key) from None
