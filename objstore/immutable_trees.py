"""Persistent, path-copying trees for large immutable collections.

:class:`TrieMap` (an insertion-ordered mapping) and :class:`TrieVector` (a
list) keep their items in ``persistent.Persistent`` nodes of about 1 KiB,
one record each: changing one item of a committed collection writes
O(log n) records, and ``copy()`` is O(1).

Token rules: every change names a token (any object, compared with ``is``).
A node this tree made under that token is changed in place; any other node
is copied, with the path above it. Ownership is a ``_v_`` attribute, so a
loaded node is never owned, and ``copy()`` ends the ownership of both
trees. Node contents are tuples, which nothing can change.

Design decisions, and their costs:

* TrieMap is a B+tree ordered by :func:`stable_hash`, not a 5-bit HAMT,
  whose leaves overflowing at a fixed depth split into 32 nearly empty
  ones. A branch holds, per child, the lowest hash it may hold (the first
  is never consulted); a leaf, its sorted hashes and a flat tuple of key,
  value and insertion number per entry; entries of one hash share a leaf.
  Iteration sorts the entries by insertion number once per change.
* Keys without a stable hash live apart, in one record (rewritten whole
  when they change), found through a ``_v_`` dict, so hash() and ``==``
  decide as in a dict. An equal hashed key is looked for where it must
  sit: at the key's numeric hash (what equals a number hashes like it), at
  its base value's hash (a subclass keeping its base's ``==``), or, for a
  class with its own ``==``, by scanning every hashed key. Where ``==`` is
  no equivalence, which equal key is found may differ from a dict's pick.
* TrieVector is a counted B+tree (a rope): a branch holds, per child, its
  number of items. Growth at the end splits full-and-rest, so appending
  fills leaves; other splits are even.
* Empty nodes are dropped, others never merged (as in many database
  B-trees): deletes write no neighbours, but a tree shrunk by many deletes
  keeps sparse nodes until it grows again or they empty.
* Keys are placed by :func:`objstore.stable_hash.stable_hash`.
"""
import collections.abc
from bisect import bisect_left, bisect_right
from itertools import accumulate, islice
from operator import index as _as_index, itemgetter

from persistent import Persistent

from objstore.stable_hash import probe as _probe, stable_hash

__all__ = ['stable_hash', 'TrieMap', 'TrieVector']

class _Edit:
    """One tree's run of changes under one token: nodes it made carry it."""

    __slots__ = ('token',)

    def __init__(self, token):
        self.token = token


class _Node(Persistent):
    """A tree node, stored as its own record; its attributes are tuples."""

    _v_edit = None      # the _Edit it was made under
    _v_cache = None     # a vector branch's running totals, apart's index


class _Branch(_Node):
    """``keys[i]`` describes ``kids[i]``: its item count in a TrieVector,
    the lowest hash it may hold in a TrieMap."""

    def __init__(self, keys, kids):
        self.keys, self.kids, self._v_cache = keys, kids, None


class _MapLeaf(_Node):
    """``h``: the hashes, sorted; ``f``: key, value and insertion number of
    each entry, flat. The apart node is one too, with no hashes."""

    def __init__(self, h, f):
        self.h, self.f, self._v_cache = h, f, None

    def held(self):
        return self.f[1::3]

    def chunk(self, s, e):
        return self.h[s:e], self.f[3 * s:3 * e]


class _VecLeaf(_Node):
    def __init__(self, items):
        self.items = items

    def held(self):
        return self.items

    def chunk(self, s, e):
        return self.items[s:e],


def _renew(node, edit, cls, *fields):
    """``node`` refilled in place when ``edit`` owns it, else a new node."""
    if node is not None and node._v_edit is edit:
        node.__init__(*fields)      # attribute writes set _p_changed
        return node
    new = cls(*fields)
    new._v_edit = edit
    return new


def _bounds(n, cap, at_end, hashes=None):
    """Chunks for ``n`` entries, at most ``cap`` each: full ones when the
    growth was at the end, else even ones; no run of equal ``hashes`` is
    cut in two."""
    if n <= cap:
        return [(0, n)] if n else []
    parts = -(-n // cap)
    cuts = range(0, n, cap) if at_end else [n * p // parts
                                            for p in range(parts)]
    if hashes is not None:
        moved = [0]
        for cut in cuts[1:]:
            while cut < n and hashes[cut - 1] == hashes[cut]:
                cut += 1
            if cut == n:
                cut = bisect_left(hashes, hashes[-1])
            if moved[-1] < cut < n:
                moved.append(cut)
        cuts = moved
    return list(zip(cuts, list(cuts[1:]) + [n]))


def _walk(stack, reverse=False):
    """The leaves under the nodes of ``stack``, the last node's first."""
    while stack:
        node = stack.pop()
        if type(node) is _Branch:
            stack.extend(node.kids if reverse else reversed(node.kids))
        elif node is not None:
            yield node


class _Tree:
    """What TrieMap and TrieVector share: state, the token rules, and the
    rebuilding of the path above a changed leaf."""

    __slots__ = ('_root', '_len', '_edit', '_order')
    #: Most entries per leaf and children per branch.
    LEAF_SIZE = BRANCH_SIZE = 32
    _counted = False

    def __init__(self):
        self.__setstate__((None, 0, None, 0)[:len(self._state)])

    def __getstate__(self):
        return tuple(getattr(self, name) for name in self._state)

    def __setstate__(self, state):
        for name, value in zip(self._state, state):
            setattr(self, name, value)
        self._edit = self._order = None

    def __len__(self):
        return self._len

    def _edit_for(self, token):
        if self._edit is None or self._edit.token is not token:
            self._edit = _Edit(token)
        return self._edit

    def copy(self):
        """A tree of the same items sharing every node, made in O(1); later
        changes of either never show in the other."""
        new = type(self).__new__(type(self))
        new.__setstate__(self.__getstate__())
        new._order, self._edit = self._order, None
        return new

    def __copy__(self):
        return self.copy()

    def changed_values(self, token):
        """The values held in nodes made under ``token``, reached from the
        root through such nodes: every value set under it since the last
        change under another token, and those sharing leaves with them."""
        stack = [self._root, getattr(self, '_apart', None)]
        while stack:
            node = stack.pop()
            # A ghost lost its _v_ attributes: no token owns it.
            if node is None or node._p_changed is None:
                continue
            if node._v_edit is not None and node._v_edit.token is token:
                if type(node) is _Branch:
                    stack.extend(node.kids)
                else:
                    yield from node.held()

    def _top(self):
        """The root, or an empty leaf (never stored) standing for it."""
        if self._root is not None:
            return self._root
        return _VecLeaf(()) if self._counted else _MapLeaf((), ())

    def _split(self, leaf, path, fields, edit, at_end, hashes=None):
        """Put leaves of ``fields`` (with ``hashes`` in a TrieMap) where
        ``leaf``, at the end of ``path``, was."""
        cls = _VecLeaf if self._counted else _MapLeaf
        n = len(fields[0])
        if 0 < n <= self.LEAF_SIZE:
            new = _renew(leaf, edit, cls, *fields)
            if new is not leaf or self._counted:
                self._rebuild(path, [new], [n if self._counted else None],
                              edit, at_end)
            return
        whole = cls(*fields)
        new, keys = [], []
        for s, e in _bounds(n, self.LEAF_SIZE, at_end, hashes):
            new.append(_renew(leaf if s == 0 else None, edit, cls,
                              *whole.chunk(s, e)))
            keys.append(e - s if self._counted else
                        None if s == 0 else hashes[s])
        self._rebuild(path, new, keys, edit, at_end)

    def _rebuild(self, path, new, keys, edit, at_end):
        """Put ``new`` (nodes, with their keys in the parent; None keeps the
        replaced child's lowest hash) where the path's last node was."""
        counted = self._counted
        for branch, i in reversed(path):
            bkeys, kids = branch.keys, branch.kids
            if len(new) == 1 and new[0] is kids[i] and (
                    keys[0] is None or keys[0] == bkeys[i]):
                return      # changed in place: nothing above changes
            if not counted and new:
                keys = [bkeys[i]] + keys[1:]
            bkeys = bkeys[:i] + tuple(keys) + bkeys[i + 1:]
            kids = kids[:i] + tuple(new) + kids[i + 1:]
            new, keys = self._chunked(branch, edit, bkeys, kids, at_end)
        while len(new) > 1:
            new, keys = self._chunked(None, edit, tuple(
                keys if counted else [0] + keys[1:]), tuple(new), at_end)
        root = new[0] if new else None
        while type(root) is _Branch and len(root.kids) == 1:
            root = root.kids[0]
        self._root = root

    def _chunked(self, old, edit, bkeys, kids, at_end):
        new, keys = [], []
        for s, e in _bounds(len(kids), self.BRANCH_SIZE, at_end):
            new.append(_renew(old if s == 0 else None, edit, _Branch,
                              bkeys[s:e], kids[s:e]))
            keys.append(sum(bkeys[s:e]) if self._counted
                        else None if s == 0 else bkeys[s])
        return new, keys


class TrieMap(_Tree, collections.abc.Mapping):
    """An insertion-ordered mapping with dict semantics (setting a present
    key keeps its place and its first key object; delete then set puts it
    last), changed through :meth:`set`, :meth:`delete` and :meth:`update`
    under a token. Iteration walks the map as it was when it began."""

    __slots__ = ('_apart', '_seq')
    _state = ('_root', '_len', '_apart', '_seq')

    def __repr__(self):
        return 'TrieMap(%r)' % dict(self.items())

    # -- reading

    def _descend(self, h, path):
        """The leaf where hash ``h`` goes; ``path`` gets the steps."""
        node = self._top()
        while type(node) is _Branch:
            i = bisect_right(node.keys, h, 1) - 1
            path.append((node, i))
            node = node.kids[i]
        return node

    def _find(self, key, path):
        """(node, position) of the entry whose key equals ``key``, else
        (None, the stable hash to insert it at, or None to put it apart).
        ``path`` gets the steps down to the leaf where that hash goes."""
        h = stable_hash(key)
        if h is not None:
            leaf = self._descend(h, path)
            hashes, f = leaf.h, leaf.f
            j = bisect_left(hashes, h)
            while j < len(hashes) and hashes[j] == h:
                if f[3 * j] is key or f[3 * j] == key:
                    return leaf, j
                j += 1
            if self._apart is None:
                return None, h
        else:
            hashed = hash(key)      # TypeError for an unhashable key
        apart = self._apart
        if apart is not None:
            if apart._v_cache is None:
                apart._v_cache = {k: j for j, k in enumerate(apart.f[::3])}
            j = apart._v_cache.get(key)
            if j is not None:
                return apart, j
        if h is None and self._root is not None:
            probe = _probe(key)
            leaves = (_walk([self._root]) if probe is None
                      else [self._descend(probe, [])])
            for leaf in leaves:
                for j, (hj, k) in enumerate(zip(leaf.h, leaf.f[::3])):
                    # As in a dict, only a key whose hash() is ``hashed``.
                    if (probe is None or hj == probe) and (k is key or (
                            hash(k) == hashed and k == key)):
                        del path[:]
                        self._descend(hj, path)
                        return leaf, j
        return None, h

    def __getitem__(self, key):
        node, j = self._find(key, [])
        if node is None:
            raise KeyError(key)
        return node.f[3 * j + 1]

    def __contains__(self, key):
        return self._find(key, [])[0] is not None

    def _ordered(self):
        """(insertion number, key, value) of every entry, in order."""
        if self._order is None:
            order = []
            for leaf in _walk([self._root, self._apart]):
                order.extend(zip(leaf.f[2::3], leaf.f[0::3], leaf.f[1::3]))
            order.sort(key=itemgetter(0))
            self._order = order
        return self._order

    def __iter__(self):
        return map(itemgetter(1), self._ordered())

    def __reversed__(self):
        """The keys, the last inserted first."""
        return map(itemgetter(1), reversed(self._ordered()))

    def values(self):
        return _ValuesView(self)

    def items(self):
        return _ItemsView(self)

    # -- changing

    def set(self, key, value, token):
        """Map ``key`` to ``value``; a new key goes last."""
        path = []
        node, j = self._find(key, path)
        edit = self._edit_for(token)
        self._order = None
        if node is None:
            entry = (key, value, self._seq)
            self._seq, self._len = self._seq + 1, self._len + 1
            if j is None:
                apart = self._apart
                f = apart.f if apart is not None else ()
                self._apart = _renew(apart, edit, _MapLeaf, (), f + entry)
                return
            leaf = path[-1][0].kids[path[-1][1]] if path else self._top()
            at = bisect_right(leaf.h, j)
            hashes = leaf.h[:at] + (j,) + leaf.h[at:]
            self._split(leaf, path, (hashes, leaf.f[:3 * at] + entry + leaf.f[
                3 * at:]), edit, at == len(leaf.h), hashes)
            return
        f = node.f[:3 * j + 1] + (value,) + node.f[3 * j + 2:]
        if node is self._apart:
            self._apart = _renew(node, edit, _MapLeaf, (), f)
        else:
            self._split(node, path, (node.h, f), edit, False, node.h)

    def delete(self, key, token):
        """Remove ``key``; KeyError if it is missing."""
        path = []
        node, j = self._find(key, path)
        if node is None:
            raise KeyError(key)
        edit = self._edit_for(token)
        self._order = None
        self._len -= 1
        h, f = node.h[:j] + node.h[j + 1:], node.f[:3 * j] + node.f[3 * j + 3:]
        if node is self._apart:
            self._apart = _renew(node, edit, _MapLeaf, h, f) if f else None
        else:
            self._split(node, path, (h, f), edit, False, h)

    def update(self, items, token):
        """Set each (key, value) of ``items`` (a mapping or pairs) in turn;
        into an empty map, all at once."""
        if self._len:
            if isinstance(items, collections.abc.Mapping):
                items = items.items()
            for key, value in items:
                self.set(key, value, token)
            return
        rows, apart = [], []
        # A dict settles repeated keys as setting them in turn would.
        for key, value in dict(items).items():
            h = stable_hash(key)
            if h is None:
                apart += (key, value, self._seq)
            else:
                rows.append((h, key, value, self._seq))
            self._seq += 1
        rows.sort(key=itemgetter(0))
        self._len, self._order = len(rows) + len(apart) // 3, None
        edit = self._edit_for(token)
        if apart:
            self._apart = _renew(None, edit, _MapLeaf, (), tuple(apart))
        hashes = tuple(row[0] for row in rows)
        self._split(self._top(), [], (hashes, tuple(
            x for row in rows for x in row[1:])), edit, True, hashes)


class _ValuesView(collections.abc.ValuesView):
    def __iter__(self):
        return map(itemgetter(2), self._mapping._ordered())


class _ItemsView(collections.abc.ItemsView):
    def __iter__(self):
        return map(itemgetter(1, 2), self._mapping._ordered())


class TrieVector(_Tree, collections.abc.Sequence):
    """A list as a counted tree, changed through :meth:`set`,
    :meth:`insert`, :meth:`delete`, :meth:`append` and :meth:`extend` under
    a token. ``v[i]`` takes negative indexes; ``v[a:b:c]`` is a list."""

    __slots__ = ()
    _state = ('_root', '_len')
    LEAF_SIZE = BRANCH_SIZE = 64
    _counted = True

    @classmethod
    def from_iterable(cls, values, token):
        """A new vector of ``values``, its nodes made under ``token``."""
        vector = cls()
        vector.extend(values, token)
        return vector

    def __repr__(self):
        return 'TrieVector(%r)' % list(self)

    # -- reading

    def _position(self, i):
        i = _as_index(i)
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError('TrieVector index out of range')
        return i

    def _descend(self, i, path):
        """The leaf holding position ``i`` (its end when ``i`` is the
        length) and ``i`` within it; ``path`` gets the steps."""
        node = self._top()
        while type(node) is _Branch:
            if node._v_cache is None:
                node._v_cache = tuple(accumulate(node.keys))
            ends = node._v_cache
            c = min(bisect_right(ends, i), len(ends) - 1)
            if c:
                i -= ends[c - 1]
            path.append((node, c))
            node = node.kids[c]
        return node, i

    def __getitem__(self, i):
        if isinstance(i, slice):
            start, stop, step = i.indices(self._len)
            if step != 1:
                return [self[j] for j in range(start, stop, step)]
            return list(islice(self._iter_from(start), max(stop - start, 0)))
        leaf, j = self._descend(self._position(i), [])
        return leaf.items[j]

    def _iter_from(self, i):
        path = []
        leaf, j = self._descend(i, path)
        yield from leaf.items[j:]
        for leaf in _walk([kid for node, c in path
                           for kid in reversed(node.kids[c + 1:])]):
            yield from leaf.items

    def __iter__(self):
        return self._iter_from(0)

    def __reversed__(self):
        for leaf in _walk([self._root], reverse=True):
            yield from reversed(leaf.items)

    # -- changing

    def set(self, i, value, token):
        """Replace the item at ``i``; IndexError when out of range."""
        self._change(self._position(i), token, 1, (value,))

    def insert(self, i, value, token):
        """Insert before ``i``, clamped to the ends as list.insert does."""
        i = _as_index(i)
        if i < 0:
            i = max(i + self._len, 0)
        self._change(min(i, self._len), token, 0, (value,))

    def delete(self, i, token):
        """Remove the item at ``i``; IndexError when out of range."""
        self._change(self._position(i), token, 1, ())

    def append(self, value, token):
        self._change(self._len, token, 0, (value,))

    def extend(self, values, token):
        """Append ``values``; a long run fills whole new leaves at once."""
        values = tuple(values)
        if values:
            self._change(self._len, token, 0, values)

    def _change(self, i, token, removed, added):
        """Replace ``removed`` items from position ``i`` with ``added``."""
        edit = self._edit_for(token)
        path = []
        leaf, j = self._descend(i, path)
        old = leaf.items
        self._len += len(added) - removed
        self._split(leaf, path, (old[:j] + added + old[j + removed:],), edit,
                    j + removed == len(old))
