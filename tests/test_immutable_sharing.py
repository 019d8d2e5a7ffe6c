"""Structural sharing: update() copies only what its block changes.

Unchanged sub-objects are the same objects in the old and the new version
(in memory) and the same records (in storage); big collections write
O(log n) bytes for a one-item change.
"""
import pytest
import transaction

import objstore as im
from objstore.immutable_collections import BIG
from objstore.interfaces import (
    IM_STATE_DELETED, IM_STATE_LOCKED, IM_STATE_RETIRED)
from db_fixtures import db, storage_factory  # noqa: F401 -- fixtures


class Doc(im.Immutable):
    def __init__(self, title, meta, parts, pair=None):
        self.title = title
        self.meta = meta
        self.parts = parts
        self.pair = pair


class Page(im.RevisionedImmutable):
    def __init__(self, body, meta):
        self.body = body
        self.meta = meta


def make(cls, *args, **kw):
    with im.create(cls) as factory:
        return factory(*args, **kw)


def nested():
    return make(im.ImmutableDict, {
        'a': {'x': 1, 'deep': {'y': 2}}, 'b': {'x': 2}, 'c': [{'z': 3}],
        'n': 5})


def last_commit_records(storage):
    """(oid, data) of every record of the last committed transaction."""
    tid = storage.lastTransaction()
    (txn,) = list(storage.iterator(tid, tid))
    return [(record.oid, record.data) for record in txn]


def test_unchanged_values_of_a_dict_are_shared():
    old = nested()
    with im.update(old) as new:
        new['a']['x'] = 10
    assert new['a']['x'] == 10 and old['a']['x'] == 1
    assert new['a'] is not old['a']
    assert new['a']['deep'] is old['a']['deep']
    assert new['b'] is old['b'] and new['c'] is old['c']
    assert new.__im_state__ == new['a'].__im_state__ == IM_STATE_LOCKED


def test_values_read_but_not_written_come_back_as_the_originals():
    old = nested()
    with im.update(old) as new:
        lent = new['b']
        assert lent is not old['b'] and lent == old['b']
        assert lent.__im_state__ == 'transient'
        assert list(new.values())[2] == old['c']
        new['n'] = 6
    assert new['b'] is old['b'] and new['c'] is old['c']
    # The copy that was lent is dropped and locked: it cannot be mistaken
    # for a writable part of the new version.
    assert lent.__im_state__ == IM_STATE_LOCKED


def test_an_update_that_changes_nothing_shares_every_value():
    old = nested()
    with im.update(old) as new:
        new['a']['deep']
        new.get('b')
    assert all(new[key] is old[key] for key in old)


def test_two_levels_down_only_the_path_is_copied():
    old = nested()
    with im.update(old) as new:
        new['a']['deep']['y'] = 3
    assert old['a']['deep']['y'] == 2 and new['a']['deep']['y'] == 3
    assert new['a'] is not old['a'] and new['a']['deep'] is not \
        old['a']['deep']
    assert new['b'] is old['b']


def test_list_items_read_but_unchanged_are_shared():
    old = make(im.ImmutableList, [{'k': 1}, {'k': 2}, [3]])
    with im.update(old) as new:
        new[0]['k'] = 10
        new[1]
        new[-1]
    assert new[0] is not old[0] and new[0]['k'] == 10
    assert new[1] is old[1] and new[2] is old[2]


def test_list_item_that_moved_stays_a_copy_and_is_locked():
    old = make(im.ImmutableList, [{'k': 1}, {'k': 2}])
    with im.update(old) as new:
        first = new[0]
        new.insert(0, {'k': 0})
    assert new[1] is first and first.__im_state__ == IM_STATE_LOCKED
    assert new == [{'k': 0}, {'k': 1}, {'k': 2}]


def test_attributes_of_an_immutable_are_shared_unless_written():
    old = make(Doc, 'title', {'lang': 'en'}, [{'n': 1}],
               pair=({'p': 1}, 'x'))
    with im.update(old) as new:
        new.parts[0]['n'] = 2
    assert new.parts is not old.parts and new.parts[0]['n'] == 2
    assert new.meta is old.meta and new.pair is old.pair
    with im.update(new) as newer:
        newer.meta['lang'] = 'fr'
    assert newer.parts is new.parts and newer.meta['lang'] == 'fr'


def test_replacing_a_lent_attribute_keeps_the_new_value():
    old = make(Doc, 'title', {'lang': 'en'}, [])
    with im.update(old) as new:
        new.meta = {'lang': 'de'}
    assert new.meta == {'lang': 'de'} and old.meta == {'lang': 'en'}


def test_retiring_a_revision_leaves_its_shared_sub_objects_locked():
    manager = im.SimpleRevisionedImmutableManager()
    first = make(Page, 'body', {'lang': 'en'})
    manager.addRevision(first)
    with im.update(first) as second:
        second.body = 'new body'
    assert first.__im_state__ == IM_STATE_RETIRED
    assert second.meta is first.meta
    assert first.meta.__im_state__ == IM_STATE_LOCKED
    manager._delete_current()
    assert second.__im_state__ == IM_STATE_DELETED
    assert second.meta.__im_state__ == IM_STATE_LOCKED


@pytest.mark.parametrize('size', [BIG // 2, BIG * 4, 5000])
def test_dict_update_shares_records_in_storage(db, size):
    with db.transaction() as conn:
        conn.root()['d'] = make(im.ImmutableDict, {
            'k%d' % i: {'n': i} for i in range(size)})
    with db.transaction() as conn:
        old = conn.root()['d']
        with im.update(old) as new:
            new['k7']['n'] = -7
        conn.root()['d'] = new
    changed_oid = new['k7']._p_oid
    records = last_commit_records(db.storage)
    # The root, the new dict, the new 'k7' and (for a big dict) the nodes
    # on one path: nothing else is written.
    assert len(records) <= 8, [len(d) for _, d in records]
    assert changed_oid in {oid for oid, _ in records}
    with db.transaction() as conn:
        new = conn.root()['d']
        assert new['k7'] == {'n': -7} and new['k8'] == {'n': 8}
        assert len(new) == size and list(new)[:3] == ['k0', 'k1', 'k2']


def test_one_key_update_of_a_big_dict_writes_little(db):
    size = 20000
    with db.transaction() as conn:
        conn.root()['d'] = make(im.ImmutableDict, {
            'k%d' % i: {'a': i, 'b': str(i)} for i in range(size)})
    with db.transaction() as conn:
        with im.update(conn.root()['d']) as new:
            new['k5'] = {'a': 5, 'b': 'five'}
        conn.root()['d'] = new
    written = sum(len(data) for _, data in last_commit_records(db.storage))
    assert written <= 16 * 1024, written


def test_big_list_update_writes_one_path(db):
    with db.transaction() as conn:
        conn.root()['l'] = make(im.ImmutableList, [[i] for i in range(5000)])
    with db.transaction() as conn:
        with im.update(conn.root()['l']) as new:
            new[2500] = ['x']
            new[10]
        conn.root()['l'] = new
    assert len(last_commit_records(db.storage)) <= 8
    with db.transaction() as conn:
        new = conn.root()['l']
        assert new[2500] == ['x'] and new[2499] == [2499] and len(new) == 5000


@pytest.mark.parametrize('cls, data', [
    (im.ImmutableDict, {i: {'v': i} for i in range(300)}),
    (im.ImmutableList, [{'v': i} for i in range(300)]),
    (im.ImmutableSet, set(range(300)))])
def test_big_collections_round_trip_and_stay_locked(db, cls, data):
    with db.transaction() as conn:
        conn.root()['c'] = make(cls, data)
    with db.transaction() as conn:
        loaded = conn.root()['c']
        assert loaded == data and len(loaded) == 300
        assert loaded.__im_state__ == IM_STATE_LOCKED
        assert repr(loaded) == repr(make(cls, data))
        with pytest.raises(AttributeError):
            if cls is im.ImmutableSet:
                loaded.add(-1)
            else:
                loaded[0] = 1
    transaction.abort()


def test_revisions_in_a_container_share_unchanged_records(db):
    with db.transaction() as conn:
        pages = conn.root()['pages'] = im.RevisionedContainer()
        pages['front'] = make(Page, 'v1', {'lang': 'en', 'tags': ['a']})
    with db.transaction() as conn:
        first = conn.root()['pages']['front']
        with im.update(first, 'arthur', 'new body') as second:
            second.body = 'v2'
    with db.transaction() as conn:
        pages = conn.root()['pages']
        first, second = pages.getRevisionHistory('front')
        assert (first.body, second.body) == ('v1', 'v2')
        assert second.meta._p_oid == first.meta._p_oid
        assert second.meta['tags']._p_oid == first.meta['tags']._p_oid
        assert first.__im_state__ == IM_STATE_RETIRED
        assert first.meta.__im_state__ == IM_STATE_LOCKED
