"""What a power loss may leave of a pool file written through ``pmemio``.

:class:`PoolModel` replays a log recorded by
:class:`objstore.testing.pmem_faults.PMemSeams` and builds the files a
power loss at that point of the log may leave, under the seam's contract:

* the file is persisted in aligned units of ``unit`` bytes (8 for
  persistent memory, whose stores are failure-atomic per aligned 8-byte
  word; 4096 for a page cache writing back pages); a unit holds, after the
  power loss, what it held at some moment: all writes to it up to one,
  none of a later one;
* ``flush(m, offset, length)`` makes every earlier write to the units of
  that range durable (a completed flush is a barrier: what it covered stays,
  whatever comes after); ``fsync(fd)`` makes every earlier write to the
  file durable, and its size;
* the size a file had at its last ``fsync`` is durable; a later
  ``truncate`` may be lost (bytes beyond the size a power loss leaves are
  gone, even flushed ones: only ``fsync`` makes a size durable); a file
  created in the log exists for sure only after its first ``fsync``.

What is not yet durable may be there or not. :class:`RandomChoices`
says which part stays: ``'prefix'`` keeps the later writes in the order
they were made up to one, which is torn (a random set of its units), the
way a machine that persists stores in order would; ``'reorder'`` keeps
each unit as of a random moment since it was last durable, the most a
cache may do. Only files that only grow are modelled (a pool never
shrinks).
"""
import os

from objstore.testing.powerloss import write_files

__all__ = ['PoolModel', 'RandomChoices', 'write_files', 'PMEM_UNIT',
           'PAGE_UNIT']

#: Failure-atomic unit of persistent memory.
PMEM_UNIT = 8
#: What a page cache writes back at a time.
PAGE_UNIT = 4096


class _Piece:
    """Part of a write still to be made durable: ``seq`` is the write's
    place in the log (pieces of one write share it)."""

    __slots__ = ('seq', 'offset', 'data')

    def __init__(self, seq, offset, data):
        self.seq = seq
        self.offset = offset
        self.data = data

    @property
    def end(self):
        return self.offset + len(self.data)


class PoolFile:
    """One file of the model.

    ``base`` holds every byte made durable (by flushes and fsyncs);
    ``pending`` the pieces of writes not yet durable, in log order;
    ``durable_size`` the size at the last fsync; ``sizes`` the later
    truncates, ``(seq, size)``; ``durable`` whether the file exists for
    sure (it existed before the log or was fsynced); ``created`` the seq
    of the open that created it; ``current`` every write applied.
    """

    def __init__(self, name, content=None, created=None):
        self.name = name
        self.durable = content is not None
        self.created = created
        content = content or b''
        self.base = bytearray(content)
        self.current = bytearray(content)
        self.durable_size = len(content)
        self.sizes = []
        self.pending = []

    @property
    def size(self):
        return len(self.current)

    def write(self, seq, offset, data):
        if offset + len(data) > len(self.current):
            raise ValueError('write [%d, %d) beyond the end (%d) of %s'
                             % (offset, offset + len(data),
                                len(self.current), self.name))
        self.current[offset:offset + len(data)] = data
        self.pending.append(_Piece(seq, offset, bytes(data)))

    def truncate(self, seq, size):
        if size < len(self.current):
            raise ValueError('%s shrinks from %d to %d bytes: the model'
                             ' replays growing files only'
                             % (self.name, len(self.current), size))
        self.current.extend(bytes(size - len(self.current)))
        self.sizes.append((seq, size))

    def flush(self, lo, hi, unit):
        """Make the pieces in the units of ``[lo, hi)`` durable."""
        lo -= lo % unit
        hi += -hi % unit
        kept = []
        for piece in self.pending:
            if piece.end <= lo or piece.offset >= hi:
                kept.append(piece)
                continue
            a, b = max(piece.offset, lo), min(piece.end, hi)
            _put(self.base, a, piece.data[a - piece.offset:b - piece.offset])
            if piece.offset < a:
                kept.append(_Piece(piece.seq, piece.offset,
                                   piece.data[:a - piece.offset]))
            if b < piece.end:
                kept.append(_Piece(piece.seq, b,
                                   piece.data[b - piece.offset:]))
        self.pending = kept

    def fsync(self):
        for piece in self.pending:
            _put(self.base, piece.offset, piece.data)
        self.pending = []
        self.durable_size = len(self.current)
        self.sizes = []
        self.durable = True

    def build(self, size, keep):
        """The file of ``size`` bytes: ``base`` with the pending bytes
        ``keep(piece)`` returns as ``(offset, bytes)`` runs, in order."""
        buf = bytearray(self.base)
        for piece in self.pending:
            for offset, data in keep(piece):
                _put(buf, offset, data)
        if len(buf) < size:
            buf.extend(bytes(size - len(buf)))
        del buf[size:]
        return bytes(buf)


def _put(buf, offset, data):
    if offset + len(data) > len(buf):
        buf.extend(bytes(offset + len(data) - len(buf)))
    buf[offset:offset + len(data)] = data


def units_of(piece, unit):
    """The aligned units a piece touches: ``(unit number, offset, bytes)``
    of its part in each."""
    result = []
    offset = piece.offset
    while offset < piece.end:
        stop = min(piece.end, (offset // unit + 1) * unit)
        result.append((offset // unit, offset,
                       piece.data[offset - piece.offset:stop - piece.offset]))
        offset = stop
    return result


class RandomChoices:
    """Which of what was not yet durable a power loss keeps: random; see
    the module docstring for ``mode`` (``'prefix'`` or ``'reorder'``).
    ``tear`` is the chance that, in ``'prefix'`` mode, the first write
    not kept whole still left some of its units."""

    def __init__(self, rng, mode='prefix', tear=0.7):
        if mode not in ('prefix', 'reorder'):
            raise ValueError('mode is prefix or reorder, got %r' % (mode,))
        self.rng = rng
        self.mode = mode
        self.tear = tear

    def file(self, pool_file, unit):
        """``(content or None, description)`` of ``pool_file`` after the
        power loss; None: the file is not there."""
        rng = self.rng
        if self.mode == 'prefix':
            return self._prefix(pool_file, unit)
        if not pool_file.durable and rng.random() < 0.2:
            return None, 'never created'
        sizes = [pool_file.durable_size] + [s for _, s in pool_file.sizes]
        size = sizes[rng.randrange(len(sizes))]
        counts = {}
        for piece in pool_file.pending:
            for number, _offset, _data in units_of(piece, unit):
                counts[number] = counts.get(number, 0) + 1
        cutoff = {number: rng.randint(0, n) for number, n in counts.items()}
        written = [0]

        def keep(piece):
            runs = []
            for number, offset, data in units_of(piece, unit):
                cutoff[number] -= 1
                if cutoff[number] >= 0:
                    runs.append((offset, data))
                    written[0] += 1
            return runs
        content = pool_file.build(size, keep)
        return content, 'reorder: %d of %d pending unit writes kept, size %d' \
            % (written[0], sum(counts.values()), size)

    def _prefix(self, pool_file, unit):
        rng = self.rng
        seqs = sorted({piece.seq for piece in pool_file.pending}
                      | {seq for seq, _ in pool_file.sizes}
                      | ({pool_file.created} if not pool_file.durable
                         else set()))
        n = rng.randint(0, len(seqs))
        cut = seqs[n] if n < len(seqs) else None
        if cut is not None and cut == pool_file.created:
            return None, 'never created'
        size = pool_file.durable_size
        for seq, new_size in pool_file.sizes:
            if cut is None or seq < cut:
                size = new_size
        torn = {}
        if cut is not None and rng.random() < self.tear:
            chance = rng.random()
            for piece in pool_file.pending:
                if piece.seq == cut:
                    for number, _offset, _data in units_of(piece, unit):
                        torn[number] = rng.random() < chance

        def keep(piece):
            if cut is None or piece.seq < cut:
                return [(piece.offset, piece.data)]
            if piece.seq > cut or not torn:
                return []
            return [(offset, data)
                    for number, offset, data in units_of(piece, unit)
                    if torn[number]]
        what = 'prefix: %d of %d later ops' % (n, len(seqs))
        if torn:
            what += ', op %d torn (%d of %d units)' % (
                cut, sum(torn.values()), len(torn))
        return pool_file.build(size, keep), what + ', size %d' % size


class PoolModel:
    """The files of one directory as a recorded ``pmemio`` log leaves them.

    Feed it the ops of a :class:`~objstore.testing.pmem_faults.PMemSeams`
    log with :meth:`apply` (all paths in ``root``); :meth:`image` then
    says what a power loss at that moment may leave, :meth:`current` what
    a process death leaves. ``unit`` is the failure-atomic unit (8:
    persistent memory, 4096: page cache). ``files`` gives the directory's
    content before the log, all durable.
    """

    def __init__(self, root, unit=PMEM_UNIT, files=None):
        self.root = os.path.abspath(root)
        self.unit = unit
        self.seq = 0
        self.files = {name: PoolFile(name, bytes(content))
                      for name, content in (files or {}).items()}
        self._fds = {}
        self._maps = {}

    def _file(self, path):
        if os.path.dirname(path) != self.root:
            raise ValueError('%s is not in %s' % (path, self.root))
        return os.path.basename(path)

    def apply(self, op):
        """Replay one :class:`~objstore.testing.pmem_faults.PMemOp`."""
        self.seq += 1
        kind = op.kind
        if kind == 'open':
            name = self._file(op.path)
            if name not in self.files:
                if not op.flags & os.O_CREAT:
                    raise ValueError('%r opens a missing file' % (op,))
                self.files[name] = PoolFile(name, created=self.seq)
            elif op.flags & os.O_TRUNC and self.files[name].size:
                raise ValueError('%r truncates %s: the model replays growing'
                                 ' files only' % (op, name))
            self._fds[op.fd] = self.files[name]
        elif kind == 'close':
            self._fds.pop(op.fd, None)
        elif kind == 'truncate':
            self._fds[op.fd].truncate(self.seq, op.size)
        elif kind == 'fsync':
            self._fds[op.fd].fsync()
        elif kind == 'map':
            self._maps[op.map] = self._fds[op.fd]
        elif kind == 'unmap':
            self._maps.pop(op.map, None)
        elif kind == 'write':
            self._maps[op.map].write(self.seq, op.offset, op.data)
        elif kind == 'flush':
            self._maps[op.map].flush(op.offset, op.end, self.unit)
        else:
            raise ValueError('unknown op %r' % (op,))

    def current(self):
        """``{name: bytes}``: the files as a process death leaves them."""
        return {name: bytes(f.current) for name, f in self.files.items()}

    def durable(self):
        """``{name: bytes}``: what survives for sure (nothing pending
        kept); files not yet durably created are left out."""
        return {name: f.build(f.durable_size, lambda piece: [])
                for name, f in self.files.items() if f.durable}

    def image(self, choices):
        """``({name: bytes}, description)`` after a power loss now, the
        parts chosen by ``choices`` (e.g. :class:`RandomChoices`)."""
        files = {}
        described = []
        for name, pool_file in sorted(self.files.items()):
            content, what = choices.file(pool_file, self.unit)
            if content is not None:
                files[name] = content
            described.append('%s: %s' % (name, what))
        return files, '; '.join(described)
