"""The contracts of immutables and revisions (shoobx.immutable's API)."""
import datetime
import decimal
import enum

from zope.interface import Attribute
from zope.interface import Interface


# Immutables and revisions -------------------------------------------------
# The values and the dunder names are shoobx.immutable's, so that code and
# stored states written against it keep working; getRevisionHistory and the
# other camelCase names are its API too.

IM_MODE_MASTER = 'master'
IM_MODE_SLAVE = 'slave'
IM_MODES = (IM_MODE_MASTER, IM_MODE_SLAVE)

IM_STATE_LOCKED = 'locked'
IM_STATE_TRANSIENT = 'transient'
IM_STATES = (IM_STATE_LOCKED, IM_STATE_TRANSIENT)

IM_STATE_RETIRED = 'retired'
IM_STATE_DELETED = 'deleted'
IM_STATES_REVISIONED = (
    IM_STATE_LOCKED, IM_STATE_TRANSIENT, IM_STATE_RETIRED, IM_STATE_DELETED)
IM_STATES_OUTDATED = (IM_STATE_DELETED, IM_STATE_RETIRED)

#: Values an immutable keeps as they are. Tuples are checked item by item
#: (a tuple may hold a list); frozensets are accepted too when every item
#: is one of these.
IMMUTABLE_TYPES = (
    bool, int, float, complex, decimal.Decimal, tuple, str, bytes,
    type(None), datetime.date, datetime.time, datetime.datetime,
    datetime.timedelta, datetime.tzinfo, enum.Enum,
)


class IImmutable(Interface):
    """An object whose data cannot change once it is locked.

    States: an immutable is *transient* while it is being built (inside
    ``create()`` or ``update()``), then *locked* for good; revisioned ones
    may later be *retired* or *deleted*. Only a transient immutable takes
    writes: on any other, setting or deleting an attribute or item, in-place
    operators and mutating methods raise ``AttributeError`` with the message
    ``Cannot update locked immutable object.``. A locked immutable never
    becomes transient again; changes are made on a transient clone::

        with obj.__im_update__() as clone:   # obj is untouched
            clone.attr = value                # clone is locked on exit

    Modes: the root of a tree of immutables is the *master*; every immutable
    inside it (attribute, item, member) is a *slave* of it and shares its
    state. Only a master may be updated (else ``AttributeError``:
    ``update() is only available for master immutables.``). A slave cannot
    be put into another place (``ValueError``): each sub-object has one
    parent. A locked master put into an immutable is cloned; a transient
    one is adopted.

    Values are conformed on the way in: the ``IMMUTABLE_TYPES`` are kept,
    lists, dicts and sets become ``ImmutableList``, ``ImmutableDict`` and
    ``ImmutableSet``, an object with ``__im_get__(mode=...)`` supplies its
    own immutable; anything else raises ``ValueError``.

    Internal attributes (``__im_is_internal_attr__``: dunder names) stay
    writable in any state, except ``__im_state__`` (only through
    ``__im_set_state__``) and ``__im_mode__`` (only while transient).
    """

    __im_mode__ = Attribute(
        "IM_MODE_MASTER or IM_MODE_SLAVE; master unless made a sub-object.")

    __im_state__ = Attribute(
        "One of IM_STATES (IM_STATES_REVISIONED for revisioned immutables);"
        " transient until finalized.")

    def __im_conform__(object):
        """Return the immutable form of ``object``, to be kept as a slave.

        Core immutables come back as they are; an immutable comes back in
        slave mode and transient (itself if it was transient, else a
        clone). Raises ``ValueError`` if ``object`` cannot be conformed or
        is already another immutable's slave.
        """

    def __im_clone__():
        """Return a transient clone holding transient clones of sub-objects."""

    def __im_set_state__(state):
        """Set ``state`` on this object and every immutable sub-object.

        A non-transient object cannot be set back to transient
        (``RuntimeError``); an unknown state raises ``ValueError``.
        """

    def __im_finalize__():
        """Lock this object and its sub-objects; ``RuntimeError`` unless
        it is transient."""

    def __im_create__(mode=None, finalize=True, *create_args, **create_kw):
        """Classmethod: a context manager yielding a factory of the class.

        Objects the factory makes are set to ``mode`` (when given) and,
        when ``finalize`` is true, locked when the block ends.
        ``create_args``/``create_kw`` go to ``__im_after_create__``.
        """

    def __im_after_create__(*args, **kw):
        """Hook: called by the factory right after ``__init__``, while the
        new object is still transient."""

    def __im_before_update__(clone):
        """Hook: called by ``__im_update__`` once the transient ``clone``
        exists, before the block runs."""

    def __im_after_update__(clone):
        """Hook: called by ``__im_update__`` after the block, once
        ``clone`` is locked."""

    def __im_update__():
        """Return a context manager yielding an object to change.

        A transient object yields itself. A locked master yields a
        transient clone, locked when the block ends without an error.
        """

    def __im_is_internal_attr__(name):
        """Return True if attribute ``name`` is bookkeeping, not data."""

    def __setattr__(name, value):
        """Set a data attribute (transient only) to ``value`` conformed."""


class IImmutableObject(IImmutable):
    """A general immutable class, as opposed to the collections."""


class IRevisionedImmutableManager(Interface):
    """Keeps the revision history of revisioned immutables.

    How a manager identifies the object a revision belongs to is its own
    business (a name attribute, a key of a container).
    """

    def getCurrentRevision(obj):
        """Return the active revision of ``obj``'s history, or None."""

    def getNumberOfRevisions(obj):
        """Return the number of revisions in ``obj``'s history."""

    def getRevisionHistory(
            obj, creator=None, comment=None, startBefore=None,
            startAfter=None, batchStart=0, batchSize=None, reversed=False):
        """Return an iterable of ``obj``'s revisions, oldest first.

        Filters: ``creator`` equal, ``comment`` a substring,
        ``startBefore``/``startAfter`` bounds on ``__im_start_on__``.
        ``reversed`` lists the newest first; ``batchStart``/``batchSize``
        then cut a batch out of the result.
        """

    def addRevision(new, old=None):
        """Append the locked revision ``new`` to a history.

        Sets ``new.__im_start_on__`` (now) and ``new.__im_manager__``. With
        ``old`` None, ``new`` starts a history; otherwise ``old`` is retired
        with ``__im_end_on__`` equal to ``new.__im_start_on__``.
        """

    def rollbackToRevision(revision, activate=True):
        """Make ``revision`` the newest one of its history.

        Raises ``KeyError`` if it is not in the history. Later revisions
        leave the history; with ``activate``, ``revision`` becomes current
        again (locked, ``__im_end_on__`` None).
        """


class IRevisionedImmutable(IImmutable):
    """One revision of an immutable object in its revision history.

    Its ``__im_state__`` is one of ``IM_STATES_REVISIONED``; an outdated one
    (retired, deleted) cannot be updated. With ``__im_manager__`` set, each
    update calls ``__im_manager__.addRevision(clone, old=self)``.
    """

    __im_version__ = Attribute(
        "The revision's number in its history; orders revisions.")

    __im_start_on__ = Attribute(
        "When the revision became active (a UTC-aware datetime).")

    __im_end_on__ = Attribute(
        "When the revision was retired; None while it is active.")

    __im_creator__ = Attribute(
        "Who made the revision (a string the application interprets).")

    __im_comment__ = Attribute("A human-readable comment on the revision.")

    __im_manager__ = Attribute(
        "The IRevisionedImmutableManager told of new revisions, or None.")

    def __im_update__(creator=None, comment=None):
        """Like IImmutable's, and sets creator and comment on the clone."""

    def __im_after_create__(creator=None, comment=None):
        """Hook: sets creator and comment on the new, transient object."""
