"""Structural diffs of two objects or two states (objstore.diff).

:func:`diff` compares two objects or two states and returns a
:class:`Diff`: a tuple of :class:`Change` (path, kind, old, new) that
prints as one line per change and that code can walk. Used by
:mod:`objstore.timeline` and re-exported there.
"""
import collections.abc
import dataclasses
import datetime
import difflib
import enum
import reprlib
import types

from persistent.wref import WeakRef

from objstore import errors
from objstore.interfaces import IImmutable

__all__ = ['Change', 'Diff', 'Path', 'diff', 'ADDED', 'REMOVED', 'CHANGED',
           'ATTRIBUTE', 'KEY', 'INDEX', 'MEMBER']

#: Kinds of :class:`Change`.
ADDED, REMOVED, CHANGED = 'added', 'removed', 'changed'
#: Kinds of steps in a :class:`Path`.
ATTRIBUTE, KEY, INDEX, MEMBER = 'attribute', 'key', 'index', 'member'

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
