"""ZODB's record format: references and class names, checked against ZODB."""
import pytest
from hypothesis import given, strategies as st

from objstore import errors
from objstore.serialize import (class_name_of, dumps_record, loads_record,
                                pack_extension, persistent_ids, references,
                                unpack_extension)

OID1 = b'\0' * 7 + b'\1'
OID2 = b'\0' * 7 + b'\2'


class Plain:
    pass


def _record_with_refs(pids, klass=Plain):
    markers = [object() for _ in pids]
    table = {id(m): pid for m, pid in zip(markers, pids)}
    return dumps_record(klass, {'refs': markers},
                        persistent_id=lambda obj: table.get(id(obj)))


def test_references_follow_every_strong_form_and_skip_weak_and_foreign():
    data = _record_with_refs([
        OID1,                          # plain oid
        (OID2, Plain),                 # oid with class
        ['w', (b'\0' * 7 + b'\3',)],   # weak
        ['m', ('other', b'\0' * 7 + b'\4', Plain)],  # cross-database
        ['n', ('other', b'\0' * 7 + b'\5')],
    ])
    assert references(data) == [OID1, OID2]
    assert len(persistent_ids(data)) == 5


def test_references_match_zodb_referencesf_on_zodb_records():
    ZODB = pytest.importorskip('ZODB')
    import transaction
    from persistent.mapping import PersistentMapping
    from ZODB.serialize import referencesf
    db = ZODB.DB(None)
    conn = db.open()
    root = conn.root()
    root['a'] = PersistentMapping()
    root['b'] = [PersistentMapping(), PersistentMapping()]
    transaction.commit()
    for oid in (b'\0' * 8, root['a']._p_oid):
        data, _ = db.storage.load(oid)
        assert references(data) == referencesf(data)
    db.close()


def test_references_appends_to_given_list():
    oids = [b'x' * 8]
    assert references(_record_with_refs([OID1]), oids) is oids
    assert oids == [b'x' * 8, OID1]


def test_record_without_references_is_not_unpickled():
    # No BINPERSID/PERSID byte at all: must not even be parsed.
    assert references(b'not a pickle') == []


def test_unreadable_record_raises_serialization_error():
    with pytest.raises(errors.SerializationError):
        references(b'\x80\x03Q garbage')


@pytest.mark.parametrize('meta, expected', [
    (Plain, 'test_serialize.Plain'),
    ((Plain, None), 'test_serialize.Plain'),
    ((Plain, (1, 2)), 'test_serialize.Plain'),
    ((('some.module', 'Klass'), None), 'some.module.Klass'),
])
def test_class_name_of_every_class_metadata_form(meta, expected):
    assert class_name_of(dumps_record(meta, {})) == expected


def test_class_name_of_garbage_is_empty():
    assert class_name_of(b'garbage') == ''


def test_class_name_does_not_import_the_class():
    data = dumps_record((('no.such.module', 'Missing'), None), {})
    assert class_name_of(data) == 'no.such.module.Missing'


def test_loads_record_round_trip_with_persistent_load():
    data = _record_with_refs([OID1])
    meta, state = loads_record(data, persistent_load=lambda pid: ('ref', pid))
    assert meta is Plain
    assert state == {'refs': [('ref', OID1)]}


@given(st.dictionaries(st.text(max_size=10),
                       st.one_of(st.integers(), st.text(), st.binary()),
                       max_size=5))
def test_extension_round_trip(ext):
    data = pack_extension(ext)
    assert unpack_extension(data) == ext
    assert (data == b'') == (not ext)
