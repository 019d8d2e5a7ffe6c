"""stable_hash: a hash of keys that is the same in every process.

Python's hash() of str and bytes changes from process to process
(PYTHONHASHSEED), so a structure stored by one process and searched by
another cannot place keys by it. stable_hash covers the exact types most
keys are, consistently with ``==`` across them (1 == 1.0 == True hash
alike); :func:`probe` says where a key of another type that equals a
covered one must be. Used by :mod:`objstore.immutable_trees`.

Numbers hash with Python's numeric hash: documented, process independent,
equal across int, float, complex, Decimal and Fraction, and the same on
every 64-bit build (``sys.hash_info.modulus`` 2**61 - 1), which stored
maps assume. Other covered types hash with BLAKE2b.
"""
import datetime
import decimal
import fractions
import struct
import uuid
from hashlib import blake2b

__all__ = ['stable_hash', 'probe']

_MASK = (1 << 64) - 1


def _digest(data, tag=b''):
    return int.from_bytes(
        blake2b(data, digest_size=8, person=tag).digest(), 'little')


def _packed(tag, values, code='Q'):
    return _digest(struct.pack('<%d%s' % (len(values), code), *values), tag)


def _number(x):
    # NaN is unequal to itself and hashes by identity.
    return None if x != x else hash(x) & _MASK


def _tuple(x, element=None):
    hashes = [(element or stable_hash)(item) for item in x]
    if None in hashes:
        return None
    if isinstance(x, frozenset):
        return _packed(b'frozenset', sorted(hashes))
    return _packed(b'tuple', hashes)


def _datetime(x):
    # As datetime.__hash__: an aware datetime hashes its UTC moment, with
    # the offset it has at fold=0; one without an offset hashes its fields.
    t = x.replace(fold=0) if x.fold else x
    offset = t.utcoffset()
    moment = ((datetime.date.toordinal(t) * 86400 + t.hour * 3600
               + t.minute * 60 + t.second) * 1000000 + t.microsecond)
    if offset is None:
        return _packed(b'naive', [moment], 'q')
    return _packed(b'aware', [moment - offset // datetime.timedelta(
        microseconds=1)], 'q')


_NONE = _digest(b'', b'none')
_HASHERS = {
    int: _number, bool: _number, fractions.Fraction: _number,
    float: _number, complex: _number,
    decimal.Decimal: lambda x: None if x.is_nan() else hash(x) & _MASK,
    str: lambda x: int.from_bytes(blake2b(str.encode(
        x, 'utf-8', 'surrogatepass'), digest_size=8).digest(), 'little'),
    bytes: lambda x: _digest(x, b'bytes'),
    tuple: _tuple, frozenset: _tuple, datetime.datetime: _datetime,
    datetime.date: lambda x: _packed(b'date', [x.toordinal()], 'q'),
    uuid.UUID: lambda x: _digest(x.int.to_bytes(16, 'little'), b'uuid'),
    type(None): lambda x: _NONE}
_NUMBERS = (int, float, complex, decimal.Decimal, fractions.Fraction)
_BASES = (str, bytes, tuple, frozenset, datetime.datetime, datetime.date,
          uuid.UUID)


def stable_hash(key):
    """An int in [0, 2**64), the same in every process and equal for equal
    keys of the exact types int, bool, float, complex, Decimal, Fraction,
    str, bytes, None, date, datetime, UUID, and tuples and frozensets of
    those; None for any other key (subclasses, NaN, ...)."""
    hasher = _HASHERS.get(type(key))
    return None if hasher is None else hasher(key)


def probe(key):
    """The stable hash a covered key equal to ``key`` must have, or None
    when only a scan can tell (``key``'s class has its own ``==``)."""
    found = stable_hash(key)
    if found is not None:
        return found
    eq = type(key).__eq__
    for base in _BASES:
        if isinstance(key, base):
            if eq is not base.__eq__:
                return None
            if base in (tuple, frozenset):
                return _tuple(key, probe)
            return _HASHERS[base](key)
    if eq is object.__eq__ or any(
            isinstance(key, base) and eq is base.__eq__ for base in _NUMBERS):
        return hash(key) & _MASK    # only a number could equal it
    return None
