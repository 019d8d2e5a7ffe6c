"""Recording and process death through PMemStorage's ``pmemio`` seam.

PMemStorage changes its pool file only through the module-level functions
of :mod:`objstore.storages.pmem.pmemio`, looked up at call time
(``open``, ``close``, ``truncate``, ``fsync``, ``map``, ``unmap``,
``write(m, offset, data)``, ``flush(m, offset, length)``). :class:`PMemSeams`
replaces them for the length of a ``with`` block and puts them back after:

* it records every call that took effect, in order, as a :class:`PMemOp`
  naming the file (a map is named by its file and a number, so a log holds
  no live objects); :class:`objstore.testing.pmem_powerloss.PoolModel`
  replays such a log;
* :meth:`PMemSeams.crash` lets the process "die" at a chosen call: it
  raises :class:`objstore.testing.faults.SimulatedCrash` (a
  ``BaseException`` the storage's ``except Exception`` clauses let
  through), a write first storing ``torn`` bytes of its data, as a memcpy
  stopped by a signal would; every seam call after it raises too, so the
  dead storage changes nothing more. Leaving the block (or
  :meth:`PMemSeams.restart`) closes the maps and descriptors the dead
  process held, as the kernel would, also those it opened beside the
  pool without the seams (a lock file, say). What a dead process wrote
  into a shared map stays in the file (the page cache, or the persistent
  memory, keeps it), so the file is then exactly what the recorded log
  says.

With ``sync=False`` the flushes and fsyncs are recorded but not performed:
tests that never lose power for real need no ``msync``, and run faster.
"""
import os
import threading

from objstore.testing.faults import SimulatedCrash

#: The seams, in the names of :mod:`objstore.storages.pmem.pmemio`.
SEAMS = ('open', 'close', 'truncate', 'fsync', 'map', 'unmap', 'write',
         'flush')

__all__ = ['SEAMS', 'PMemOp', 'PMemSeams', 'SimulatedCrash']


class PMemOp:
    """One seam call that took effect.

    ``kind`` is the seam's name; ``path`` the file (absolute); ``fd`` the
    descriptor (``open``, ``close``, ``truncate``, ``fsync``, ``map``);
    ``map`` the number of the map (``map``, ``unmap``, ``write``,
    ``flush``), counted from 1 per :class:`PMemSeams`; ``offset`` and
    ``data`` for writes, ``offset`` and ``length`` for flushes, ``size``
    for truncates and maps, ``flags`` for opens.
    """

    __slots__ = ('kind', 'path', 'fd', 'map', 'offset', 'data', 'length',
                 'size', 'flags')

    def __init__(self, kind, path=None, fd=None, map=None, offset=None,
                 data=None, length=None, size=None, flags=None):
        self.kind = kind
        self.path = path
        self.fd = fd
        self.map = map
        self.offset = offset
        self.data = data
        self.length = length
        self.size = size
        self.flags = flags

    @property
    def end(self):
        """The file offset just after a write's data or a flush's range."""
        return self.offset + (len(self.data) if self.kind == 'write'
                              else self.length)

    def same_call(self, other):
        """Whether ``other`` is this call in another run of the same
        workload (another directory, maybe other descriptors)."""
        return (self.kind, os.path.basename(self.path or ''), self.offset,
                self.length, self.size,
                None if self.data is None else len(self.data)) == (
            other.kind, os.path.basename(other.path or ''), other.offset,
            other.length, other.size,
            None if other.data is None else len(other.data))

    def __repr__(self):
        name = os.path.basename(self.path) if self.path else '?'
        if self.kind in ('write', 'flush'):
            return '<%s %s [%d, %d)>' % (self.kind, name, self.offset,
                                          self.end)
        if self.kind in ('truncate', 'map'):
            return '<%s %s %d>' % (self.kind, name, self.size)
        return '<%s %s>' % (self.kind, name)


def _open_fds():
    """The descriptors open now, or None where /proc cannot say."""
    try:
        listed = [int(fd) for fd in os.listdir('/proc/self/fd')]
    except OSError:
        return None
    result = set()
    for fd in listed:
        try:
            os.fstat(fd)
        except OSError:
            continue    # the one listdir itself used, closed by now
        result.add(fd)
    return result


class _Rule:

    def __init__(self, kind, nth, match, torn):
        self.kind = kind
        self.left = nth
        self.match = match
        self.torn = torn


class PMemSeams:
    """Replaces pmemio's functions inside ``with``; see the module
    docstring.

    ``log`` is the list of :class:`PMemOp` that took effect; ``calls``
    counts every seam call; ``counts`` per seam; ``crashed`` is the call
    the process died at (not in ``log``; a torn write's stored part is),
    or None, and ``crashed_by`` the token :meth:`crash` returned for it.
    ``module`` is the seam module to replace (default
    ``objstore.storages.pmem.pmemio``; the unit tests of this module pass a
    stand-in). Thread-safe.
    """

    def __init__(self, module=None, sync=True):
        if module is None:
            from objstore.storages.pmem import pmemio as module
        self.module = module
        self.sync = sync
        self.log = []
        self.calls = 0
        self.counts = dict.fromkeys(SEAMS, 0)
        self.crashed = None
        self.crashed_by = None
        self._rules = []
        self._fds = {}          # fd -> path
        self._maps = {}         # id(mmap) -> (number, path, mmap)
        self._next_map = 0
        self._saved = None
        self._fds_before = None
        self._mutex = threading.RLock()

    # -- faults ----------------------------------------------------------

    def crash(self, kind=None, nth=1, match=None, torn=None):
        """Let the process die at the ``nth`` next seam call (of ``kind``,
        if given, and that ``match(op)`` accepts). For a write, its first
        ``torn`` bytes reach the map first. Returns a token that
        ``crashed_by`` is once this crash happened."""
        if kind is not None and kind not in SEAMS:
            raise ValueError('no seam %r; the seams are %s' % (kind, SEAMS))
        if nth < 1:
            raise ValueError('nth counts from 1, got %d' % nth)
        rule = _Rule(kind, nth, match, torn)
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

    # -- installing --------------------------------------------------------

    def __enter__(self):
        if self._saved is not None:
            raise RuntimeError('PMemSeams are already installed')
        self._saved = {name: getattr(self.module, name) for name in SEAMS}
        self._fds_before = _open_fds()
        for name in SEAMS:
            setattr(self.module, name, self._wrapper(name))
        return self

    def __exit__(self, *exc):
        saved, self._saved = self._saved, None
        for name, function in saved.items():
            setattr(self.module, name, function)
        with self._mutex:
            if self.crashed is not None:
                self._bury()
        return False

    def _bury(self):
        # The kernel unmaps a dead process's maps and closes its files
        # (dropping its locks); what it stored into a shared map stays.
        self._drop_side_files()
        maps, self._maps = self._maps, {}
        for _number, _path, mapped in maps.values():
            try:
                mapped.close()
            except (BufferError, ValueError, OSError):
                pass
        fds, self._fds = self._fds, {}
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass

    def _drop_side_files(self):
        """Release the descriptors the dead process opened beside its
        pool files without the seams (a lock file, say), as its death
        would. Each is pointed at /dev/null rather than closed: an object
        of the dead process that closes it later then closes that, never
        a descriptor reused by the next process."""
        dirs = {os.path.dirname(path) for path in self._fds.values()}
        dirs.update(os.path.dirname(path) for _n, path, _m
                    in self._maps.values())
        fds = _open_fds()
        if self._fds_before is None or fds is None or not dirs:
            return      # no /proc: side files stay open
        devnull = None
        try:
            for fd in fds:
                if fd in self._fds_before or fd in self._fds:
                    continue
                try:
                    target = os.readlink('/proc/self/fd/%d' % fd)
                except OSError:
                    continue
                if os.path.dirname(target) in dirs:
                    if devnull is None:
                        devnull = os.open(os.devnull, os.O_RDWR)
                    os.dup2(devnull, fd)
        finally:
            if devnull is not None:
                os.close(devnull)

    # -- the wrappers --------------------------------------------------------

    def _map_of(self, mapped):
        entry = self._maps.get(id(mapped))
        if entry is None or entry[2] is not mapped:
            raise ValueError('%r was not mapped through pmemio.map inside'
                             ' these seams' % (mapped,))
        return entry

    def _wrapper(self, name):
        real = self._saved[name]
        seams = self

        if name == 'open':
            def wrapper(path, flags, mode=0o644):
                op = PMemOp('open', path=os.path.abspath(path), flags=flags)
                with seams._mutex:
                    seams._before(op)
                    fd = real(path, flags, mode)
                    op.fd = fd
                    seams._fds[fd] = op.path
                    seams.log.append(op)
                    return fd
        elif name in ('close', 'fsync'):
            def wrapper(fd):
                op = PMemOp(name, path=seams._fds.get(fd), fd=fd)
                with seams._mutex:
                    seams._before(op)
                    if name == 'close' or seams.sync:
                        real(fd)
                    if name == 'close':
                        seams._fds.pop(fd, None)
                    seams.log.append(op)
        elif name == 'truncate':
            def wrapper(fd, size):
                op = PMemOp('truncate', path=seams._fds.get(fd), fd=fd,
                            size=size)
                with seams._mutex:
                    seams._before(op)
                    real(fd, size)
                    seams.log.append(op)
        elif name == 'map':
            def wrapper(fd, size, *args, **kw):
                op = PMemOp('map', path=seams._fds.get(fd), fd=fd, size=size)
                with seams._mutex:
                    seams._before(op)
                    mapped = real(fd, size, *args, **kw)
                    seams._next_map += 1
                    op.map = seams._next_map
                    seams._maps[id(mapped)] = (op.map, op.path, mapped)
                    seams.log.append(op)
                    return mapped
        elif name == 'unmap':
            def wrapper(mapped):
                with seams._mutex:
                    number, path, _ = seams._map_of(mapped)
                    op = PMemOp('unmap', path=path, map=number)
                    seams._before(op)
                    real(mapped)
                    seams._maps.pop(id(mapped), None)
                    seams.log.append(op)
        elif name == 'write':
            def wrapper(mapped, offset, data):
                with seams._mutex:
                    number, path, _ = seams._map_of(mapped)
                    op = PMemOp('write', path=path, map=number,
                                offset=offset, data=bytes(data))
                    seams._before(op, lambda part: real(mapped, offset, part))
                    real(mapped, offset, data)
                    seams.log.append(op)
        else:   # flush
            def wrapper(mapped, offset, length):
                with seams._mutex:
                    number, path, _ = seams._map_of(mapped)
                    op = PMemOp('flush', path=path, map=number,
                                offset=offset, length=length)
                    seams._before(op)
                    if seams.sync:
                        real(mapped, offset, length)
                    seams.log.append(op)
        wrapper.__name__ = name
        return wrapper

    def _before(self, op, store_part=None):
        """Count the call; die if a rule says so."""
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
            rule.left -= 1
            if rule.left:
                continue
            self._rules.remove(rule)
            if rule.torn and store_part is not None:
                part = op.data[:rule.torn]
                store_part(part)
                self.log.append(PMemOp('write', path=op.path, map=op.map,
                                       offset=op.offset, data=part))
            self.crashed = op
            self.crashed_by = rule
            raise SimulatedCrash('simulated process death at %r' % (op,))
