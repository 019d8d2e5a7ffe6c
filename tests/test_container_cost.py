"""A history query reads O(log n + k) records, not the history.

Counted, not timed: the objects a query loads into a connection whose
cache was emptied first (the container's BTree nodes and buckets, its
history records). A container of 18,150 revisions must cost at most one
more load per BTree level than one of 600, wherever the batch lies.
"""
import pytest
import transaction

import objstore as im
from objstore.container import RevisionedContainer
from objstore.storages.memory import MemoryStorage

CREATORS = ('ann', 'bob', 'cy', 'dee', 'eve')
SMALL, BIG = 300, 12_000


class Entry(im.RevisionedImmutable):

    def __init__(self, value=0):
        self.value = value


def build(size):
    """A DB whose container has 'big' (``size`` revisions), 'other'
    (``size // 2``) and 'small' (``SMALL // 2``), creators taking turns."""
    db = im.DB(MemoryStorage())
    with db.transaction() as conn:
        container = conn.root()['c'] = RevisionedContainer()
        for name in ('big', 'other', 'small'):
            with im.create(Entry, creator='ann', comment='start') as factory:
                first = factory()
            container[name] = first
    for name, count in (('small', SMALL // 2), ('big', size),
                        ('other', size // 2)):
        done = 1
        while done < count:
            with db.transaction() as conn:
                current = conn.root()['c'][name]
                for i in range(done, min(count, done + 4000)):
                    with im.update(current, CREATORS[i % 5],
                                   'change %d' % i) as current:
                        current.value = i
                done = min(count, done + 4000)
    return db


@pytest.fixture(scope='module')
def database():
    db = build(BIG)
    yield db
    db.close()


@pytest.fixture(scope='module')
def small_database():
    db = build(SMALL)
    yield db
    db.close()


def loads(db, name, **query):
    """(records loaded by the query, revisions it returned)."""
    conn = db.open(transaction.TransactionManager())
    try:
        conn.cacheMinimize()
        container = conn.root()['c']
        container._p_activate()
        before = conn._cache.cache_non_ghost_count
        found = list(container.getRevisionHistory(name, **query))
        return conn._cache.cache_non_ghost_count - before, len(found)
    finally:
        conn.close()


QUERIES = [
    dict(batchSize=20),
    dict(creator='cy', batchSize=20),
    dict(creator='cy', batchSize=20, reversed=True, batchStart=30),
    dict(batchStart=250, batchSize=20),
    dict(creator='bob', startAfter='middle', batchSize=20),
    dict(creator='bob', startBefore='middle', batchSize=20, reversed=True),
    dict(startAfter='middle', startBefore='end', batchSize=20),
]


def _query(db, name, query):
    query = dict(query)
    with db.transaction() as conn:
        container = conn.root()['c']
        size = container.getNumberOfRevisions(name)
        moments = {
            'middle': container.getRevision(name, size // 2).__im_start_on__,
            'end': container.getRevision(name, size - 5).__im_start_on__}
    for bound in ('startAfter', 'startBefore'):
        if bound in query:
            query[bound] = moments[query[bound]]
    return query


@pytest.mark.parametrize('query', QUERIES, ids=lambda q: ','.join(
    '%s=%s' % item for item in q.items()))
def test_a_history_query_loads_about_the_same_at_any_size(
        database, small_database, query):
    small, small_found = loads(small_database, 'big',
                               **_query(small_database, 'big', query))
    big, big_found = loads(database, 'big', **_query(database, 'big', query))
    assert small_found == big_found == 20
    # A query uses up to four BTrees (plus the history record); one more
    # level in each costs one more load.
    assert big <= small + 4
    assert big <= 16


def test_a_batch_deep_in_a_long_history_costs_what_the_first_does(database):
    first, _ = loads(database, 'big', creator='dee', batchSize=20)
    deep, found = loads(database, 'big', creator='dee', batchSize=20,
                        batchStart=BIG // 5 - 40)
    assert found == 20 and deep <= first + 1


def test_the_cost_grows_with_the_batch_by_buckets(database):
    narrow, _ = loads(database, 'big', creator='eve', batchSize=20)
    wide, found = loads(database, 'big', creator='eve', batchSize=1000)
    assert found == 1000
    # Buckets hold up to 30 entries and are at least half full after
    # splits: 1000 entries span at most 1000 / 15 buckets.
    assert wide - narrow <= 1000 // 15 + 1


def test_a_scan_would_load_far_more(database):
    # What the counts above are measured against: the history's index
    # alone spans hundreds of buckets.
    conn = database.open(transaction.TransactionManager())
    try:
        revisions = conn.root()['c']._revisions
        buckets, bucket = 0, revisions._firstbucket
        while bucket is not None:
            buckets += 1
            bucket = bucket._next
        assert buckets > BIG // 30
    finally:
        conn.close()
