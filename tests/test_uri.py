"""objstore.open and objstore.connection: paths, URIs, parameters, plugins."""
import importlib.metadata
import pathlib
import sys
import urllib.parse

import pytest
import transaction
from hypothesis import given, settings
from hypothesis import strategies as st
from persistent.mapping import PersistentMapping

from objstore import errors
from objstore.serialize import dumps_record
from objstore.storages import FileStorage, MemoryStorage
from objstore.storages.base import z64


def _uri():
    from objstore import uri
    return uri


def _commit_root(storage, state):
    """Write a root record straight to ``storage``; return the tid."""
    txn = transaction.Transaction()
    storage.tpc_begin(txn)
    try:
        serial = storage.loadBefore(z64, b'\xff' * 8)[1]
    except errors.POSKeyError:
        serial = z64
    storage.store(z64, serial,
                  dumps_record(PersistentMapping, {'data': state}), '', txn)
    storage.tpc_vote(txn)
    return storage.tpc_finish(txn)


# -- parameters ---------------------------------------------------------------

@pytest.mark.parametrize('text, value', [
    ('true', True), ('1', True), ('yes', True), ('TRUE', True), ('Yes', True),
    ('false', False), ('0', False), ('no', False), ('False', False),
])
def test_boolean_parameters_accept_true_false_1_0_yes_no(text, value):
    _parsed, storage_options, _db = _uri().parse(
        'file:///tmp/x.fs?read_only=%s&fsync=%s' % (text, text))
    assert storage_options == {'read_only': value, 'fsync': value}


def test_parameters_split_between_storage_and_db():
    parsed, storage_options, db_options = _uri().parse(
        'file:///srv/data.fs?cache_size=500&cache_size_bytes=1000000'
        '&pool_size=3&read_only=no&fsync=0&keep_history=1&create=yes'
        '&database_name=main')
    assert parsed.scheme == 'file' and parsed.path == '/srv/data.fs'
    assert storage_options == {'read_only': False, 'fsync': False,
                               'keep_history': True, 'create': True}
    assert db_options == {'cache_size': 500, 'cache_size_bytes': 1000000,
                          'pool_size': 3, 'database_name': 'main'}


def test_keywords_override_the_query_and_are_checked_the_same_way():
    _p, storage_options, db_options = _uri().parse(
        'file:///a.fs?read_only=true&cache_size=5',
        {'read_only': False, 'cache_size': '7', 'fsync': 'no'})
    assert storage_options == {'read_only': False, 'fsync': False}
    assert db_options == {'cache_size': 7}


@pytest.mark.parametrize('uri, words', [
    ('file:///a.fs?read_only=maybe', ['read_only', "'maybe'", 'boolean',
                                      'file:///a.fs?read_only=maybe']),
    ('file:///a.fs?read_only=', ['read_only', 'boolean']),
    ('file:///a.fs?cache_size=big', ['cache_size', "'big'", 'whole number',
                                     'file:///a.fs']),
    ('file:///a.fs?pool_size=2.5', ['pool_size', 'whole number']),
    ('file:///a.fs?pool_size=-1', ['pool_size', "'-1'"]),
    ('file:///a.fs?colour=blue', ['unknown parameter', "'colour'",
                                  'cache_size', 'read_only', 'file:///a.fs']),
    ('file:///a.fs?fsync=1&fsync=0', ["'fsync'", 'twice']),
    ('file:///a.fs#top', ['fragment', 'file:///a.fs']),
])
def test_bad_parameters_name_the_parameter_and_the_uri(uri, words):
    with pytest.raises(_uri().URIError) as info:
        _uri().parse(uri)
    for word in words:
        assert word in str(info.value)


def test_uri_error_is_an_objstore_error_and_a_value_error():
    assert issubclass(_uri().URIError, errors.ObjstoreError)
    assert issubclass(_uri().URIError, ValueError)


@pytest.mark.parametrize('options, word', [
    ({'cache_size': True}, 'cache_size'),
    ({'cache_size': -3}, 'cache_size'),
    ({'read_only': 'perhaps'}, 'read_only'),
    ({'readonly': True}, 'readonly'),
    ({'database_name': ''}, 'database_name'),
])
def test_bad_keyword_options_are_refused(tmp_path, options, word):
    with pytest.raises(_uri().URIError, match=word):
        _uri().open_storage(str(tmp_path / 'data.fs'), **options)
    assert not (tmp_path / 'data.fs').exists()


# -- memory:// ----------------------------------------------------------------

@pytest.mark.parametrize('uri, name', [
    ('memory://', 'MemoryStorage'), ('memory:///', 'MemoryStorage'),
    ('memory://scratch', 'scratch'), ('memory://my%20db', 'my db'),
    ('MEMORY://', 'MemoryStorage'),
])
def test_memory_uri_gives_a_new_memory_storage(uri, name):
    storage = _uri().open_storage(uri)
    try:
        assert isinstance(storage, MemoryStorage)
        assert storage.getName() == name
        assert storage.lastTransaction() == z64
    finally:
        storage.close()


def test_memory_storages_of_the_same_name_are_separate():
    first = _uri().open_storage('memory://same')
    second = _uri().open_storage('memory://same')
    _commit_root(first, 1)
    assert second.lastTransaction() == z64
    first.close()
    second.close()


@pytest.mark.parametrize('uri, word', [
    ('memory://?fsync=true', 'fsync'),
    ('memory://?read_only=true', 'read_only'),
    ('memory://?create=false', 'create'),
    ('memory://?keep_history=false', 'keep_history'),
    ('memory://name/path', 'without a path'),
])
def test_memory_uri_refuses_what_does_not_apply(uri, word):
    with pytest.raises(_uri().URIError, match=word) as info:
        _uri().open_storage(uri)
    assert uri in str(info.value)


def test_memory_uri_accepts_db_parameters_and_keep_history_true():
    _uri().open_storage('memory://?keep_history=true&cache_size=10').close()


# -- file:// and paths --------------------------------------------------------

def test_file_uri_opens_an_objstore_file_storage(tmp_path):
    path = tmp_path / 'data.fs'
    storage = _uri().open_storage('file://%s?fsync=false' % path)
    try:
        assert isinstance(storage, FileStorage)
        assert not storage.isReadOnly()
        assert storage._fsync is False
        _commit_root(storage, 'x')
    finally:
        storage.close()
    assert path.exists()


def test_file_uri_with_localhost_and_escapes(tmp_path):
    folder = tmp_path / 'a folder'
    folder.mkdir()
    storage = _uri().open_storage('file://localhost%s/data%%2Bone.fs'
                                  % str(folder).replace(' ', '%20'))
    storage.close()
    assert (folder / 'data+one.fs').exists()


@pytest.mark.parametrize('uri, words', [
    ('file://data.fs', ["'data.fs' reads as a host name", 'file:///']),
    ('file://./data.fs', ['relative', 'file:///']),
    ('file://~/data.fs', ['relative']),
    ('file:relative.fs', None),
    ('zodb+file://Data.fs', ['host name', 'zodb+file:///']),
])
def test_relative_file_uris_are_refused(uri, words):
    if words is None:
        # Without "//" it is no URI at all: a path whose name has a colon.
        assert not _uri()._URI.match(uri)
        return
    with pytest.raises(_uri().URIError) as info:
        _uri().open_storage(uri)
    for word in words:
        assert word in str(info.value)
    assert uri in str(info.value)


def test_file_uri_on_another_host_is_refused():
    with pytest.raises(_uri().URIError, match="host 'example.com' is not this machine"):
        _uri().open_storage('file://example.com/srv/data.fs')


def test_path_targets_str_and_pathlike(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for target in ('rel.fs', tmp_path / 'p.fs', str(tmp_path / 's.fs'),
                   bytes(tmp_path / 'b.fs')):
        storage = _uri().open_storage(target)
        assert isinstance(storage, FileStorage)
        storage.close()
    assert sorted(p.name for p in tmp_path.glob('*.fs')) == [
        'b.fs', 'p.fs', 'rel.fs', 's.fs']


@pytest.mark.parametrize('form', ['path', 'pathlike', 'uri', 'uri_create'])
def test_an_existing_file_is_never_truncated(tmp_path, form):
    path = tmp_path / 'keep.fs'
    storage = FileStorage(str(path))
    tid = _commit_root(storage, 'precious')
    storage.close()
    size = path.stat().st_size
    target = {'path': str(path), 'pathlike': path, 'uri': 'file://%s' % path,
              'uri_create': 'file://%s?create=true' % path}[form]
    storage = _uri().open_storage(target)
    try:
        assert storage.lastTransaction() == tid
        assert storage.loadBefore(z64, b'\xff' * 8)[1] == tid
    finally:
        storage.close()
    assert path.stat().st_size >= size


def test_read_only_file(tmp_path):
    path = tmp_path / 'data.fs'
    FileStorage(str(path)).close()
    storage = _uri().open_storage('file://%s?read_only=true' % path)
    try:
        assert storage.isReadOnly()
        with pytest.raises(errors.ReadOnlyError):
            storage.new_oid()
    finally:
        storage.close()


@pytest.mark.parametrize('query, word', [
    ('create=false', 'create=false'), ('read_only=true', 'read-only')])
def test_missing_file_without_create_is_refused(tmp_path, query, word):
    path = tmp_path / 'missing.fs'
    with pytest.raises(_uri().URIError, match=word) as info:
        _uri().open_storage('file://%s?%s' % (path, query))
    assert str(path) in str(info.value)
    assert not path.exists()
    with pytest.raises(_uri().URIError, match=word):
        _uri().open_storage(path, **{query.split('=')[0]: query.endswith('true')})


def test_file_storage_keeps_history_always(tmp_path):
    with pytest.raises(_uri().URIError, match='keep_history=false'):
        _uri().open_storage('file://%s/d.fs?keep_history=false' % tmp_path)
    _uri().open_storage('file://%s/d.fs?keep_history=true' % tmp_path).close()


def test_not_a_target_is_a_type_error():
    with pytest.raises(TypeError, match='path, a URI or a storage'):
        _uri().open_storage(42)


# -- schemes and entry points -------------------------------------------------

def test_builtin_schemes_are_registered_as_entry_points():
    registered = {ep.name: ep.value for ep in importlib.metadata.entry_points(
        group='objstore.storages')}
    assert registered['memory'] == 'objstore.uri:open_memory'
    assert registered['file'] == 'objstore.uri:open_file'
    assert registered['zodb+file'] == 'objstore.zodb:open_zodb_file'
    known = _uri().schemes()
    for name in ('memory', 'file', 'zodb+file'):
        assert known[name].value == registered[name]


def test_unknown_scheme_lists_the_known_ones():
    with pytest.raises(_uri().URIError) as info:
        _uri().open_storage('mysql://db/x')
    message = str(info.value)
    assert "unknown storage scheme 'mysql'" in message
    # Sorted, and every storage this package registers is named.
    assert 'file, memory, pmem, postgresql, zodb+file' in message
    assert 'objstore.storages' in message


def plugin_factory(parsed, options):
    """A third-party storage factory, registered by the test below."""
    storage = MemoryStorage('plugin:' + parsed.netloc)
    storage.seen_options = options
    return storage


def _with_plugin(monkeypatch, value):
    uri = _uri()
    real = importlib.metadata.entry_points

    def entry_points(**selection):
        found = list(real(**selection))
        if selection.get('group') == uri.ENTRY_POINT_GROUP:
            found.append(importlib.metadata.EntryPoint(
                'toy', value, uri.ENTRY_POINT_GROUP))
        return found

    monkeypatch.setattr(importlib.metadata, 'entry_points', entry_points)


def test_a_plugin_scheme_is_found_through_its_entry_point(monkeypatch):
    _with_plugin(monkeypatch, 'test_uri:plugin_factory')
    monkeypatch.syspath_prepend(str(pathlib.Path(__file__).parent))
    monkeypatch.setitem(sys.modules, 'test_uri', sys.modules[__name__])
    storage = _uri().open_storage('toy://here?read_only=1&cache_size=3')
    assert storage.getName() == 'plugin:here'
    assert storage.seen_options == {'read_only': True}
    storage.close()
    assert 'toy' in _uri().schemes()


def test_a_plugin_whose_extra_is_missing_says_what_to_install(monkeypatch):
    _with_plugin(monkeypatch, 'objstore_no_such_module:factory')
    with pytest.raises(errors.Unsupported) as info:
        _uri().open_storage('toy://x')
    assert 'objstore_no_such_module' in str(info.value)
    assert 'toy://' in str(info.value)


def test_zodb_file_without_zodb_names_the_extra(monkeypatch, tmp_path):
    # As if ZODB were not installed: importing it fails.
    monkeypatch.setitem(sys.modules, 'ZODB', None)
    monkeypatch.delitem(sys.modules, 'objstore.zodb', raising=False)
    with pytest.raises(errors.Unsupported) as info:
        _uri().open_storage('zodb+file://%s/Data.fs' % tmp_path)
    assert "pip install 'objstore[zodb]'" in str(info.value)
    assert 'ZODB' in str(info.value)
    assert not (tmp_path / 'Data.fs').exists()


def test_objstore_works_without_zodb(tmp_path):
    # BTrees imports ZODB whenever it is installed, so hide it: objstore
    # itself must neither need it nor import objstore.zodb.
    import subprocess
    code = (
        'import sys; sys.modules["ZODB"] = None\n'
        'import objstore\n'
        'with objstore.connection(sys.argv[1]) as conn:\n'
        '    conn.root()["x"] = 1\n'
        '    conn.transaction_manager.commit()\n'
        'with objstore.connection("file://" + sys.argv[1]) as conn:\n'
        '    print(conn.root()["x"], "objstore.zodb" in sys.modules)\n')
    out = subprocess.run([sys.executable, '-c', code, str(tmp_path / 'd.fs')],
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ['1', 'False']


# -- zodb+file:// --------------------------------------------------------------

def _zodb_data_fs(path):
    """A Data.fs written by ZODB itself, with root['answer'] = 42."""
    import ZODB
    import ZODB.FileStorage
    db = ZODB.DB(ZODB.FileStorage.FileStorage(str(path)))
    with db.transaction('by ZODB') as conn:
        conn.root()['answer'] = 42
    db.close()


def test_zodb_file_opens_a_data_fs_written_by_zodb(tmp_path):
    pytest.importorskip('ZODB')
    from objstore import interfaces
    from objstore.serialize import loads_record
    path = tmp_path / 'Data.fs'
    _zodb_data_fs(path)
    storage = _uri().open_storage('zodb+file://%s?read_only=true' % path)
    try:
        assert storage.isReadOnly()
        assert interfaces.IStorage.providedBy(storage)
        data, _tid = storage.load(z64)
        _klass, state = loads_record(data)
        assert state['data']['answer'] == 42
        with pytest.raises(errors.ReadOnlyError):
            storage.new_oid()
    finally:
        storage.close()


def test_zodb_file_parameters(tmp_path):
    pytest.importorskip('ZODB')
    missing = tmp_path / 'Missing.fs'
    with pytest.raises(_uri().URIError, match='create=false'):
        _uri().open_storage('zodb+file://%s?create=false' % missing)
    with pytest.raises(_uri().URIError, match='fsync=false'):
        _uri().open_storage('zodb+file://%s?fsync=false' % missing)
    with pytest.raises(_uri().URIError, match='keep_history=false'):
        _uri().open_storage('zodb+file://%s?keep_history=no' % missing)
    assert not missing.exists()


def test_zodb_file_never_truncates(tmp_path):
    pytest.importorskip('ZODB')
    path = tmp_path / 'Data.fs'
    _zodb_data_fs(path)
    size = path.stat().st_size
    _uri().open_storage('zodb+file://%s?create=true' % path).close()
    assert path.stat().st_size == size


def test_zodb_file_locked_by_another_writer(tmp_path):
    pytest.importorskip('ZODB')
    path = tmp_path / 'Data.fs'
    first = _uri().open_storage('zodb+file://%s' % path)
    try:
        with pytest.raises(errors.StorageLockedError, match='Data.fs'):
            _uri().open_storage('zodb+file://%s' % path)
    finally:
        first.close()


# -- open() and connection() -----------------------------------------------------

def test_open_a_path_gives_a_db_on_a_file_storage(tmp_path):
    import objstore
    db = objstore.open(tmp_path / 'data.fs', cache_size=50, pool_size=2,
                       database_name='main')
    try:
        assert isinstance(db, objstore.DB)
        assert isinstance(db.storage, FileStorage)
        assert (db.cache_size, db.pool_size, db.database_name) == (50, 2, 'main')
        with db.transaction() as conn:
            conn.root()['x'] = 1
    finally:
        db.close()
    db = objstore.open(str(tmp_path / 'data.fs'))
    try:
        with db.transaction() as conn:
            assert conn.root()['x'] == 1
    finally:
        db.close()


def test_open_a_uri_passes_db_parameters_to_the_db(tmp_path):
    import objstore
    db = objstore.open('file://%s/d.fs?cache_size=12&cache_size_bytes=4096'
                       '&pool_size=1&fsync=false' % tmp_path)
    try:
        assert (db.cache_size, db.cache_size_bytes, db.pool_size) == (12, 4096, 1)
        assert db.storage._fsync is False
    finally:
        db.close()


def test_open_memory_uri():
    import objstore
    db = objstore.open('memory://scratch')
    try:
        assert isinstance(db.storage, MemoryStorage)
        assert db.getName() == 'scratch'
    finally:
        db.close()


def test_open_a_storage_object_hands_it_to_the_db():
    import objstore
    storage = MemoryStorage()
    db = objstore.open(storage, cache_size=9)
    assert db.storage is storage and db.cache_size == 9
    db.close()
    with pytest.raises(errors.StorageClosedError):
        storage.lastTransaction()


def test_open_a_storage_object_refuses_storage_parameters():
    import objstore
    with pytest.raises(_uri().URIError, match='read_only'):
        objstore.open(MemoryStorage(), read_only=True)


def test_open_closes_the_storage_when_the_db_fails(tmp_path, monkeypatch):
    import objstore
    import objstore.db

    def failing_db(storage, **options):
        failing_db.storage = storage
        raise RuntimeError('no DB today')

    monkeypatch.setattr(objstore.db, 'DB', failing_db)
    with pytest.raises(RuntimeError):
        objstore.open(tmp_path / 'd.fs')
    with pytest.raises(errors.StorageClosedError):
        failing_db.storage.lastTransaction()


def test_connection_yields_an_open_connection_and_keeps_what_was_committed(tmp_path):
    import objstore
    path = tmp_path / 'data.fs'
    with objstore.connection(path) as conn:
        assert conn.opened
        conn.root()['kept'] = PersistentMapping(n=1)
        conn.transaction_manager.commit()
        conn.root()['dropped'] = 2          # never committed
        db = conn.db()
    assert not conn.opened
    with pytest.raises(errors.ConnectionStateError):
        db.open()
    with pytest.raises(errors.StorageClosedError):
        db.storage.lastTransaction()
    with objstore.connection('file://%s?read_only=true' % path) as conn:
        assert sorted(conn.root()) == ['kept']
        assert conn.root()['kept']['n'] == 1


def test_connection_aborts_and_closes_when_the_block_raises(tmp_path):
    import objstore
    path = tmp_path / 'data.fs'
    with pytest.raises(ZeroDivisionError):
        with objstore.connection(path) as conn:
            conn.root()['x'] = 1
            1 / 0
    assert not conn.opened
    with pytest.raises(errors.StorageClosedError):
        conn.db().storage.lastTransaction()
    with objstore.connection(path) as conn:
        assert 'x' not in conn.root()


def test_connection_with_its_own_transaction_manager(tmp_path):
    import objstore
    manager = transaction.TransactionManager()
    with objstore.connection(tmp_path / 'd.fs', transaction_manager=manager) as conn:
        assert conn.transaction_manager is manager
        conn.root()['a'] = 1
        manager.commit()
        conn.root()['b'] = 2
    with objstore.connection(tmp_path / 'd.fs') as conn:
        assert sorted(conn.root()) == ['a']


def test_zodb_file_uri_gives_a_db_on_a_data_fs_written_by_zodb(tmp_path):
    pytest.importorskip('ZODB')
    import objstore
    path = tmp_path / 'Data.fs'
    _zodb_data_fs(path)
    with objstore.connection('zodb+file://%s' % path) as conn:
        assert conn.root()['answer'] == 42
        conn.root()['from_objstore'] = 'hello'
        conn.transaction_manager.commit()
    import ZODB
    db = ZODB.DB(str(path))
    with db.transaction() as conn:
        assert conn.root()['from_objstore'] == 'hello'
    db.close()


def test_a_zodb_storage_object_is_wrapped_for_objstore(tmp_path):
    pytest.importorskip('ZODB')
    import objstore
    import ZODB.FileStorage
    from objstore.zodb import ZODBStorageWrapper
    raw = ZODB.FileStorage.FileStorage(str(tmp_path / 'Data.fs'))
    db = objstore.open(raw)
    try:
        assert isinstance(db.storage, ZODBStorageWrapper)
        assert db.storage.zodb_storage is raw
    finally:
        db.close()


def test_connection_closed_inside_the_block(tmp_path):
    import objstore
    with objstore.connection(tmp_path / 'd.fs') as conn:
        conn.root()['a'] = 1
        conn.transaction_manager.commit()
        conn.close()
    with objstore.connection(tmp_path / 'd.fs') as conn:
        assert conn.root()['a'] == 1


def test_file_uri_naming_this_machine_is_local(tmp_path):
    import socket
    storage = _uri().open_storage('file://%s%s/d.fs' % (socket.gethostname(), tmp_path))
    storage.close()
    assert (tmp_path / 'd.fs').exists()


_SPELLINGS = {True: ['true', '1', 'yes', 'True', 'YES'],
              False: ['false', '0', 'no', 'False', 'NO']}


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({}, optional={
    'read_only': st.booleans(), 'fsync': st.booleans(),
    'keep_history': st.booleans(), 'create': st.booleans(),
    'cache_size': st.integers(0, 10**9), 'cache_size_bytes': st.integers(0, 10**12),
    'pool_size': st.integers(0, 1000),
    'database_name': st.text(min_size=1, max_size=12)}), st.data())
def test_query_parsing_recovers_the_parameters(params, data):
    # Oracle: whatever spelling and order, parsing gives back the values.
    items = []
    for name, value in params.items():
        if isinstance(value, bool):
            text = data.draw(st.sampled_from(_SPELLINGS[value]))
        else:
            text = str(value)
        items.append((name, text))
    items = data.draw(st.permutations(items))
    uri = 'file:///tmp/x.fs?' + urllib.parse.urlencode(items)
    _parsed, storage_options, db_options = _uri().parse(uri)
    assert {**storage_options, **db_options} == params
    assert set(storage_options) <= set(_uri().STORAGE_OPTIONS)
    assert set(db_options) <= set(_uri().DB_OPTIONS)
