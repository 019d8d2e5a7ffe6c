"""A PostgreSQL database per test, for the PostgreSQL storage's tests.

The server is the one at ``127.0.0.1:5432`` (trust authentication), reached
as user ``postgres`` or ``root``; ``OBJSTORE_PG_ADMIN_DSN`` names another
maintenance database to connect to (any libpq DSN or URI). Tests that need
the server call :func:`pg_dsn_or_skip` or use a fixture below (import them
into the test module: ``from objstore.testing.pg import pg_database``):

* ``pg_database``: the URI of a fresh, empty database made for the test
  and dropped after it (its leftover sessions are terminated first);
* ``pg_module_database``: one such database shared by a test module.

Storage factories that are not fixtures (``tests/db_fixtures.py``) call
:func:`new_schema_dsn`: a schema of its own in one database shared by the
whole test process (dropped when the process exits).

Without a reachable server these skip, saying why, except when the
environment variable ``CI`` is ``true``: CI must run them, so they fail.

The URIs are ``postgresql://user@host:port/objstore_test_<random>``: both
``psycopg.connect`` and ``PostgreSQLStorage`` take them, and so does
``objstore.open``.
"""
import atexit
import itertools
import os
import secrets
import urllib.parse

import pytest

__all__ = ['server_dsn', 'pg_dsn_or_skip', 'create_database',
           'drop_database', 'database_uri', 'schema_dsn', 'new_schema_dsn',
           'shared_database', 'pg_database', 'pg_module_database']

HOST = '127.0.0.1'
PORT = 5432
USERS = ('postgres', 'root')
PREFIX = 'objstore_test_'

_found = []     # [(admin_dsn, why)] once the server was looked for
_shared = []    # [(name, uri)] of the database new_schema_dsn uses
_schema_numbers = itertools.count(1)


def _connect(dsn):
    import psycopg
    return psycopg.connect(dsn, autocommit=True, connect_timeout=5)


def server_dsn():
    """``(admin_dsn, why)``: a DSN of the server's maintenance database, or
    None and the reason no server could be used."""
    if _found:
        return _found[0]
    try:
        import psycopg  # noqa: F401 -- only to say it is missing
    except ImportError:
        result = (None, "psycopg is not installed (objstore's 'postgresql'"
                  " extra)")
        _found.append(result)
        return result
    given = os.environ.get('OBJSTORE_PG_ADMIN_DSN')
    candidates = [given] if given else [
        'postgresql://%s@%s:%d/postgres' % (user, HOST, PORT)
        for user in USERS]
    errors = []
    for dsn in candidates:
        try:
            with _connect(dsn):
                pass
        except Exception as exc:
            errors.append('%s: %s' % (dsn, str(exc).strip() or exc))
            continue
        result = (dsn, None)
        break
    else:
        result = (None, 'no PostgreSQL server reachable (%s)'
                  % '; '.join(errors))
    _found.append(result)
    return result


def _unavailable(why):
    if os.environ.get('CI') == 'true':
        pytest.fail('CI=true requires the PostgreSQL tests to run, but %s'
                    % why, pytrace=False)
    pytest.skip(why)


def pg_dsn_or_skip():
    """The admin DSN of the test server; skips the calling test when there
    is none (fails it under ``CI=true``)."""
    dsn, why = server_dsn()
    if dsn is None:
        _unavailable(why)
    return dsn


def database_uri(admin_dsn, name):
    """The URI of database ``name`` on the server of ``admin_dsn``."""
    with _connect(admin_dsn) as conn:
        info = conn.info
        user, host, port = info.user, info.host, info.port
    return 'postgresql://%s@%s:%s/%s' % (
        urllib.parse.quote(user, safe=''), host, port, name)


def create_database(admin_dsn=None):
    """Create an empty database; return ``(name, uri)``."""
    admin_dsn = admin_dsn or pg_dsn_or_skip()
    name = PREFIX + secrets.token_hex(6)
    with _connect(admin_dsn) as conn:
        conn.execute('CREATE DATABASE %s' % name)
    return name, database_uri(admin_dsn, name)


def drop_database(name, admin_dsn=None):
    """Drop database ``name``, ending the sessions still connected to it."""
    from psycopg import sql
    if not name.startswith(PREFIX):
        raise ValueError('refusing to drop %r: not a test database' % name)
    admin_dsn = admin_dsn or pg_dsn_or_skip()
    with _connect(admin_dsn) as conn:
        conn.execute(
            'SELECT pg_terminate_backend(pid) FROM pg_stat_activity'
            ' WHERE datname = %s AND pid <> pg_backend_pid()', (name,))
        conn.execute(sql.SQL('DROP DATABASE IF EXISTS {} WITH (FORCE)')
                     .format(sql.Identifier(name)))


def schema_dsn(uri, schema):
    """``uri`` with ``schema`` (created if missing) first on the search
    path: storages opened on it keep their tables apart from those of
    other schemas of the same database (and use their own commit lock and
    notification channel, which the storage derives from its tables)."""
    from psycopg import sql
    with _connect(uri) as conn:
        conn.execute(sql.SQL('CREATE SCHEMA IF NOT EXISTS {}')
                     .format(sql.Identifier(schema)))
    separator = '&' if '?' in uri else '?'
    return '%s%soptions=%s' % (uri, separator, urllib.parse.quote(
        '-csearch_path=%s' % schema, safe=''))


def shared_database():
    """The URI of one database for the whole test process, created at the
    first call (skips the calling test when there is no server) and
    dropped when the process exits."""
    if not _shared:
        admin = pg_dsn_or_skip()
        name, uri = create_database(admin)
        _shared.append((name, uri))
        atexit.register(drop_database, name, admin)
    return _shared[0][1]


def new_schema_dsn():
    """A DSN whose tables go to a new, empty schema of
    :func:`shared_database`: a storage made on it starts empty, and
    another made on the same DSN sees the same data."""
    return schema_dsn(shared_database(),
                      'objstore_%d_%d' % (os.getpid(), next(_schema_numbers)))


@pytest.fixture
def pg_database():
    """The URI of a fresh database for this test, dropped afterwards."""
    admin = pg_dsn_or_skip()
    name, uri = create_database(admin)
    try:
        yield uri
    finally:
        drop_database(name, admin)


@pytest.fixture(scope='module')
def pg_module_database():
    """The URI of a fresh database shared by the tests of one module;
    tests keep apart with :func:`schema_dsn`."""
    admin = pg_dsn_or_skip()
    name, uri = create_database(admin)
    try:
        yield uri
    finally:
        drop_database(name, admin)
