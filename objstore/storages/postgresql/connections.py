"""Connections to the server, and what a lost one means to callers.

Every psycopg connection of the storage is a :class:`Link`: opened on first
use, in autocommit mode (the storage sends BEGIN and COMMIT itself, so it
always knows where a transaction starts and ends). When the server or the
network drops a connection, the statement that found out raises
``objstore.errors.DisconnectedError`` (transient: the transaction manager
retries the transaction) and the link opens a new connection at its next
use. Any other database error becomes a ``StorageError`` naming what the
storage was doing.
"""
import contextlib
import threading
import urllib.parse

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.numeric import Int8BinaryDumper, Int8Dumper

from objstore import errors


def describe_dsn(dsn):
    """A name for people: ``postgresql://user@host:port/db``, without the
    password, with ``?search_path=...`` when the DSN sets one."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise errors.StorageError('malformed PostgreSQL DSN %r: %s'
                                  % (dsn, exc)) from exc
    user = params.get('user', '')
    host = params.get('host') or params.get('hostaddr') or ''
    port = params.get('port', '')
    name = 'postgresql://%s%s%s/%s' % (
        urllib.parse.quote(user, safe='') + '@' if user else '', host,
        ':%s' % port if port else '', params.get('dbname', ''))
    options = params.get('options', '')
    if 'search_path' in options:
        name += '?search_path=%s' % options.split('search_path', 1)[1].lstrip(
            ' =').split()[0]
    return name


def connect(dsn, options, name, role):
    """A new autocommit connection; DisconnectedError if there is none.

    Python ints go to the server as BIGINT whatever their size, so each
    statement is prepared once, for the column type (oids, tids).
    """
    try:
        conn = psycopg.connect(dsn, autocommit=True, **options)
    except psycopg.Error as exc:
        raise errors.DisconnectedError(
            'cannot connect to %s (%s connection): %s'
            % (name, role, _text(exc))) from exc
    conn.adapters.register_dumper(int, Int8Dumper)
    conn.adapters.register_dumper(int, Int8BinaryDumper)
    return conn


def is_disconnect(conn, exc):
    """Whether ``exc``, raised by ``conn``, means the connection is gone."""
    if conn is None or conn.closed or conn.broken:
        return True
    return isinstance(exc, (psycopg.InterfaceError,
                            psycopg.errors.AdminShutdown,
                            psycopg.errors.ConnectionException))


class Link:
    """One lazily opened connection to the server.

    ``with link.using('loading 0x01') as conn:`` runs statements on it and
    turns psycopg's errors into objstore's. ``lost`` counts the
    connections that were dropped under it, so a user can tell whether
    what it held (a snapshot) survived.
    """

    def __init__(self, dsn, connect_options, name, role):
        self._dsn = dsn
        self._options = connect_options
        self.name = name
        self.role = role
        self.conn = None
        self._cursor = None
        self.lost = 0
        # psycopg serializes statements on one connection itself; this
        # lock keeps a multi-statement exchange (a commit, a pipeline)
        # whole when threads share a link.
        self.lock = threading.RLock()

    def connect(self):
        """The open connection, opening one if needed."""
        conn = self.conn
        if conn is not None and not conn.closed:
            return conn
        with self.lock:
            if self.conn is not None and not self.conn.closed:
                return self.conn
            self.conn = connect(self._dsn, self._options, self.name,
                                self.role)
            self._cursor = None
            return self.conn

    def cursor(self):
        """A cursor of the open connection, kept for reuse (binary
        results: records come as bytes without hex decoding)."""
        cursor = self._cursor
        if cursor is None or cursor.connection is not self.conn:
            cursor = self._cursor = self.connect().cursor(binary=True)
        return cursor

    @contextlib.contextmanager
    def using(self, doing):
        """Yield the connection; errors come out as objstore's.

        ``doing`` says what the statements are for, in error messages.
        """
        with self.lock:
            conn = self.connect()
            try:
                yield conn
            except psycopg.Error as exc:
                raise self.failure(conn, exc, doing) from exc

    def failure(self, conn, exc, doing):
        """The objstore exception for ``exc`` raised by ``conn``; forgets
        the connection when it is gone."""
        if is_disconnect(conn, exc):
            self.drop()
            return errors.DisconnectedError(
                'lost the connection to %s while %s (%s connection): %s'
                % (self.name, doing, self.role, _text(exc)))
        return errors.StorageError('%s: error while %s: %s'
                                   % (self.name, doing, _text(exc)))

    def in_transaction(self):
        conn = self.conn
        return (conn is not None and not conn.closed
                and conn.info.transaction_status
                != psycopg.pq.TransactionStatus.IDLE)

    def rollback(self):
        """End the connection's transaction, if any; never raises (a
        connection that cannot even roll back is dropped)."""
        conn = self.conn
        if conn is None or conn.closed:
            return
        if not self.in_transaction():
            return
        try:
            conn.execute('ROLLBACK')
        except psycopg.Error:
            self.drop()

    def drop(self):
        """Close the connection (a new one opens at the next use)."""
        conn, self.conn = self.conn, None
        self._cursor = None
        if conn is not None:
            self.lost += 1
            try:
                conn.close()
            except psycopg.Error:
                pass

    def close(self):
        conn, self.conn = self.conn, None
        self._cursor = None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass


def _text(exc):
    return (str(exc).strip() or type(exc).__name__).splitlines()[0]
