"""What a power loss may leave of files written through FileStorage's seams.

:class:`FileSystemModel` replays a log recorded by
:class:`objstore.testing.faults.Seams` and builds what a power loss at any
point of it may leave on disk: for each file, everything up to its last
``fsync`` plus part of what came after; for the directory, every entry up
to the last ``fsync_dir`` plus part of the later renames.
:class:`RandomChoices` says which part.
"""
import os

from objstore.testing.faults import (
    SECTOR, Op, apply_op, pieces, tear_points, tear_write, write_at)


class _Inode:
    """A file's bytes: ``durable`` as of its last fsync, ``pending`` the
    writes and truncates after it, ``current`` all of them applied."""

    __slots__ = ('number', 'name', 'durable', 'pending', 'current')

    def __init__(self, number, name, content=b''):
        self.number = number
        self.name = name
        self.durable = bytes(content)
        self.pending = []
        self.current = bytearray(content)


class RandomChoices:
    """How much of what was not yet durable a power loss keeps: random.

    ``mode`` ``'prefix'`` keeps, per file, the writes after its last fsync
    in order up to a random one, which may be torn at a 512-byte boundary
    (the rest either missing, or read as zeros up to the write's end, as
    file systems that extended the size show; then also none of it may
    have arrived, all zeros); the directory keeps a random prefix of its
    changes after the last fsync_dir. ``'reorder'`` writes each 512-byte
    sector or not, in any order, the most a disk cache may do without
    barriers; a sector written holds what the page cache held at that
    moment, so a prefix of the later writes to it.
    """

    def __init__(self, rng, mode='prefix', tear=0.5):
        if mode not in ('prefix', 'reorder'):
            raise ValueError('mode is prefix or reorder, got %r' % (mode,))
        self.rng = rng
        self.mode = mode
        self.tear = tear

    def directory(self, pending):
        return self.rng.randint(0, len(pending))

    def file(self, inode):
        """``(content, description)`` of ``inode`` after the power loss."""
        rng = self.rng
        buf = bytearray(inode.durable)
        pending = inode.pending
        if self.mode == 'reorder':
            # A sector reaches the disk whole, as the page cache held it
            # at some moment: a prefix of the writes to it.
            written = {}
            for op in pending:
                for start, _piece in pieces(op) if op.data else ():
                    sector = start // SECTOR
                    written[sector] = written.get(sector, 0) + 1
            cutoff = {s: rng.randint(0, n) for s, n in written.items()}
            kept = 0
            for op in pending:
                if op.kind == 'truncate':
                    if rng.random() < 0.5:
                        apply_op(buf, op)
                        kept += 1
                    continue
                for start, piece in pieces(op):
                    sector = start // SECTOR
                    cutoff[sector] -= 1
                    if cutoff[sector] >= 0:
                        write_at(buf, start, piece)
                        kept += 1
            return bytes(buf), 'reorder: %d pieces kept' % kept
        n = rng.randint(0, len(pending))
        for op in pending[:n]:
            apply_op(buf, op)
        what = '%d of %d later ops' % (n, len(pending))
        if n < len(pending) and rng.random() < self.tear:
            op = pending[n]
            zeros = rng.random() < 0.5
            cuts = tear_points(op, grows=zeros and op.kind == 'write'
                               and op.offset + len(op.data) > len(buf))
            if cuts:
                cut = rng.choice(cuts)
                tear_write(buf, op, cut, zeros)
                what += ', then %r torn at %d%s' % (
                    op, cut, ' (rest zeros)' if zeros else '')
        return bytes(buf), what


class FileSystemModel:
    """The files of one directory as a recorded log leaves them.

    Feed it the ops of a :class:`~objstore.testing.faults.Seams` log with
    :meth:`apply` (all paths must be in ``root``); :meth:`image` then says
    what a power loss at that moment may leave, :meth:`current` what a
    process death leaves.
    ``files`` gives the directory's content before the log, all durable.
    """

    def __init__(self, root, files=None):
        self.root = os.path.abspath(root)
        self._next = 0
        self._fds = {}
        self.dir_durable = {}
        self.dir_pending = []
        self.dir = {}
        for name, content in sorted((files or {}).items()):
            inode = self._new_inode(name, content)
            inode.durable = bytes(content)
            self.dir_durable[name] = self.dir[name] = inode

    def _new_inode(self, name, content=b''):
        self._next += 1
        return _Inode(self._next, name, content)

    def _name(self, path):
        if os.path.dirname(path) != self.root:
            raise ValueError('%s is not in %s' % (path, self.root))
        return os.path.basename(path)

    def apply(self, op):
        kind = op.kind
        if kind == 'open':
            name = self._name(op.path)
            inode = self.dir.get(name)
            if inode is None:
                if not op.flags & os.O_CREAT:
                    raise ValueError('%r opens a missing file' % (op,))
                inode = self._new_inode(name)
                self._dir_op(('link', name, inode))
            self._fds[op.fd] = inode
            if op.flags & os.O_TRUNC:
                self._file_op(inode, Op('truncate', path=op.path, size=0))
        elif kind == 'close':
            self._fds.pop(op.fd, None)
        elif kind in ('write', 'truncate'):
            self._file_op(self._fds[op.fd], op)
        elif kind == 'fsync':
            inode = self._fds[op.fd]
            inode.durable = bytes(inode.current)
            inode.pending = []
        elif kind == 'replace':
            self._name(op.dst)
            if self._name(op.path) not in self.dir:
                raise ValueError('%r renames a missing file' % (op,))
            self._dir_op(('rename', self._name(op.path), self._name(op.dst)))
        elif kind == 'remove':
            name = self._name(op.path)
            if name in self.dir:
                self._dir_op(('unlink', name))
        elif kind == 'fsync_dir':
            self._name(op.path)
            self.dir_durable = dict(self.dir)
            self.dir_pending = []
        else:
            raise ValueError('unknown op %r' % (op,))

    def inode_of(self, fd):
        """The file a descriptor of the log refers to."""
        return self._fds[fd]

    def _file_op(self, inode, op):
        inode.pending.append(op)
        apply_op(inode.current, op)

    def _dir_op(self, change):
        self.dir_pending.append(change)
        _change(self.dir, change)

    def current(self):
        """``{name: bytes}``: the files as the page cache holds them."""
        return {name: bytes(inode.current) for name, inode in self.dir.items()}

    def image(self, choices):
        """``({name: bytes}, description)`` after a power loss now, parts
        chosen by ``choices`` (e.g. :class:`RandomChoices`)."""
        entries = dict(self.dir_durable)
        n = choices.directory(self.dir_pending)
        for change in self.dir_pending[:n]:
            _change(entries, change)
        described = ['directory: %d of %d later changes'
                     % (n, len(self.dir_pending))]
        files = {}
        for name, inode in sorted(entries.items()):
            files[name], what = choices.file(inode)
            described.append('%s: %s' % (name, what))
        return files, '; '.join(described)


def _change(entries, change):
    if change[0] == 'link':
        entries[change[1]] = change[2]
    elif change[0] == 'rename':
        entries[change[2]] = entries.pop(change[1])
    else:
        entries.pop(change[1], None)


def write_files(files, directory):
    """Create ``files`` (``{name: bytes}``) in ``directory``."""
    os.makedirs(directory, exist_ok=True)
    for name, content in files.items():
        with open(os.path.join(directory, name), 'wb') as f:
            f.write(content)
