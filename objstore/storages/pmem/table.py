"""The object table: a copy-on-write radix tree of record offsets.

Layout in :mod:`.format` (item 5). A commit never changes a node that a
root reaches: :func:`update` writes new nodes for the paths it changes
and shares every other node, so each root keeps its own table intact and
two tables differ only along the changed paths (:func:`diff` walks just
those).
"""
from objstore import errors
from objstore.storages.pmem import format as fmt

FANOUT = fmt.FANOUT
NODE_SIZE = fmt.NODE_SIZE
_ENTRY = fmt.ENTRY.unpack_from
_ENTRIES = '<%dQ' % FANOUT
_ZEROS = bytes(NODE_SIZE - 8)


def capacity(height):
    return FANOUT ** height


def height_for(max_oid):
    """The smallest table height holding oids up to ``max_oid``."""
    height = 1
    while FANOUT ** height <= max_oid:
        height += 1
    return height


def check_node(path, m, offset, level, size):
    """Verify the node at ``offset`` (bounds, checksum, level); raise
    CorruptionError if it is damaged."""
    if not fmt.valid_node_offset(offset, min(size, len(m))):
        raise errors.CorruptionError(
            path, offset, 'a table node points outside the pool')
    crc, found, _ = fmt.NODE_HEAD.unpack_from(m, offset)
    if found != level or crc != fmt.crc32(m[offset + 4:offset + NODE_SIZE]):
        raise errors.CorruptionError(
            path, offset, 'table node (level %d) fails its checksum' % level)


def find_leaf(path, m, root, height, size, leaf_index):
    """The offset of leaf ``leaf_index`` in the table at ``root``, each
    node on the way verified; 0 if that part of the table is empty."""
    if not height or leaf_index >= capacity(height - 1):
        return 0
    offset = root
    for level in range(height - 1, -1, -1):
        check_node(path, m, offset, level, size)
        if level == 0:
            return offset
        index = (leaf_index // FANOUT ** (level - 1)) % FANOUT
        offset, = _ENTRY(m, offset + 8 + 8 * index)
        if not offset:
            return 0
    return 0


def entries(m, offset):
    """The FANOUT entries of the node at ``offset`` (verified before)."""
    return fmt.struct.unpack_from(_ENTRIES, m, offset + 8)


def walk(path, m, root, height, size):
    """Yield ``(kind, offset, n)`` for every node (kind 'node', n its
    level) and every leaf entry (kind 'record', n the oid as int) of the
    table, checking each node."""
    if not root:
        return
    stack = [(root, height - 1, 0)]
    while stack:
        offset, level, base = stack.pop()
        check_node(path, m, offset, level, size)
        yield 'node', offset, level
        span = FANOUT ** level
        for index, child in enumerate(entries(m, offset)):
            if not child:
                continue
            if level:
                stack.append((child, level - 1, base + index * span))
            else:
                yield 'record', child, base + index


def diff(path, m, old, old_height, new, new_height, size):
    """Yield ``(n, old_offset, new_offset)`` for each oid whose entry
    differs between two tables, visiting only nodes that differ."""
    for kind, a, b, n in _diff(path, m, old, old_height, new, new_height,
                               size):
        if kind == 'entry':
            yield n, a, b


def diff_items(path, m, old, old_height, new, new_height, size):
    """Yield ``('node', offset, level)`` for each node of the old table
    the new one does not share and ``('record', offset, n)`` for each of
    its records the new table does not point to."""
    for kind, a, b, n in _diff(path, m, old, old_height, new, new_height,
                               size):
        if kind == 'node':
            yield 'node', a, n
        elif a:
            yield 'record', a, n


def _diff(path, m, old, old_height, new, new_height, size):
    # Bring both to the same height: a taller table holds the shorter one
    # as the first child of its leftmost nodes.
    while old_height < new_height:
        old, old_height = (('up', old) if old else 0), old_height + 1
    while new_height < old_height:
        new, new_height = (('up', new) if new else 0), new_height + 1
    if not old_height:
        return
    stack = [(old, new, old_height - 1, 0)]
    while stack:
        a, b, level, base = stack.pop()
        if a == b:
            continue
        if a and not isinstance(a, tuple):
            yield 'node', a, None, level
        a_entries = _node_entries(path, m, a, level, size)
        b_entries = _node_entries(path, m, b, level, size)
        for index in range(FANOUT):
            x, y = a_entries[index], b_entries[index]
            if x == y:
                continue
            if level:
                stack.append((x, y, level - 1, base * FANOUT + index))
            else:
                yield 'entry', x, y, base * FANOUT + index


def iter_from(path, m, root, height, size, start):
    """Yield ``(n, offset)`` for every record of the table, by increasing
    oid ``n`` from ``start`` on."""
    if not root or start >= capacity(height):
        return

    def visit(offset, level, base):
        check_node(path, m, offset, level, size)
        span = FANOUT ** level
        first = max(0, start // span - base * FANOUT)
        for index, child in enumerate(entries(m, offset)[first:], first):
            if not child:
                continue
            if level:
                yield from visit(child, level - 1, base * FANOUT + index)
            else:
                n = base * FANOUT + index
                if n >= start:
                    yield n, child

    yield from visit(root, height - 1, 0)


def _node_entries(path, m, node, level, size):
    if isinstance(node, tuple):
        return (node[1],) + (0,) * (FANOUT - 1)
    if not node:
        return (0,) * FANOUT
    check_node(path, m, node, level, size)
    return entries(m, node)


def new_nodes_bound(height, changes):
    """How many nodes :func:`update` may write at most for ``changes``."""
    if not changes:
        return 0
    height = max(height, height_for(max(changes)))
    prefixes = {n // FANOUT for n in changes}
    total = 0
    for _ in range(height):
        total += len(prefixes)
        prefixes = {prefix // FANOUT for prefix in prefixes}
    return total


def update(path, m, root, height, size, changes, alloc):
    """Copy-on-write ``changes`` (oid int -> record offset, 0 to remove)
    into the table at ``root``.

    ``alloc()`` returns the offset for a new node. Returns ``(new_root,
    new_height, nodes, replaced, leaves)``: the new nodes as (offset,
    bytes) to write, the offsets of the nodes the new table no longer
    uses, and leaf index -> new leaf offset (0: gone) for every leaf the
    commit changed.
    """
    nodes, replaced, leaves = [], [], {}
    want = height_for(max(changes)) if changes else height
    if want > height:
        # Grow at the top: the old root becomes child 0 of new roots,
        # which update() then writes like any changed node.
        for level in range(height, want):
            root = ('up', root) if root else 0
        height = want
    by_leaf = {}
    for n, offset in changes.items():
        by_leaf.setdefault(n // FANOUT, {})[n % FANOUT] = offset
    root = _update(path, m, root, height - 1, 0, by_leaf, size, alloc,
                   nodes, replaced, leaves)
    return root, (height if root else 0), nodes, replaced, leaves


def _update(path, m, node, level, base, by_leaf, size, alloc, nodes,
            replaced, leaves):
    grown = isinstance(node, tuple)
    if not by_leaf and not grown:
        return node
    if grown:
        current = bytearray(NODE_SIZE - 8)
    elif node:
        check_node(path, m, node, level, size)
        current = bytearray(m[node + 8:node + NODE_SIZE])
        replaced.append(node)
    else:
        current = bytearray(NODE_SIZE - 8)
    if level == 0:
        for index, offset in by_leaf[base].items():
            fmt.ENTRY.pack_into(current, 8 * index, offset)
    else:
        span = FANOUT ** (level - 1)
        children = {}
        for leaf_index, changes in by_leaf.items():
            children.setdefault((leaf_index // span) % FANOUT, {})[
                leaf_index] = changes
        if grown:
            children.setdefault(0, {})
        for index, group in sorted(children.items()):
            if grown and index == 0:
                child = node[1]
            else:
                child, = fmt.ENTRY.unpack_from(current, 8 * index)
            new_child = _update(path, m, child, level - 1,
                                base * FANOUT + index, group, size, alloc,
                                nodes, replaced, leaves)
            fmt.ENTRY.pack_into(current, 8 * index, new_child)
    if current == _ZEROS:
        new = 0
    else:
        new = alloc()
        nodes.append((new, fmt.pack_node(level, bytes(current))))
    if level == 0:
        leaves[base] = new
    return new
