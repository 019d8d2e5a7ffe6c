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

The helpers at the end apply recorded writes whole, torn or in 512-byte
pieces; :mod:`objstore.testing.powerloss` builds power-loss images with
them.
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


# -- writes, whole and torn ----------------------------------------------

def write_at(buf, offset, data):
    """Write ``data`` into the bytearray ``buf`` at ``offset``, growing it
    with zeros as a file grows."""
    if offset > len(buf):
        buf.extend(bytes(offset - len(buf)))
    buf[offset:offset + len(data)] = data


def apply_op(buf, op):
    """Apply a write or truncate :class:`Op` to the bytearray ``buf``."""
    if op.kind == 'write':
        write_at(buf, op.offset, op.data)
    elif op.size < len(buf):
        del buf[op.size:]
    else:
        buf.extend(bytes(op.size - len(buf)))


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
    write_at(buf, op.offset, op.data[:cut - op.offset])
    end = op.offset + len(op.data)
    if zeros and len(buf) < end:
        buf.extend(bytes(end - len(buf)))
