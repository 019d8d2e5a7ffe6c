"""A persistent container of named revision histories, indexed in BTrees.

:class:`RevisionedContainer` is a mapping of names to the current revision
of each name's history, and the
:class:`~objstore.interfaces.IRevisionedImmutableManager` of every revision
in it. Each revision is a persistent object of its own,
referenced from a few BTrees:

* ``(name, version) -> revision``: the history of a name, in order;
* ``(name, start) -> version``: start times, for ``startBefore`` and
  ``startAfter``;
* ``(name, creator, n) -> revision`` and ``(name, creator, version) -> n``:
  the revisions of one creator (the n-th of that creator in the history);
* ``name -> history`` (its newest revision and size) for every name, for
  the live names and for the deleted ones. These values never change, so
  transactions that change different names merge their BTree buckets,
  while every change to one history writes its history record, which
  does not merge: two changes of one history conflict.

Versions run 0, 1, 2... within a history without gaps (a rollback cuts the
tail), and so do the creator ordinals ``n``: a batch is found by arithmetic
and one range search, so a history query with any filters costs O(log n +
k) for a batch of k, however long the history or the container. The
exception is ``comment``, a substring filter no BTree can index: it is
checked on the revisions the other filters select, from the start of the
selection until the batch is full.

Compared with ``objstore.SimpleRevisionedImmutableManager`` (one history
in a tuple, queries scan it), this suits long histories and many names; it
writes a few BTree buckets per revision.
"""
import collections.abc
import datetime
import heapq
import itertools

import persistent
from BTrees.Length import Length
from BTrees.OOBTree import OOBTree
from zope.interface import implementer

from objstore import errors
from objstore import interfaces

__all__ = ['RevisionedContainer']

LOCKED = interfaces.IM_STATE_LOCKED
RETIRED = interfaces.IM_STATE_RETIRED
DELETED = interfaces.IM_STATE_DELETED
MASTER = interfaces.IM_MODE_MASTER

_ONE_TICK = datetime.timedelta(microseconds=1)
# Reversed batches are read forward in chunks of this many keys, since a
# BTree range can only be walked forward cheaply.
_CHUNK = 64


def _utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def _check_text(what, value):
    if value is not None and not isinstance(value, str):
        raise errors.InvalidArgumentError(
            '%s must be a str or None, not %s %r'
            % (what, type(value).__name__, value))


def _check_moment(what, value):
    if value is not None and not (
            isinstance(value, datetime.datetime)
            and value.utcoffset() is not None):
        raise errors.InvalidArgumentError(
            '%s must be a timezone-aware datetime or None, got %r'
            % (what, value))


def _check_name(name):
    # Names share BTree keys, where a str cannot be compared with others.
    if not isinstance(name, str):
        raise errors.InvalidArgumentError(
            'names in a RevisionedContainer are str, not %s %r'
            % (type(name).__name__, name))


def _check_count(what, value, allow_none=False):
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise errors.InvalidArgumentError(
            '%s must be an int of 0 or more, got %r' % (what, value))


def _range_values(tree, prefix, lo, hi, backwards):
    """The values of ``tree`` at ``prefix + (i,)`` for i from lo to hi
    (inclusive), lazily, in that order or backwards."""
    if not backwards:
        yield from tree.values(prefix + (lo,), prefix + (hi,))
        return
    while hi >= lo:
        first = max(lo, hi - _CHUNK + 1)
        yield from list(tree.values(prefix + (first,), prefix + (hi,)))[::-1]
        hi = first - 1


class _History(persistent.Persistent):
    """What the container knows of one name's history as a whole.

    Every change to a history writes this record, and it has no conflict
    resolution: two transactions that change the same history (update the
    same revision, delete it, roll back) conflict, where merging their
    BTree buckets would fork the history.
    """

    def __init__(self, newest):
        self.newest = newest
        self.size = 1


@implementer(interfaces.IRevisionedImmutableManager)
class RevisionedContainer(persistent.Persistent,
                          collections.abc.MutableMapping):
    """Named revision histories with indexed queries.

    As a mapping: names (str) to current revisions, in name order; a
    deleted name is hidden (``withDeletedItems()`` shows it).
    ``container[name] = obj`` starts the history of ``name`` with the
    locked revisioned immutable ``obj`` (version 0), or, when ``name``
    already has a history, adds ``obj`` as its next revision: a name keeps
    one history, so no revision is ever dropped and ``(name, version)``
    stays unique. ``del container[name]`` marks the current revision
    deleted; every revision stays in the history.

    The query methods take ``obj``, the history's name or any revision of
    it; unknown ones raise KeyError. Revisions carry their name in
    ``__name__`` and this container in ``__im_manager__``, so
    ``update(revision)`` adds the next revision here.
    """

    def __init__(self):
        self._histories = OOBTree()
        self._revisions = OOBTree()
        self._starts = OOBTree()
        self._by_creator = OOBTree()
        self._creator_ordinals = OOBTree()
        self._live = OOBTree()
        self._deleted = OOBTree()
        self._live_count = Length()
        self._deleted_count = Length()

    def __repr__(self):
        return '<%s with %d names>' % (type(self).__name__, len(self))

    # -- the mapping ------------------------------------------------------

    def __getitem__(self, name):
        if not isinstance(name, str):
            raise KeyError(name)
        return self._live[name].newest

    def __contains__(self, name):
        return isinstance(name, str) and name in self._live

    def __iter__(self):
        return iter(self._live.keys())

    def __len__(self):
        return self._live_count()

    def __setitem__(self, name, obj):
        _check_name(name)
        self._add(name, obj)

    def __delitem__(self, name):
        current = self[name]
        history = self._live[name]
        current.__im_end_on__ = self._next_moment(current)
        current.__im_set_state__(DELETED)
        history._p_changed = True
        self._place(name, history)

    # shoobx.immutable's name (ImmutableContainer), part of its API.
    def withDeletedItems(self):
        """Return a view of this container whose mapping also holds the
        names whose newest revision is deleted (that revision as value).
        Everything else, writes included, goes to this container."""
        return _WithDeletedItems(self)

    # -- IRevisionedImmutableManager --------------------------------------
    # The camelCase names below are the protocol's (shoobx.immutable's).

    def getCurrentRevision(self, obj):
        """Return the current (locked) revision of ``obj``'s history, or
        None when its newest revision is deleted or retired."""
        history = self._live.get(self._name_of(obj))
        return None if history is None else history.newest

    def getNumberOfRevisions(self, obj):
        """Return the number of revisions in ``obj``'s history."""
        return self._histories[self._name_of(obj)].size

    def getRevision(self, name, version):
        """Return revision ``version`` of ``name``'s history; KeyError if
        there is none."""
        _check_name(name)
        _check_count('version', version)
        try:
            return self._revisions[(name, version)]
        except KeyError:
            raise KeyError((name, version)) from None

    def getRevisionHistory(
            self, obj, creator=None, comment=None,
            startBefore=None, startAfter=None,
            batchStart=0, batchSize=None, reversed=False):
        """Return an iterator over revisions of ``obj``'s history, oldest
        first (newest first with ``reversed``).

        ``creator`` must equal the revision's, ``comment`` be a substring
        of it; ``startBefore``/``startAfter`` are exclusive bounds on
        ``__im_start_on__`` (aware datetimes). The batch (``batchStart``,
        ``batchSize``) is cut from the filtered, ordered revisions. Costs
        O(log n + k) for k revisions returned; with ``comment``, k counts
        the revisions the other filters select up to the end of the batch.
        """
        name = self._name_of(obj)
        _check_text('creator', creator)
        _check_text('comment', comment)
        _check_moment('startBefore', startBefore)
        _check_moment('startAfter', startAfter)
        _check_count('batchStart', batchStart)
        _check_count('batchSize', batchSize, allow_none=True)
        lo, hi = self._version_range(name, startAfter, startBefore)
        if creator is None:
            tree, prefix = self._revisions, (name,)
        else:
            tree, prefix = self._by_creator, (name, creator)
            if startAfter is None and startBefore is None:
                lo, hi = 0, self._creator_count(name, creator) - 1
            else:
                lo, hi = self._creator_range(name, creator, lo, hi)
        if comment is not None:
            # A revision without a comment matches no comment filter.
            matching = (
                r for r in _range_values(tree, prefix, lo, hi, reversed)
                if r.__im_comment__ is not None
                and comment in r.__im_comment__)
            end = None if batchSize is None else batchStart + batchSize
            return iter(list(itertools.islice(matching, batchStart, end)))
        if reversed:
            hi -= batchStart
            if batchSize is not None:
                lo = max(lo, hi - batchSize + 1)
        else:
            lo += batchStart
            if batchSize is not None:
                hi = min(hi, lo + batchSize - 1)
        return iter(list(_range_values(tree, prefix, lo, hi, reversed)))

    def addRevision(self, new, old=None):
        """Add the locked revision ``new`` to a history and make it current.

        With ``old`` (what ``update()`` passes), ``new`` follows ``old``,
        which must be the current revision of its history here, else
        ImmutableStateError: the history never forks. Without ``old``,
        ``new.__name__`` names the history: ``new`` starts it or, retiring
        the current revision if any, continues it. ``new`` gets its name,
        the next version, a UTC start time later than any before it in the
        history, and this container as manager; the revision it follows is
        retired, its ``__im_end_on__`` equal to that start.
        """
        if old is None:
            name = getattr(new, '__name__', None)
            if not isinstance(name, str):
                raise errors.InvalidArgumentError(
                    'addRevision() without old needs the name of the history'
                    ' in new.__name__ (a str); %s has %r; or use'
                    ' container[name] = obj' % (type(new).__name__, name))
        else:
            name = self._name_of(old)
            if self.getCurrentRevision(name) is not old:
                raise errors.ImmutableStateError(
                    'Cannot add a revision after version %s of %r: it is not'
                    ' the current revision of its history (%s).'
                    % (old.__im_version__, name, old.__im_state__))
        self._add(name, new)

    def rollbackToRevision(self, revision, activate=True):
        """Make ``revision`` the newest revision of its history.

        The revisions after it leave the history and every index (they stay
        readable through ``db.open(at=...)`` until a pack); the current one
        among them is retired. With ``activate``, ``revision`` becomes
        current again (locked, ``__im_end_on__`` None), which revives a
        deleted one. Raises KeyError if it is not in this container.
        """
        name = self._name_of(revision)
        version = revision.__im_version__
        if self._revisions.get((name, version)) is not revision:
            raise KeyError(revision)
        history = self._histories[name]
        newest = history.newest
        if newest is not revision:
            if newest.__im_state__ == LOCKED:
                newest.__im_end_on__ = self._next_moment(newest)
                newest.__im_set_state__(RETIRED)
            for gone in range(version + 1, history.size):
                self._unindex(name, self._revisions[(name, gone)])
        history.newest = revision
        history.size = version + 1
        if activate:
            revision.__im_end_on__ = None
            revision.__im_set_state__(LOCKED)
        self._place(name, history)

    # -- inside -------------------------------------------------------------

    def _name_of(self, obj):
        """The name of the history ``obj`` (a name or a revision) names;
        KeyError if it is not one of this container's."""
        if isinstance(obj, str):
            name = obj
        else:
            name = getattr(obj, '__name__', None)
            if (getattr(obj, '__im_manager__', None) is not self
                    or not isinstance(name, str)):
                raise KeyError(obj)
        if name not in self._histories:
            raise KeyError(name)
        return name

    def _check_new(self, new):
        if not interfaces.IRevisionedImmutable.providedBy(new):
            raise errors.InvalidArgumentError(
                'A %s holds revisioned immutables, not %s'
                % (type(self).__name__, type(new).__name__))
        if new.__im_state__ != LOCKED:
            raise errors.ImmutableStateError(
                'Only a locked revision can be added to a history; this %s'
                ' is %s.' % (type(new).__name__, new.__im_state__))
        if new.__im_mode__ != MASTER:
            raise errors.InvalidArgumentError(
                'This %s is a sub-object of another immutable; only a master'
                ' can be a revision.' % type(new).__name__)
        if new.__im_manager__ is not None and new.__im_start_on__ is not None:
            raise errors.InvalidArgumentError(
                'This %s is a revision of a history already (%r version %s);'
                ' add a new object or an update() of it.'
                % (type(new).__name__, getattr(new, '__name__', None),
                   new.__im_version__))
        _check_text('creator', new.__im_creator__)
        _check_text('comment', new.__im_comment__)

    def _next_moment(self, newest):
        """Now (UTC), but later than anything recorded of ``newest``, so
        start times strictly increase within a history even when the clock
        is coarse or steps back."""
        now = _utc_now()
        for known in (newest.__im_start_on__, newest.__im_end_on__):
            if known is not None and now <= known:
                now = known + _ONE_TICK
        return now

    def _add(self, name, new):
        self._check_new(new)
        history = self._histories.get(name)
        if history is None:
            start, version = _utc_now(), 0
        else:
            newest = history.newest
            start, version = self._next_moment(newest), history.size
            if newest.__im_state__ == LOCKED:
                newest.__im_end_on__ = start
                newest.__im_set_state__(RETIRED)
        new.__name__ = name
        new.__im_version__ = version
        new.__im_start_on__ = start
        new.__im_end_on__ = None
        new.__im_manager__ = self
        if history is None:
            history = self._histories[name] = _History(new)
        else:
            history.newest = new
            history.size = version + 1
        self._index(name, new)
        self._place(name, history)

    def _index(self, name, revision):
        version = revision.__im_version__
        self._revisions[(name, version)] = revision
        self._starts[(name, revision.__im_start_on__)] = version
        creator = revision.__im_creator__
        # A creator filter of None means no filter, so revisions without a
        # creator need no entry (and None never meets a str in a key).
        if creator is not None:
            ordinal = self._creator_count(name, creator)
            self._by_creator[(name, creator, ordinal)] = revision
            self._creator_ordinals[(name, creator, version)] = ordinal

    def _unindex(self, name, revision):
        version = revision.__im_version__
        del self._revisions[(name, version)]
        del self._starts[(name, revision.__im_start_on__)]
        creator = revision.__im_creator__
        if creator is not None:
            ordinal = self._creator_ordinals.pop((name, creator, version))
            del self._by_creator[(name, creator, ordinal)]

    def _creator_count(self, name, creator):
        """How many revisions of ``name``'s history ``creator`` made."""
        try:
            key = self._by_creator.maxKey((name, creator, float('inf')))
        except ValueError:
            return 0
        return key[2] + 1 if key[:2] == (name, creator) else 0

    def _place(self, name, history):
        """Show ``name`` among the live or the deleted names, or neither,
        as the state of its newest revision says."""
        state = history.newest.__im_state__
        for shown, tree, count in ((LOCKED, self._live, self._live_count),
                                   (DELETED, self._deleted,
                                    self._deleted_count)):
            present = name in tree
            if state == shown and not present:
                tree[name] = history
                count.change(1)
            elif state != shown and present:
                del tree[name]
                count.change(-1)

    def _version_range(self, name, after, before):
        """Versions (lo, hi) of ``name``'s revisions starting after
        ``after`` and before ``before``; lo > hi when there are none."""
        lo, hi = 0, self._histories[name].size - 1
        starts = self._starts
        try:
            if after is not None:
                key = starts.minKey((name, after))
                lo = (starts[key] + (1 if key[1] == after else 0)
                      if key[0] == name else hi + 1)
            if before is not None:
                key = starts.maxKey((name, before))
                hi = (starts[key] - (1 if key[1] == before else 0)
                      if key[0] == name else -1)
        except ValueError:
            # No key at all on that side of the bound.
            return 1, 0
        return lo, hi

    def _creator_range(self, name, creator, lo, hi):
        """Ordinals (first, last) of ``creator``'s revisions among versions
        lo to hi of ``name``'s history; first > last when there are none."""
        if lo > hi:
            return 1, 0
        prefix = (name, creator)
        ordinals = self._creator_ordinals
        try:
            first = ordinals.minKey(prefix + (lo,))
        except ValueError:
            return 1, 0
        if first[:2] != prefix or first[2] > hi:
            return 1, 0
        # first is in the range, so the last key up to hi is too.
        last = ordinals.maxKey(prefix + (hi,))
        return ordinals[first], ordinals[last]


@implementer(interfaces.IRevisionedImmutableManager)
class _WithDeletedItems(collections.abc.MutableMapping):
    """A ``RevisionedContainer`` whose mapping also shows deleted names;
    not persistent, made by ``withDeletedItems()``."""

    def __init__(self, container):
        self._container = container

    def __repr__(self):
        return '<%r with deleted items>' % (self._container,)

    def __getitem__(self, name):
        if not isinstance(name, str):
            raise KeyError(name)
        history = self._container._live.get(name)
        if history is None:
            history = self._container._deleted[name]
        return history.newest

    def __iter__(self):
        return heapq.merge(self._container._live.keys(),
                           self._container._deleted.keys())

    def __len__(self):
        return (self._container._live_count()
                + self._container._deleted_count())

    def __setitem__(self, name, obj):
        self._container[name] = obj

    def __delitem__(self, name):
        del self._container[name]

    def withDeletedItems(self):
        return self

    def __getattr__(self, name):
        # The manager's methods (getRevisionHistory...) are the container's.
        if name.startswith('_'):
            raise AttributeError(name)
        return getattr(self._container, name)

