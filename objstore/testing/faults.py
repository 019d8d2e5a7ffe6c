"""Fault injection through FileStorage's file-system seams.

FileStorage changes the file system only through the functions of
:mod:`objstore.storages.file.fsio`, looked up at call time. :class:`Seams`
replaces them for the length of a ``with`` block and puts them back after:

* it records every call that took effect, in order, as an :class:`Op`
  (``open``, ``close``, ``write``, ``truncate``, ``fsync``, ``replace``,
  ``remove``, ``fsync_dir``), writes with their descriptor's path, offset
  and bytes;
* :meth:`Seams.fail` makes a chosen call raise ``OSError`` instead;
* :meth:`Seams.crash` makes the process "die" at a chosen call: it raises
  :class:`SimulatedCrash`, a ``BaseException`` that the storage's
  ``except Exception`` clauses do not catch, and every seam call after it
  raises too, so the dead storage changes nothing more. Leaving the block
  closes the descriptors the dead process held, as the kernel would.

:class:`FileSystemModel` replays a recorded log and builds what a power
loss at any point of it may leave on disk: for each file, everything up to
its last ``fsync`` plus part of what came after; for the directory, every
entry up to the last ``fsync_dir`` plus part of the later renames.
"""
import errno
import os
import threading

from objstore.storages.file import fsio

#: The seams, in the names of :mod:`objstore.storages.file.fsio`.
SEAMS = ('open', 'close', 'write', 'fsync', 'truncate', 'replace', 'remove',
         'fsync_dir')

SECTOR = 512


class SimulatedCrash(BaseException):
    """The simulated process died at a seam call.

    A ``BaseException``, like ``KeyboardInterrupt``, so that code which
    handles ``Exception`` to recover from I/O errors lets it through, as it
    would let a real death through.
    """


class Op:
    """One seam call that took effect.

    ``kind`` is the seam's name; ``path`` the file (for ``replace`` the
    source, ``dst`` the target); ``fd`` the descriptor; ``offset`` and
    ``data`` for writes, ``size`` for truncates, ``flags`` for opens.
    """

    __slots__ = ('kind', 'path', 'fd', 'offset', 'data', 'size', 'flags',
                 'dst')

    def __init__(self, kind, path=None, fd=None, offset=None, data=None,
                 size=None, flags=None, dst=None):
        self.kind = kind
        self.path = path
        self.fd = fd
        self.offset = offset
        self.data = data
        self.size = size
        self.flags = flags
        self.dst = dst

    def __repr__(self):
        name = os.path.basename(self.path) if self.path else '?'
        if self.kind == 'write':
            return '<write %s [%d, %d)>' % (name, self.offset,
                                            self.offset + len(self.data))
        if self.kind == 'truncate':
            return '<truncate %s to %d>' % (name, self.size)
        if self.kind == 'replace':
            return '<replace %s -> %s>' % (name, os.path.basename(self.dst))
        return '<%s %s>' % (self.kind, name)


class _Rule:

    def __init__(self, action, kind, target, error, match, torn):
        self.action = action
        self.kind = kind
        self.target = target
        self.error = error
        self.match = match
        self.torn = torn


class Seams:
    """Replaces fsio's functions inside ``with``; see the module docstring.

    ``log`` is the list of :class:`Op` that took effect; ``calls`` counts
    every seam call (also failed ones); ``crashed`` is the call the process
    died at, or None, and ``crashed_by`` the token :meth:`crash` returned
    for it. Thread-safe.
    """

    def __init__(self):
        self.log = []
        self.calls = 0
        self.counts = dict.fromkeys(SEAMS, 0)
        self.crashed = None
        self.crashed_by = None
        self.failures = []
        self._rules = []
        self._fds = {}
        self._saved = None
        self._mutex = threading.RLock()

    # -- faults --------------------------------------------------------

    def fail(self, kind, nth=1, error=None, match=None, torn=None):
        """Make the ``nth`` next call of seam ``kind`` (that ``match(op)``
        accepts, if given) raise ``error`` (default ``OSError(EIO)``)
        without doing anything; for a write, ``torn`` bytes of it reach
        the file first (a disk that filled up halfway)."""
        if error is None:
            error = OSError(errno.EIO, 'simulated I/O error (%s)' % kind)
        self._add('fail', kind, nth, error, match, torn)

    def crash(self, kind=None, nth=1, match=None, torn=None):
        """Let the process die at the ``nth`` next seam call (of ``kind``,
        if given, and that ``match(op)`` accepts). For a write, ``torn``
        bytes of it reach the file first. Returns a token that
        ``crashed_by`` is once this crash happened."""
        return self._add('crash', kind, nth, None, match, torn)

    def _add(self, action, kind, nth, error, match, torn):
        if kind is not None and kind not in SEAMS:
            raise ValueError('no seam %r; the seams are %s' % (kind, SEAMS))
        if nth < 1:
            raise ValueError('nth counts from 1, got %d' % nth)
        rule = _Rule(action, kind, [nth], error, match, torn)
        with self._mutex:
            self._rules.append(rule)
        return rule

    def mark(self):
        """The number of operations recorded so far (an index into ``log``)."""
        with self._mutex:
            return len(self.log)

    def restart(self):
        """After a simulated crash: close what the dead process held and
        let seam calls through again (a new process starts)."""
        with self._mutex:
            self._bury()
            self.crashed = self.crashed_by = None

    # -- installing ------------------------------------------------------

    def __enter__(self):
        if self._saved is not None:
            raise RuntimeError('Seams are already installed')
        self._saved = {name: getattr(fsio, name) for name in SEAMS}
        for name in SEAMS:
            setattr(fsio, name, self._wrapper(name))
        return self

    def __exit__(self, *exc):
        saved, self._saved = self._saved, None
        for name, function in saved.items():
            setattr(fsio, name, function)
        with self._mutex:
            if self.crashed is not None:
                self._bury()
        return False

    def _bury(self):
        # The kernel closes a dead process's files (and drops its flocks).
        fds, self._fds = self._fds, {}
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass

    # -- the wrappers ----------------------------------------------------

    def _path_of(self, fd):
        path = self._fds.get(fd)
        if path is None:
            try:
                path = os.readlink('/proc/self/fd/%d' % fd)
            except OSError:
                path = None
        return path

    def _wrapper(self, name):
        real = self._saved[name]
        seams = self

        if name == 'open':
            def wrapper(path, flags, mode=0o644):
                op = Op('open', path=os.path.abspath(path), flags=flags)
                with seams._mutex:
                    seams._before(op)
                    fd = real(path, flags, mode)
                    op.fd = fd
                    seams._fds[fd] = op.path
                    seams.log.append(op)
                    return fd
        elif name == 'close':
            def wrapper(fd):
                op = Op('close', path=seams._path_of(fd), fd=fd)
                with seams._mutex:
                    seams._before(op)
                    real(fd)
                    seams._fds.pop(fd, None)
                    seams.log.append(op)
        elif name == 'write':
            def wrapper(fd, data, offset):
                op = Op('write', path=seams._path_of(fd), fd=fd,
                        offset=offset, data=bytes(data))
                with seams._mutex:
                    seams._before(op, real)
                    real(fd, data, offset)
                    seams.log.append(op)
        elif name in ('fsync', 'truncate'):
            def wrapper(fd, *args):
                op = Op(name, path=seams._path_of(fd), fd=fd,
                        size=args[0] if args else None)
                with seams._mutex:
                    seams._before(op)
                    real(fd, *args)
                    seams.log.append(op)
        elif name == 'replace':
            def wrapper(src, dst):
                op = Op('replace', path=os.path.abspath(src),
                        dst=os.path.abspath(dst))
                with seams._mutex:
                    seams._before(op)
                    real(src, dst)
                    seams.log.append(op)
        else:   # remove, fsync_dir
            def wrapper(path):
                op = Op(name, path=os.path.abspath(path))
                with seams._mutex:
                    seams._before(op)
                    real(path)
                    seams.log.append(op)
        wrapper.__name__ = name
        return wrapper

    def _before(self, op, real_write=None):
        """Count the call; apply the first rule it triggers."""
        if self.crashed is not None:
            raise SimulatedCrash('the process died at %r; %r never ran'
                                 % (self.crashed, op))
        self.calls += 1
        self.counts[op.kind] += 1
        for rule in self._rules:
            if rule.kind is not None and rule.kind != op.kind:
                continue
            if rule.match is not None and not rule.match(op):
                continue
            rule.target[0] -= 1
            if rule.target[0]:
                continue
            self._rules.remove(rule)
            if rule.torn and op.kind == 'write' and real_write is not None:
                part = Op('write', path=op.path, fd=op.fd, offset=op.offset,
                          data=op.data[:rule.torn])
                real_write(op.fd, part.data, op.offset)
                self.log.append(part)
            if rule.action == 'fail':
                self.failures.append(op)
                raise rule.error
            self.crashed = op
            self.crashed_by = rule
            raise SimulatedCrash('simulated process death at %r' % (op,))


# -- power loss -------------------------------------------------------------

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


def _put(buf, offset, data):
    if offset > len(buf):
        buf.extend(bytes(offset - len(buf)))
    buf[offset:offset + len(data)] = data


def apply_op(buf, op):
    """Apply a write or truncate :class:`Op` to the bytearray ``buf``."""
    if op.kind == 'write':
        _put(buf, op.offset, op.data)
    elif op.size < len(buf):
        del buf[op.size:]
    else:
        buf.extend(bytes(op.size - len(buf)))


class RandomChoices:
    """How much of what was not yet durable a power loss keeps: random.

    ``mode`` ``'prefix'`` keeps, per file, the writes after its last fsync
    in order up to a random one, which may be torn at a 512-byte boundary
    (the rest either missing, or read as zeros up to the write's end, as
    file systems that extended the size show; then also none of it may
    have arrived, all zeros); the directory keeps a random prefix of its
    changes after the last fsync_dir. ``'reorder'``
    keeps a random subset of the 512-byte pieces of the later writes, in
    any order: the most a disk cache may do without barriers.
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
            kept = 0
            for op in pending:
                if op.kind == 'truncate':
                    if rng.random() < 0.5:
                        apply_op(buf, op)
                        kept += 1
                    continue
                for start, piece in pieces(op):
                    if rng.random() < 0.5:
                        _put(buf, start, piece)
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


def tear_points(op, unit=SECTOR, grows=False):
    """Where write ``op`` may be torn: the file offsets at multiples of
    ``unit`` strictly inside it, and (``grows``: the file's size grew but
    none of the data arrived) its start."""
    return ([op.offset] if grows else []) + _cuts(op, unit)


def _cuts(op, unit=SECTOR):
    """File offsets at multiples of ``unit`` strictly inside a write."""
    if op.kind != 'write':
        return []
    end = op.offset + len(op.data)
    first = (op.offset // unit + 1) * unit
    return list(range(first, end, unit))


def pieces(op):
    """A write split at 512-byte boundaries: ``(offset, bytes)`` pairs."""
    bounds = [op.offset] + _cuts(op) + [op.offset + len(op.data)]
    return [(a, op.data[a - op.offset:b - op.offset])
            for a, b in zip(bounds, bounds[1:])]


def tear_write(buf, op, cut, zeros):
    """Apply the part of write ``op`` before file offset ``cut``; with
    ``zeros`` the file also grows to the write's end, the rest reading as
    zeros."""
    _put(buf, op.offset, op.data[:cut - op.offset])
    end = op.offset + len(op.data)
    if zeros and len(buf) < end:
        buf.extend(bytes(end - len(buf)))


class FileSystemModel:
    """The files of one directory as a recorded log leaves them.

    Feed it the ops of a :class:`Seams` log with :meth:`apply` (all paths
    must be in ``root``); :meth:`image` then says what a power loss at that
    moment may leave, :meth:`current` what a process death leaves.
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
