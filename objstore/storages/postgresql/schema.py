"""The tables of the PostgreSQL storage, their version, and creating them.

The tables live in the first schema of the connection's ``search_path``
(``public`` unless the DSN says otherwise, e.g. ``options=-csearch_path=app``),
so several storages can share one database in separate schemas.

Layout, version 1 (tids and oids are the 8-byte big-endian values of ZODB
read as signed 64-bit integers; every tid ZODB can make is below 2**63):

1. ``objstore_meta``: one row. ``version`` (this layout's number),
   ``keep_history`` (the mode the tables were made for), ``history_start``
   (the newest tid a pack marked packed: what ``history_start()`` returns).
2. ``transactions``: one row per committed transaction. ``tid`` (primary
   key), ``packed`` (status ``'p'``: thinned by pack, not undoable),
   ``username``, ``description``, ``extension`` (the pickled extension
   dict, as given). Also kept history-free (iteration, and looking up a
   commit whose outcome was unknown); pack removes the rows of
   transactions none of whose records is left.
3. ``object_state``: object revisions. ``zoid``, ``tid``, ``state`` (the
   record; NULL for a deletion record). History-preserving: every revision
   (primary key ``(zoid, tid)``) and ``data_txn`` (an earlier tid holding
   the same data: undo and restore). History-free: the current revision
   only (primary key ``zoid``). Both have ``seq`` (the store order within
   the transaction, for iteration) and index ``tid`` (polling, iteration).
4. ``oid_seq``: the sequence new oids are drawn from, one block of
   :data:`OID_BLOCK` oids per value.

The commit lock is a transaction-level advisory lock keyed on the oid of
the ``transactions`` table, and commits are announced with NOTIFY on a
channel named after it: both stay apart between schemas and databases.
"""
from psycopg import sql

from objstore import errors

#: The version of the layout above; a database with a newer one is refused.
SCHEMA_VERSION = 1

#: new_oid draws one value of oid_seq per this many oids.
OID_BLOCK = 64

#: The first key of the advisory locks (the second is the table's oid).
LOCK_SPACE = 0x6f62   # 'ob'
PACK_LOCK_SPACE = 0x6f63

_COMMON = """
CREATE TABLE objstore_meta (
    version       INTEGER NOT NULL,
    keep_history  BOOLEAN NOT NULL,
    history_start BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE transactions (
    tid         BIGINT PRIMARY KEY,
    packed      BOOLEAN NOT NULL DEFAULT FALSE,
    username    BYTEA NOT NULL,
    description BYTEA NOT NULL,
    extension   BYTEA NOT NULL
);
CREATE SEQUENCE oid_seq;
"""

_HISTORY_PRESERVING = """
CREATE TABLE object_state (
    zoid     BIGINT NOT NULL,
    tid      BIGINT NOT NULL,
    seq      INTEGER NOT NULL,
    state    BYTEA,
    data_txn BIGINT,
    PRIMARY KEY (zoid, tid)
);
CREATE INDEX object_state_tid ON object_state (tid);
"""

_HISTORY_FREE = """
CREATE TABLE object_state (
    zoid  BIGINT PRIMARY KEY,
    tid   BIGINT NOT NULL,
    seq   INTEGER NOT NULL,
    state BYTEA
);
CREATE INDEX object_state_tid ON object_state (tid);
"""


class Schema:
    """What a storage learned about its tables when it opened them."""

    def __init__(self, keep_history, table_oid):
        self.keep_history = keep_history
        #: The advisory lock serializing commits (two int4 keys).
        self.lock_key = (LOCK_SPACE, table_oid)
        self.pack_lock_key = (PACK_LOCK_SPACE, table_oid)
        #: The LISTEN/NOTIFY channel of commits.
        self.channel = 'objstore_%d' % table_oid


def _meta(conn):
    """``(version, keep_history)`` of the tables, or None if there are none."""
    row = conn.execute("SELECT to_regclass('objstore_meta') IS NOT NULL"
                       ).fetchone()
    if not row[0]:
        return None
    return conn.execute(
        'SELECT version, keep_history FROM objstore_meta').fetchone()


def open_schema(conn, name, keep_history, create):
    """Check (and, when ``create``, make) the tables; return a :class:`Schema`.

    ``conn`` is an autocommit connection. Raises ``UnsupportedVersionError``
    for tables of a newer objstore, ``StorageError`` for tables of the
    other history mode or none at all when ``create`` is false.
    """
    meta = _meta(conn)
    if meta is None:
        if not create:
            raise errors.StorageError(
                '%s has no objstore tables (schema %s); open it with'
                ' create_schema=True (and not read-only) to create them'
                % (name, _current_schema(conn)))
        meta = _create(conn, keep_history)
    version, tables_keep_history = meta
    if version > SCHEMA_VERSION:
        raise errors.UnsupportedVersionError(
            name, 'objstore schema version %d is newer than this objstore'
            ' reads (version %d); upgrade objstore' % (version, SCHEMA_VERSION))
    if version < SCHEMA_VERSION:
        raise errors.UnsupportedVersionError(
            name, 'objstore schema version %d is older than this objstore'
            ' reads (version %d) and cannot be upgraded in place'
            % (version, SCHEMA_VERSION))
    if bool(tables_keep_history) != bool(keep_history):
        raise errors.StorageError(
            '%s holds a %s objstore database; open it with keep_history=%s'
            % (name, 'history-preserving' if tables_keep_history
               else 'history-free', bool(tables_keep_history)))
    table_oid = conn.execute(
        "SELECT 'transactions'::regclass::oid::int4").fetchone()[0]
    return Schema(bool(keep_history), table_oid)


def _current_schema(conn):
    return conn.execute('SELECT current_schema()').fetchone()[0]


def _create(conn, keep_history):
    # Two processes may open an empty database at once: one creates the
    # tables while the other waits for the lock, then finds them. The
    # check runs in a transaction begun after the lock was granted, so it
    # sees the other's tables (a transaction begun before would look them
    # up in catalog caches as they were when it began).
    schema = _current_schema(conn)
    if schema is None:
        raise errors.StorageError(
            'no schema to create the objstore tables in: the search_path'
            ' names none that exists')
    key = (LOCK_SPACE, schema)
    conn.execute('SELECT pg_advisory_lock(%s::int4, hashtext(%s))', key)
    try:
        with conn.transaction():
            meta = _meta(conn)
            if meta is not None:
                return meta
            conn.execute(_COMMON + (_HISTORY_PRESERVING if keep_history
                                    else _HISTORY_FREE))
            conn.execute('INSERT INTO objstore_meta (version, keep_history)'
                         ' VALUES (%s, %s)',
                         (SCHEMA_VERSION, bool(keep_history)))
    finally:
        conn.execute('SELECT pg_advisory_unlock(%s::int4, hashtext(%s))', key)
    return SCHEMA_VERSION, bool(keep_history)


def set_version(conn, version):
    """Write another version number into the tables (for tests of the
    version check and for future upgrades)."""
    conn.execute(sql.SQL('UPDATE objstore_meta SET version = {}')
                 .format(sql.Literal(version)))


def drop(conn):
    """Remove every objstore table of the connection's schema."""
    conn.execute('DROP TABLE IF EXISTS object_state, transactions,'
                 ' objstore_meta; DROP SEQUENCE IF EXISTS oid_seq')
