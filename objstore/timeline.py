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
import difflib
import enum
import reprlib
import sys
import types
import weakref

import transaction as transaction_package
from persistent.wref import WeakRef

from objstore import errors
from objstore.commit import class_path, describe_tid
from objstore.db import tid_of
from objstore.interfaces import IImmutable
from objstore.storages.base import tid_time, z64

__all__ = ['Revision', 'Change', 'Diff', 'Path', 'history', 'as_of', 'diff',
           'ADDED', 'REMOVED', 'CHANGED',
           'ATTRIBUTE', 'KEY', 'INDEX', 'MEMBER']

#: Kinds of :class:`Change`.
ADDED, REMOVED, CHANGED = 'added', 'removed', 'changed'
#: Kinds of steps in a :class:`Path`.
ATTRIBUTE, KEY, INDEX, MEMBER = 'attribute', 'key', 'index', 'member'

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


# -- diff --------------------------------------------------------------------

class Path(tuple):
    """Where a change is: a tuple of steps, each an attribute name, a
    mapping key, a list index or a set member, from the compared value
    down. ``kinds`` says which each step is (:data:`ATTRIBUTE`,
    :data:`KEY`, :data:`INDEX`, :data:`MEMBER`); a path equals the plain
    tuple of its steps. ``str()`` gives ``.attr['key'][2]{member}``.
    """

    def __new__(cls, steps=(), kinds=()):
        path = super().__new__(cls, steps)
        path.kinds = tuple(kinds)
        return path

    def child(self, step, kind):
        return Path(self + (step,), self.kinds + (kind,))

    def __str__(self):
        return ''.join(
            '.%s' % step if kind == ATTRIBUTE else
            ('{%s}' if kind == MEMBER else '[%s]') % _show(step)
            for step, kind in zip(self, self.kinds)) or '(value)'


@dataclasses.dataclass(frozen=True)
class Change:
    """One difference: at ``path``, a value was ``added`` (``new``),
    ``removed`` (``old``) or ``changed`` (``old`` -> ``new``); the value
    not there is None."""

    path: Path
    kind: str
    old: object = None
    new: object = None

    def __str__(self):
        if self.kind == CHANGED:
            return '%s: %s -> %s' % (self.path, _show(self.old),
                                     _show(self.new))
        return '%s: %s %s' % (self.path, self.kind, _show(
            self.new if self.kind == ADDED else self.old))


class Diff(tuple):
    """A tuple of the changes (:class:`Change`) turning one value into
    another; false when there are none; ``str()`` gives one line each.
    Applied one after the other, they turn the first value into the
    second: a list index is the position at that point (for an item in
    both, its index in the second value)."""

    def __str__(self):
        return '\n'.join(map(str, self)) or 'no changes'

    def __repr__(self):
        return '<Diff: %d change%s>' % (len(self), '' if len(self) == 1
                                        else 's')


def diff(a, b, follow=True):
    """The structural :class:`Diff` from ``a`` (old) to ``b`` (new).

    ``a`` and ``b`` are objects (persistent or not, e.g. ``as_of(obj, t)``
    and ``obj``) or states (dicts, lists...). Compared by shape: mappings
    (dict, PersistentMapping, BTrees, ImmutableDict) by key, sequences
    (not str/bytes) by aligned items, sets by member, other objects by
    the attributes of their state (an object whose state is no dict, by
    its state); values of different types, and everything else, by ``==``.

    A persistent object reached inside is followed when it is the same
    object on both sides (same oid, e.g. read at two moments): its changes
    appear under the path that reached it first, once, so cycles end.
    Different oids mean the reference now names another object: one
    change. With ``follow=False``, same oids count as unchanged without
    loading. Immutables (``IImmutable``) are values: always compared by
    content, whatever their oids.
    """
    differ = _Differ(follow)
    differ.compare(a, b, Path(), True)
    return Diff(differ.changes)


_ATOMS = (type(None), bool, int, float, complex, str, bytes, bytearray,
          datetime.date, datetime.time, datetime.timedelta, type, enum.Enum,
          types.FunctionType, types.BuiltinFunctionType, types.MethodType,
          types.ModuleType, range, memoryview, WeakRef)


def _shape(value):
    if isinstance(value, _ATOMS):
        return None
    if isinstance(value, collections.abc.Mapping):
        return KEY
    if isinstance(value, collections.abc.Set):
        return MEMBER
    if isinstance(value, collections.abc.Sequence):
        return INDEX
    if hasattr(value, '_p_oid') or hasattr(value, '__dict__'):
        return ATTRIBUTE
    return None


def _persistent(value):
    return hasattr(value, '_p_oid') and not isinstance(value, type)


def _same(a, b):
    """``a == b`` for values compared whole."""
    if a is b:
        return True
    if isinstance(a, WeakRef):
        # Its == loads both targets; the oid says which object it names.
        return a.oid == b.oid
    try:
        return bool(a == b)
    except Exception:
        # Values whose == is no truth value (arrays) and failing __eq__.
        return False


class _Differ:

    def __init__(self, follow):
        self.follow = follow
        self.changes = []
        # (id(a), id(b)) -> (a, b): persistent pairs compared (each once)
        # and plain containers being compared (cycles); the pair is kept
        # so its ids cannot be reused by other objects meanwhile.
        self._seen = {}

    def compare(self, a, b, path, top=False):
        if a is b:
            return
        shape = _shape(a)
        if type(a) is not type(b) or shape is None:
            if type(a) is not type(b) or not _same(a, b):
                self.changes.append(Change(path, CHANGED, a, b))
            return
        key = (id(a), id(b))
        if key in self._seen:
            return
        persistent = _persistent(a)
        if persistent and not top and not IImmutable.providedBy(a):
            if a._p_oid != b._p_oid:
                self.changes.append(Change(path, CHANGED, a, b))
                return
            if a._p_oid is not None and not self.follow:
                return
        self._seen[key] = (a, b)
        try:
            getattr(self, '_' + shape)(a, b, path)
        finally:
            if not persistent:
                del self._seen[key]

    def _key(self, a, b, path, kind=KEY):
        for key in a:
            child = path.child(key, kind)
            if key in b:
                self.compare(a[key], b[key], child)
            else:
                self.changes.append(Change(child, REMOVED, old=a[key]))
        for key in b:
            if key not in a:
                self.changes.append(
                    Change(path.child(key, kind), ADDED, new=b[key]))

    def _index(self, a, b, path):
        a, b = list(a), list(b)
        edits = _edits([_fingerprint(x) for x in a],
                       [_fingerprint(x) for x in b])
        for i1, i2, j1, j2 in edits:
            # Positions before j1 already hold b's items, so a[i1 + k]
            # is at j1 + k when its turn comes.
            paired = min(i2 - i1, j2 - j1)
            for k in range(paired):
                self.compare(a[i1 + k], b[j1 + k],
                             path.child(j1 + k, INDEX))
            for k in reversed(range(paired, i2 - i1)):
                self.changes.append(Change(path.child(j1 + k, INDEX),
                                           REMOVED, old=a[i1 + k]))
            for k in range(paired, j2 - j1):
                self.changes.append(Change(path.child(j1 + k, INDEX),
                                           ADDED, new=b[j1 + k]))

    def _member(self, a, b, path):
        in_b = {_member_key(m): m for m in b}
        matched = set()
        for member in a:
            key = _member_key(member)
            if key not in in_b:
                self.changes.append(
                    Change(path.child(member, MEMBER), REMOVED, old=member))
                continue
            matched.add(key)
            if _persistent(member):
                # The same object read twice: follow it as any reference.
                self.compare(member, in_b[key], path.child(member, MEMBER))
        for key, member in in_b.items():
            if key not in matched:
                self.changes.append(
                    Change(path.child(member, MEMBER), ADDED, new=member))

    def _attribute(self, a, b, path):
        state_a, state_b = _state(a), _state(b)
        if isinstance(state_a, dict) and isinstance(state_b, dict):
            self._key(state_a, state_b, path, ATTRIBUTE)
        else:
            self.compare(state_a, state_b, path)


# Above this many cells (len(a) * len(b) after trimming the common ends)
# the exact alignment costs too much: difflib's heuristic one is used.
_EXACT_CELLS = 40000


def _edits(a, b):
    """Blocks ``(i1, i2, j1, j2)`` aligning ``a`` with ``b`` (sequences of
    fingerprints), in order: a[i1:i2] becomes b[j1:j2]. As few item edits
    as possible, except in long lists with many differences."""
    n, m = len(a), len(b)
    start = 0
    while start < min(n, m) and a[start] == b[start]:
        start += 1
    end = 0
    while end < min(n, m) - start and a[n - 1 - end] == b[m - 1 - end]:
        end += 1
    blocks = [(0, start, 0, start)] if start else []
    mid_a, mid_b = a[start:n - end], b[start:m - end]
    if len(mid_a) * len(mid_b) > _EXACT_CELLS:
        matcher = difflib.SequenceMatcher(None, mid_a, mid_b, autojunk=False)
        middle = [op[1:] for op in matcher.get_opcodes()]
    else:
        middle = _fewest_edits(mid_a, mid_b)
    blocks += [(i1 + start, i2 + start, j1 + start, j2 + start)
               for i1, i2, j1, j2 in middle]
    if end:
        blocks.append((n - end, n, m - end, m))
    return blocks


def _fewest_edits(a, b):
    """Levenshtein alignment: runs of kept/replaced, removed or added items.
    Of the alignments with the fewest edits, one keeping the most items."""
    n, m = len(a), len(b)
    # cost[i][j]: edits turning a[i:] into b[j:], times w, minus the items
    # kept (fewer than w); filled backwards so the walk goes forward.
    w = n + m + 1
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    cost[n] = [(m - j) * w for j in range(m + 1)]
    for i in range(n - 1, -1, -1):
        row, below = cost[i], cost[i + 1]
        row[m] = (n - i) * w
        for j in range(m - 1, -1, -1):
            row[j] = min(below[j + 1] + (-1 if a[i] == b[j] else w),
                         below[j] + w, row[j + 1] + w)
    blocks, i, j = [], 0, 0
    while i < n or j < m:
        if i < n and j < m and cost[i][j] == cost[i + 1][j + 1] + (
                -1 if a[i] == b[j] else w):
            step = (1, 1)
        elif i < n and cost[i][j] == cost[i + 1][j] + w:
            step = (1, 0)
        else:
            step = (0, 1)
        last = blocks[-1] if blocks else None
        if last is not None and last[4] == step and last[1] == i:
            blocks[-1] = (last[0], i + step[0], last[2], j + step[1], step)
        else:
            blocks.append((i, i + step[0], j, j + step[1], step))
        i, j = i + step[0], j + step[1]
    return [block[:4] for block in blocks]


def _member_key(member):
    """Set members match by equality, a stored persistent object by oid
    (two reads of it are two Python objects)."""
    if _persistent(member) and member._p_oid is not None:
        return ('oid', member._p_oid)
    return ('value', member)


def _state(obj):
    """An object's state, attributes merged into one dict when it has
    ``__dict__`` and slots."""
    if _persistent(obj):
        obj._p_activate()
    state = obj.__getstate__()
    if (isinstance(state, tuple) and len(state) == 2
            and isinstance(state[1], dict)
            and (state[0] is None or isinstance(state[0], dict))):
        merged = dict(state[0] or {})
        merged.update(state[1])
        return merged
    return state


def _fingerprint(value, active=None):
    """A hashable stand-in for ``value``, equal for equal values, so list
    items can be aligned: a persistent object (not immutable) stands for
    its oid, containers for their items; a container met again inside
    itself (a cycle) for its id."""
    if _persistent(value) and not IImmutable.providedBy(value):
        if value._p_oid is not None:
            return ('oid', value._p_oid)
        return ('id', id(value))
    shape = _shape(value)
    if shape is None:
        try:
            hash(value)
        except TypeError:
            return ('id', id(value))
        return ('value', type(value), value)
    if active is None:
        active = set()
    if id(value) in active:
        return ('id', id(value))
    active.add(id(value))
    try:
        if shape == KEY:
            inner = frozenset(
                (_fingerprint(k, active), _fingerprint(v, active))
                for k, v in value.items())
        elif shape == MEMBER:
            inner = frozenset(_fingerprint(m, active) for m in value)
        elif shape == INDEX:
            inner = tuple(_fingerprint(x, active) for x in value)
        else:
            inner = _fingerprint(_state(value), active)
    finally:
        active.discard(id(value))
    return (shape, type(value), inner)


class _ShortRepr(reprlib.Repr):
    """reprlib's limits; persistent objects as ``<Class 0x05>``, but for
    immutable collections, which are values."""

    def repr1(self, value, level):
        if _persistent(value) and not (
                isinstance(value, collections.abc.Collection)
                and IImmutable.providedBy(value)):
            oid = value._p_oid
            return '<%s %s>' % (type(value).__name__, 'new' if oid is None
                                else errors.oid_repr(oid))
        return super().repr1(value, level)


_short = _ShortRepr()
_short.maxstring = _short.maxother = 60
_show = _short.repr
