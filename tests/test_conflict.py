"""The conflict resolver: merges through _p_resolveConflict, else ConflictError."""
import pytest
from BTrees.Length import Length
from BTrees.OOBTree import OOBucket
from persistent.mapping import PersistentMapping

from objstore import errors
from objstore.conflict import PersistentReference, resolve
from objstore.serialize import dumps_record, loads_record

OID = b'\0' * 7 + b'\7'
OLD, COMMITTED = b'\0' * 7 + b'\1', b'\0' * 7 + b'\2'


def _loader(records):
    def load_serial(oid, serial):
        try:
            return records[serial]
        except KeyError:
            raise errors.POSKeyError(oid)
    return load_serial


def test_length_conflict_is_merged():
    load = _loader({OLD: dumps_record(Length, 1),
                    COMMITTED: dumps_record(Length, 5)})
    data = resolve(OID, COMMITTED, OLD, dumps_record(Length, 3), load)
    assert loads_record(data) == (Length, 7)


def test_committed_data_given_is_used_instead_of_loading():
    load = _loader({OLD: dumps_record(Length, 1)})
    data = resolve(OID, COMMITTED, OLD, dumps_record(Length, 2), load,
                   committed_data=dumps_record(Length, 10))
    assert loads_record(data)[1] == 11


def _bucket_record(items):
    return dumps_record(OOBucket, OOBucket(items).__getstate__())


def test_bucket_with_disjoint_changes_is_merged():
    old = _bucket_record({'a': 1})
    committed = _bucket_record({'a': 1, 'b': 2})
    new = _bucket_record({'a': 1, 'c': 3})
    data = resolve(OID, COMMITTED, OLD, new, _loader({OLD: old,
                                                     COMMITTED: committed}))
    merged = OOBucket()
    merged.__setstate__(loads_record(data)[1])
    assert dict(merged.items()) == {'a': 1, 'b': 2, 'c': 3}


def test_bucket_with_same_key_changed_raises_conflict_naming_class():
    old = _bucket_record({'a': 1})
    committed = _bucket_record({'a': 2})
    new = _bucket_record({'a': 3})
    with pytest.raises(errors.ConflictError) as info:
        resolve(OID, COMMITTED, OLD, new, _loader({OLD: old,
                                                  COMMITTED: committed}))
    assert info.value.oid == OID
    assert info.value.class_name == 'BTrees.OOBTree.OOBucket'
    assert info.value.serials == (COMMITTED, OLD)
    assert '0x07' in str(info.value)


def test_class_without_resolver_raises_conflict():
    rec = dumps_record(PersistentMapping, {'data': {}})
    with pytest.raises(errors.ConflictError, match='does not resolve'):
        resolve(OID, COMMITTED, OLD, rec, _loader({OLD: rec, COMMITTED: rec}))


def test_unimportable_class_raises_conflict_not_import_error():
    rec = dumps_record((('no.such.module', 'Thing'), None), {})
    with pytest.raises(errors.ConflictError, match='cannot be loaded'):
        resolve(OID, COMMITTED, OLD, rec, _loader({}))


def test_object_created_concurrently_is_a_conflict():
    with pytest.raises(errors.ConflictError, match='created concurrently'):
        resolve(OID, COMMITTED, b'\0' * 8, dumps_record(Length, 1),
                _loader({}))


def test_old_revision_packed_away_is_a_conflict():
    with pytest.raises(errors.ConflictError, match='gone'):
        resolve(OID, COMMITTED, OLD, dumps_record(Length, 1),
                _loader({COMMITTED: dumps_record(Length, 2)}))


class Holder:
    """Keeps a reference and merges by taking the newest counter."""

    @staticmethod
    def _p_resolveConflict(old, committed, new):
        # References compare equal when they name the same object.
        if committed['ref'] != new['ref']:
            raise ValueError('reference changed')
        return {'ref': new['ref'], 'n': committed['n'] + new['n'] - old['n']}


def _holder(n, pid):
    marker = object()
    return dumps_record(Holder, {'ref': marker, 'n': n},
                        persistent_id=lambda o: pid if o is marker else None)


def test_persistent_references_survive_resolution_unchanged():
    pid = (b'\0' * 7 + b'\x09', Holder)
    load = _loader({OLD: _holder(1, pid), COMMITTED: _holder(2, pid)})
    data = resolve(OID, COMMITTED, OLD, _holder(4, pid), load)
    meta, state = loads_record(data, persistent_load=lambda p: ('ref', p))
    assert state == {'ref': ('ref', pid), 'n': 5}


def test_persistent_reference_forms():
    assert PersistentReference(b'x' * 8).oid == b'x' * 8
    weak = PersistentReference(['w', (b'y' * 8, 'other')])
    assert weak.weak and weak.database_name == 'other'
    assert PersistentReference(['m', ('db', b'z' * 8, Holder)]).klass is Holder
    assert PersistentReference(b'a' * 8) == PersistentReference((b'a' * 8, Holder))
    with pytest.raises(errors.SerializationError):
        PersistentReference(['q', ()])


def test_a_bucket_with_a_next_bucket_resolves_concurrent_inserts():
    # BTrees compare a bucket's next-bucket references by identity, so the
    # three states of one resolution must share their reference objects.
    import transaction
    from BTrees.OOBTree import OOBTree

    import objstore
    from objstore.storages import MemoryStorage

    db = objstore.DB(MemoryStorage())
    tm1, tm2 = transaction.TransactionManager(), transaction.TransactionManager()
    c1, c2 = db.open(tm1), db.open(tm2)
    tree = c1.root()['tree'] = OOBTree()
    for i in range(200):
        tree['k%03d' % i] = i
    tm1.commit()
    tm2.begin()
    tree2 = c2.root()['tree']
    assert tree._firstbucket._next is not None  # several buckets
    tree['k000a'] = 'one'
    tm1.commit()
    tree2['k001a'] = 'two'
    tm2.commit()
    tm1.begin()
    assert list(c1.root()['tree'].keys())[:4] == ['k000', 'k000a', 'k001',
                                                  'k001a']
    db.close()


def test_references_to_different_objects_cannot_be_compared():
    a, b = PersistentReference(b'a' * 8), PersistentReference(b'b' * 8)
    with pytest.raises(ValueError, match='different persistent objects'):
        a == b
    with pytest.raises(ValueError):
        a < b
    weak = PersistentReference(['w', (b'a' * 8,)])
    assert weak == weak
    with pytest.raises(ValueError):
        weak == PersistentReference(['w', (b'a' * 8,)])


def test_a_bucket_conflict_over_persistent_values_is_not_merged_as_in_zodb():
    # One transaction replaces a key's persistent value, the other adds a
    # key: to merge, the bucket must compare the old and the new value of
    # the key, two different persistent objects, which ZODB cannot do
    # without loading them, so it reports a conflict; so do we.
    import transaction
    from BTrees.OOBTree import OOBTree
    from persistent.mapping import PersistentMapping

    import objstore
    from objstore.storages import MemoryStorage

    db = objstore.DB(MemoryStorage())
    tm1, tm2 = transaction.TransactionManager(), transaction.TransactionManager()
    c1, c2 = db.open(tm1), db.open(tm2)
    c1.root()['tree'] = OOBTree()
    c1.root()['tree']['k'] = PersistentMapping()
    tm1.commit()
    tm2.begin()
    c1.root()['tree']['k'] = PersistentMapping(x=1)
    c2.root()['tree']['other'] = 2
    tm1.commit()
    with pytest.raises(errors.ConflictError):
        tm2.commit()
    tm2.abort()
    db.close()
