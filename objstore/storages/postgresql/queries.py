"""The SQL the storage sends, for each history mode (see schema.py).

Parameters are psycopg's ``%s`` placeholders; oids and tids are passed as
signed 64-bit integers (:func:`to_int`).
"""

Z64 = b'\0' * 8


def to_int(oid):
    """An 8-byte oid or tid as the BIGINT stored for it."""
    return int.from_bytes(oid, 'big', signed=True)


def to_bytes(n):
    """A stored BIGINT as the 8-byte oid or tid."""
    return n.to_bytes(8, 'big', signed=True)


LAST_TID = 'SELECT coalesce(max(tid), 0) FROM transactions'

#: The largest tid, as stored.
MAX_TID = 2 ** 63 - 1

# The newest tid (the row with a NULL zoid), then (zoid, tid) of the
# revisions committed after a tid: a poll in one statement.
_POLL = ('SELECT NULL::bigint, coalesce(max(tid), 0) FROM transactions'
         ' UNION ALL SELECT zoid, tid FROM object_state WHERE tid > %s')

# The commit lock, then what the vote must see once it holds it.
LOCK = 'SELECT pg_advisory_xact_lock(%s::int4, %s::int4)'

TRANSACTION_EXISTS = 'SELECT count(*) FROM transactions WHERE tid = %s'

INSERT_TRANSACTION = (
    'INSERT INTO transactions (tid, packed, username, description,'
    ' extension) VALUES (%s, %s, %s, %s, %s)')

OBJECT_COUNT_PRESERVING = 'SELECT count(DISTINCT zoid) FROM object_state'
OBJECT_COUNT_FREE = 'SELECT count(*) FROM object_state'

SIZE = ('SELECT coalesce(sum(octet_length(state)), 0) + 64 * count(*)'
        ' FROM object_state')

HISTORY_START = 'SELECT history_start FROM objstore_meta'
RAISE_HISTORY_START = (
    'UPDATE objstore_meta SET history_start = greatest(history_start, %s)')

NEXT_OID_BLOCK = "SELECT nextval('oid_seq')"
# Past every oid below %s (an oid block number), for stored explicit oids.
MOVE_OID_BLOCK = ("SELECT setval('oid_seq', greatest(%s,"
                  " (SELECT last_value FROM oid_seq)))")


class Queries:
    """The statements of one history mode."""

    def __init__(self, keep_history):
        self.keep_history = keep_history
        if keep_history:
            self.__dict__.update(_PRESERVING)
        else:
            self.__dict__.update(_FREE)
        self.object_count = (OBJECT_COUNT_PRESERVING if keep_history
                             else OBJECT_COUNT_FREE)
        self.poll = _POLL


_PRESERVING = dict(
    # Current revision: (tid, state).
    load_current=(
        'SELECT tid, state FROM object_state WHERE zoid = %s'
        ' ORDER BY tid DESC LIMIT 1'),
    # (tid, state, next tid) of the revision before a tid.
    load_before=(
        'SELECT tid, state, (SELECT min(tid) FROM object_state'
        ' WHERE zoid = %(oid)s AND tid >= %(tid)s) FROM object_state'
        ' WHERE zoid = %(oid)s AND tid < %(tid)s ORDER BY tid DESC LIMIT 1'),
    exists='SELECT EXISTS (SELECT 1 FROM object_state WHERE zoid = %s)',
    load_serial=(
        'SELECT state, true FROM object_state'
        ' WHERE zoid = %(oid)s AND tid = %(tid)s'),
    # (zoid, tid, is a deletion) of the current revisions of some oids.
    current_serials=(
        'SELECT DISTINCT ON (zoid) zoid, tid, state IS NULL FROM object_state'
        ' WHERE zoid = ANY(%s) ORDER BY zoid, tid DESC'),
    history=(
        'SELECT o.tid, octet_length(o.state), t.username, t.description,'
        ' t.extension FROM object_state o'
        ' LEFT JOIN transactions t ON t.tid = o.tid'
        ' WHERE o.zoid = %s ORDER BY o.tid DESC LIMIT %s'),
    insert_objects=(
        'INSERT INTO object_state (zoid, tid, seq, state, data_txn)'
        ' SELECT zoid, %s, seq, state, data_txn FROM unnest('
        '%s::bigint[], %s::bytea[], %s::bigint[]) WITH ORDINALITY'
        ' AS s(zoid, state, data_txn, seq)'),
    records=(
        'SELECT tid, zoid, state, data_txn FROM object_state'
        ' WHERE tid = ANY(%s) ORDER BY tid, seq'),
    current_record=(
        'SELECT zoid, tid, state FROM object_state o WHERE zoid >= %s'
        ' AND state IS NOT NULL AND tid = (SELECT max(tid) FROM object_state'
        ' WHERE zoid = o.zoid) ORDER BY zoid LIMIT 2'),
)

_FREE = dict(
    load_current='SELECT tid, state FROM object_state WHERE zoid = %s',
    exists='SELECT EXISTS (SELECT 1 FROM object_state WHERE zoid = %s)',
    load_serial=(
        'SELECT state, tid = %(tid)s FROM object_state WHERE zoid = %(oid)s'),
    current_serials=(
        'SELECT zoid, tid, state IS NULL FROM object_state'
        ' WHERE zoid = ANY(%s)'),
    history=(
        'SELECT o.tid, octet_length(o.state), t.username, t.description,'
        ' t.extension FROM object_state o'
        ' LEFT JOIN transactions t ON t.tid = o.tid'
        ' WHERE o.zoid = %s LIMIT %s'),
    insert_objects=(
        'INSERT INTO object_state (zoid, tid, seq, state)'
        ' SELECT zoid, %s, seq, state FROM unnest(%s::bigint[],'
        ' %s::bytea[], %s::bigint[]) WITH ORDINALITY'
        ' AS s(zoid, state, data_txn, seq)'
        ' ON CONFLICT (zoid) DO UPDATE SET tid = excluded.tid,'
        ' seq = excluded.seq, state = excluded.state'),
    # The records of some transactions still current, for iteration.
    records=(
        'SELECT tid, zoid, state, NULL::bigint FROM object_state'
        ' WHERE tid = ANY(%s) ORDER BY tid, seq'),
    current_record=(
        'SELECT zoid, tid, state FROM object_state WHERE zoid >= %s'
        ' AND state IS NOT NULL ORDER BY zoid LIMIT 2'),
)
