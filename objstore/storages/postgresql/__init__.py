"""objstore in PostgreSQL: many processes on many machines share one
database (the RelStorage model).

Against the other storages: FileStorage is faster for one process on one
machine and needs no server; PostgreSQLStorage lets any number of
processes read and commit at once, gets PostgreSQL's durability,
replication and backups, and pays a network round trip per load that
misses the cache and a few per commit. Needs psycopg 3 (the
``postgresql`` extra).

Modules: schema.py (the tables and their version), storage.py (the storage,
instances, reads, polling), commit.py (two-phase commit, conflicts, lost
connections), history.py (undo, iteration), pack.py (pack and GC),
listener.py (LISTEN/NOTIFY), connections.py, queries.py.
"""
import urllib.parse

from objstore.storages.postgresql.schema import SCHEMA_VERSION
from objstore.storages.postgresql.storage import PostgreSQLStorage

__all__ = ['PostgreSQLStorage', 'SCHEMA_VERSION', 'open_postgresql']


def open_postgresql(parsed, options):
    """``postgresql://user[:password]@host:port/dbname``: the
    ``objstore.storages`` entry point. ``keep_history``, ``read_only`` and
    ``create`` (create the tables when missing, default true) come from the
    options; the URI without its query string is the libpq DSN."""
    from objstore.uri import reject_options

    reject_options(parsed, options, ('fsync',),
                   'PostgreSQL decides durability itself (synchronous_commit)')
    read_only = options.get('read_only', False)
    dsn = urllib.parse.urlunsplit(parsed._replace(query='', fragment=''))
    return PostgreSQLStorage(
        dsn, keep_history=options.get('keep_history', True),
        create_schema=options.get('create', True) and not read_only,
        read_only=read_only)
