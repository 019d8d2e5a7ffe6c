"""The history of any persistent object, its past states, and diffs.

* :func:`history` lists the revisions of one object (newest first), each a
  :class:`Revision`: tid, UTC time, user, description, record size.
* :func:`as_of` returns the object as it was at a tid or moment, read from
  a historical connection (read-only).
* :func:`diff` compares two objects or two states and returns a
  :class:`Diff`: a list of :class:`Change` (path, kind, old, new) that
  prints as one line per change.

They reach back to the last pack on a storage that keeps history (memory,
file); on one that keeps only current states (its ``keep_history`` is
false, as RelStorage's and PostgreSQLStorage(keep_history=False)'s)
:func:`history` and :func:`as_of` raise ``HistoryUnavailable``. A storage
that keeps no history without saying so cannot be told from one whose
objects changed once: it lists one revision.

The historical connection behind an :func:`as_of` copy lives as long as
the objects read through it; it is released when the garbage collector
takes them, by ``copy._p_jar.close()``, or when the database closes. It
only reads, so releasing late loses nothing, but it holds a snapshot: on
storages that pin them (PostgreSQL, pmem), close it in long-running code.
"""
import collections.abc
import dataclasses
import datetime
import sys
import types
import weakref

import transaction as transaction_package

from objstore import errors
from objstore.commit import class_path, describe_tid
from objstore.db import tid_of
from objstore.storages.base import tid_time, z64
from objstore.structdiff import (  # noqa: F401 -- re-exported
    ADDED, ATTRIBUTE, CHANGED, INDEX, KEY, MEMBER, REMOVED, Change, Diff,
    Path, diff)

__all__ = ['Revision', 'Change', 'Diff', 'Path', 'history', 'as_of', 'diff',
           'ADDED', 'REMOVED', 'CHANGED',
           'ATTRIBUTE', 'KEY', 'INDEX', 'MEMBER']


# Every revision: storages take a number, and ZODB's fail on None.
_ALL = sys.maxsize


# -- history -----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Revision:
    """One committed revision of an object.

    ``tid`` (8 bytes) names the transaction; ``time`` is its UTC time (an
    aware datetime); ``user`` and ``description`` are as the transaction
    stored them (``setUser('alice')`` stores ``'/ alice'``, as in ZODB);
    ``size`` is the record's length in bytes; ``extension`` holds the
    transaction's extension items (read-only; not compared).
    """

    tid: bytes
    time: datetime.datetime
    user: str
    description: str
    size: int
    extension: collections.abc.Mapping = dataclasses.field(
        default_factory=dict, compare=False, repr=False)

    def __str__(self):
        return '%s %s %s: %s' % (
            errors.oid_repr(self.tid),
            self.time.strftime('%Y-%m-%d %H:%M:%S.%f UTC'),
            self.user or '-', self.description)


_STANDARD_KEYS = {'tid', 'serial', 'time', 'user_name', 'description',
                  'size', 'version'}


def _revision(entry):
    tid = entry['tid']
    extension = {k: v for k, v in entry.items() if k not in _STANDARD_KEYS}
    return Revision(
        tid, datetime.datetime.fromtimestamp(tid_time(tid),
                                             datetime.timezone.utc),
        entry.get('user_name') or '', entry.get('description') or '',
        entry.get('size', 0), types.MappingProxyType(extension))


def history(obj, since=None, until=None):
    """The revisions of the stored object ``obj``, newest first.

    ``since`` and ``until`` (a tid, an aware datetime or a
    :class:`Revision`) keep the revisions committed in that range, both
    ends included. Lists what the storage holds, which includes commits
    made after ``obj``'s transaction began; for an object of a historical
    connection, only those before its moment. An object added but not yet
    committed has none.

    Raises ``HistoryUnavailable`` when the storage keeps no history, and
    when ``since`` is older than what a pack left of this object's history
    (``oldest`` then says from which tid it is complete).
    """
    oid, db, before = _stored(obj, 'history')
    low = None if since is None else _tid(since, 'since')
    high = None if until is None else _tid(until, 'until')
    _check_keeps_history(db, 'list the revisions of %s' % _describe(obj))
    entries = _entries(db, oid)
    if low is not None and entries:
        _check_window(db, obj, entries[-1]['tid'], low)
    # Tids are 8 big-endian bytes: they compare as they order.
    return [_revision(entry) for entry in entries
            if (before is None or entry['tid'] < before)
            and (high is None or entry['tid'] <= high)
            and (low is None or entry['tid'] >= low)]


def _entries(db, oid):
    """The storage's history of ``oid``; empty when it holds none yet."""
    try:
        return db.history(oid, _ALL)
    except KeyError:
        return []
    except (errors.Unsupported, NotImplementedError, AttributeError) as exc:
        raise errors.HistoryUnavailable(
            '%s keeps no history of its objects (%s: %s)'
            % (db.getName(), type(exc).__name__, exc)) from exc


def _check_window(db, obj, oldest, low):
    """Refuse ``since`` when a pack may have removed revisions after it."""
    history_start = getattr(db.storage, 'history_start', None)
    if history_start is None:
        return
    start = history_start()
    # Pack keeps the revision current at its point and every later one, so
    # what it removed is older than the oldest revision kept -- when that
    # one is at or before the pack point (a later one is a creation).
    if start != z64 and oldest <= start and low < oldest:
        raise errors.HistoryUnavailable(
            '%s holds no history before %s: the revisions of %s before %s'
            ' may be gone, so its history since %s is incomplete'
            % (db.getName(), describe_tid(start), _describe(obj),
               describe_tid(oldest), describe_tid(low)), oldest=oldest)


# -- as_of -------------------------------------------------------------------

def as_of(obj, when):
    """``obj`` as it was right after the last transaction at or before
    ``when`` (a tid, an aware datetime or a :class:`Revision`).

    The copy comes from a new historical connection of ``obj``'s database,
    so it and every object reached from it show that moment, and changing
    them raises ``ReadOnlyHistoryError``. A moment after the last commit
    shows the current state. The connection is released when the copy is
    garbage collected, by ``copy._p_jar.close()``, or when the database
    closes.

    Raises ``HistoryUnavailable`` when the storage keeps no history, when a
    pack removed that moment (``oldest``: the oldest moment it shows), or
    when the object has no revision then (``oldest``: its first one).
    """
    oid, db, _ = _stored(obj, 'as_of')
    moment = _tid(when, 'when')
    _check_keeps_history(db, 'show %s as of %s' % (_describe(obj),
                                                   describe_tid(moment)))
    # A moment in the future would let later commits show through.
    moment = min(moment, db.lastTransaction())
    past = db.open(transaction_package.TransactionManager(), at=moment)
    try:
        copy = past.get(oid)
        copy._p_activate()
    except KeyError as exc:
        past.close()
        raise _no_revision(db, obj, oid, moment) from exc
    except BaseException:
        past.close()
        raise
    # Only reads: releasing late loses nothing (see the module docstring).
    # The connection's storage instance, not the connection, is kept by the
    # finalizer, so it does not keep the connection alive.
    finalizer = weakref.finalize(past, past._storage.release)
    finalizer.atexit = False
    return copy


def _no_revision(db, obj, oid, moment):
    entries = _entries(db, oid)
    if not entries:
        return errors.HistoryUnavailable('%s holds no revision of %s' % (
            db.getName(), _describe(obj)))
    first = entries[-1]['tid']
    # With a history window the moment is inside it (db.open checked), so
    # the first revision kept is the first there was.
    why = ('it was created then' if hasattr(db.storage, 'history_start')
           else 'it was created then, or a pack removed the ones before')
    return errors.HistoryUnavailable(
        '%s has no revision as of %s: its oldest revision is %s (%s)'
        % (_describe(obj), describe_tid(moment), describe_tid(first), why),
        oldest=first)


# -- helpers of history and as_of --------------------------------------------

def _stored(obj, doing):
    """``(oid, db, before)`` of a persistent object attached to a
    connection (``before``: the moment of a historical one, else None)."""
    if not hasattr(obj, '_p_jar'):
        raise TypeError('%s() takes a persistent object, not %s'
                        % (doing, class_path(obj)))
    jar = obj._p_jar
    if jar is None or obj._p_oid is None:
        raise errors.InvalidArgumentError(
            '%s() needs a stored object: %s has no connection yet (add it'
            ' to one and commit)' % (doing, class_path(obj)))
    return obj._p_oid, jar.db(), getattr(jar, 'before', None)


def _check_keeps_history(db, doing):
    keep = getattr(db.storage, 'keep_history', True)
    if not (keep() if callable(keep) else keep):
        raise errors.HistoryUnavailable(
            'cannot %s: %s keeps no history, only the current state of each'
            ' object' % (doing, db.getName()))


def _tid(when, name):
    if isinstance(when, Revision):
        return when.tid
    if isinstance(when, datetime.datetime):
        if when.utcoffset() is None:
            raise errors.InvalidArgumentError(
                '%s=%r is a naive datetime, which could be local time or'
                ' UTC; give an aware one, e.g. datetime.now(timezone.utc)'
                % (name, when))
        return tid_of(when)
    if isinstance(when, bytes) and len(when) == 8:
        return when
    raise TypeError('%s is a tid (8 bytes), an aware datetime or a Revision,'
                    ' not %r' % (name, when))


def _describe(obj):
    return '%s %s' % (class_path(obj), errors.oid_repr(obj._p_oid))
