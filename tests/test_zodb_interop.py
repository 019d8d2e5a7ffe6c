"""ZODB interop: ZODB.DB on objstore storages, objstore on ZODB's Data.fs,
and migrating a Data.fs into an objstore file with all its history.

The application is the shop of ``zodb_app`` (Persistent classes, OOBTrees,
PersistentMapping, PersistentList, BTrees.Length counters).
"""
import threading
import time

import pytest

ZODB = pytest.importorskip('ZODB')

import transaction  # noqa: E402
import ZODB.FileStorage  # noqa: E402
import ZODB.POSException as POSException  # noqa: E402
from ZODB.utils import p64, u64, z64  # noqa: E402

import zodb_app  # noqa: E402
import objstore  # noqa: E402
from objstore import errors  # noqa: E402
from objstore.storages import FileStorage, MemoryStorage  # noqa: E402
from objstore.zodb import adapt  # noqa: E402


def new_tm():
    # Explicit managers: each connection's transactions start with begin(),
    # which is also when ZODB's connections take their snapshot.
    return transaction.TransactionManager(explicit=True)


@pytest.fixture(params=['file', 'memory'])
def zodb_on_objstore(request, tmp_path):
    """A factory of ``ZODB.DB`` over an objstore storage (same data each
    call for the file storage)."""
    path = str(tmp_path / 'shop.fs')
    memory = []
    dbs = []

    def make():
        if request.param == 'file':
            storage = FileStorage(path)
        else:
            if not memory:
                memory.append(MemoryStorage())
            storage = memory[0]
        db = ZODB.DB(adapt(storage))
        dbs.append(db)
        return db

    make.kind = request.param
    yield make
    for db in dbs:
        db.close()


def open_shop(db):
    tm = new_tm()
    conn = db.open(transaction_manager=tm)
    tm.begin()
    return tm, conn, conn.root()['shop']


def create_shop(db):
    tm, conn, _ = open_shop_root(db)
    zodb_app.build_shop(conn.root())
    tm.commit()
    conn.close()


def open_shop_root(db):
    tm = new_tm()
    conn = db.open(transaction_manager=tm)
    tm.begin()
    return tm, conn, conn.root()


# -- ZODB.DB over objstore storages --------------------------------------

def test_zodb_db_runs_the_shop_on_an_objstore_storage(zodb_on_objstore):
    db = zodb_on_objstore()
    create_shop(db)
    tm1, conn1, shop1 = open_shop(db)
    tm2, conn2, shop2 = open_shop(db)
    assert shop1 is not shop2
    assert zodb_app.dump(shop1) == zodb_app.dump(shop2)

    order = shop1.place_order('o1', 'ann', {'apple': 3, 'fig': 1})
    tm1.get().note('first order')
    tm1.get().setUser('ann')
    tm1.commit()
    # conn2 keeps its snapshot until its next transaction.
    assert shop2.products['apple'].stock == 100
    assert 'o1' not in shop2.orders
    tm2.abort()
    tm2.begin()
    assert shop2.products['apple'].stock == 97
    assert shop2.orders['o1'].customer is shop2.customers['ann']
    assert shop2.orders['o1'].total == order.total == 11
    assert shop2.customers['ann'].orders[0] is shop2.orders['o1']
    assert shop2.order_count() == 1 and shop2.sales() == 11
    assert shop2.products['fig'].tags == ['dried', 'sweet']

    info = db.history(shop1.products['apple']._p_oid, size=10)
    assert len(info) == 2
    assert db.undoLog(0, 1)[0]['description'] == 'first order'
    assert db.undoLog(0, 1)[0]['user_name'] == '/ ann'
    conn1.close()
    conn2.close()


def test_concurrent_counters_and_inserts_resolve(zodb_on_objstore):
    db = zodb_on_objstore()
    create_shop(db)
    tm1, conn1, shop1 = open_shop(db)
    tm2, conn2, shop2 = open_shop(db)
    # Different products and customers, same Length counters and the same
    # orders bucket: BTrees resolve both.
    shop1.place_order('o1', 'ann', {'apple': 2})
    shop2.place_order('o2', 'bob', {'pear': 1})
    tm1.commit()
    tm2.commit()
    tm3, conn3, shop3 = open_shop(db)
    assert list(shop3.orders) == ['o1', 'o2']
    assert shop3.order_count() == 2
    assert shop3.sales() == 2 * 2 + 3
    assert shop3.products['apple'].stock == 98
    assert shop3.products['pear'].stock == 49
    # The committing connection sees the resolved state after its next begin.
    tm2.begin()
    assert shop2.order_count() == 2 and list(shop2.orders) == ['o1', 'o2']
    for conn in conn1, conn2, conn3:
        conn.close()


def test_unresolvable_conflict_raises_zodb_and_objstore_conflict_error(
        zodb_on_objstore):
    db = zodb_on_objstore()
    create_shop(db)
    tm1, conn1, shop1 = open_shop(db)
    tm2, conn2, shop2 = open_shop(db)
    shop1.place_order('o1', 'ann', {'fig': 5})
    shop2.place_order('o2', 'bob', {'fig': 4})
    tm1.commit()
    with pytest.raises(POSException.ConflictError) as info:
        tm2.commit()
    assert isinstance(info.value, errors.ConflictError)
    assert isinstance(info.value, transaction.interfaces.TransientError)
    assert info.value.get_class_name() == 'zodb_app.Product'
    assert info.value.get_oid() == shop1.products['fig']._p_oid
    tm2.abort()

    # Retried the ZODB way, the second order goes through.
    for attempt in tm2.attempts():
        with attempt:
            shop2.place_order('o2', 'bob', {'fig': 4})
    tm1.begin()
    assert shop1.products['fig'].stock == 20 - 5 - 4
    assert shop1.customers['bob'].credit == 1000 - 20
    assert shop1.order_count() == 2
    conn1.close()
    conn2.close()


def test_retrying_threads_keep_the_shop_consistent(zodb_on_objstore):
    db = zodb_on_objstore()
    create_shop(db)
    tm, conn, shop = open_shop(db)
    for n in range(10):
        shop.add_customer('c%d' % n, credit=10_000)
    shop.products['apple'].stock = shop.products['pear'].stock = 1000
    tm.commit()
    retries = []
    failures = []

    def shopper(thread_no):
        tm = transaction.TransactionManager()
        conn = db.open(transaction_manager=tm)
        try:
            for n in range(40):
                tries = 0
                for attempt in tm.attempts(100):
                    tries += 1
                    with attempt as txn:
                        txn.note('order %d-%d' % (thread_no, n))
                        shop = conn.root()['shop']
                        sku = ('apple', 'pear')[(thread_no + n) % 2]
                        shop.place_order('t%d-%03d' % (thread_no, n),
                                         'c%d' % ((thread_no * 3 + n) % 10),
                                         {sku: 1 + n % 3})
                retries.append(tries - 1)
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=shopper, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(retries) == 160

    tm.begin()
    assert len(shop.orders) == shop.order_count() == 160
    sold = {}
    for order in shop.orders.values():
        for sku, quantity, _ in order.lines:
            sold[sku] = sold.get(sku, 0) + quantity
    assert sum(sold.values()) == 4 * sum(1 + n % 3 for n in range(40))
    assert shop.products['apple'].stock == 1000 - sold['apple']
    assert shop.products['pear'].stock == 1000 - sold['pear']
    assert shop.sales() == sum(o.total for o in shop.orders.values())
    spent = sum(10_000 - shop.customers['c%d' % n].credit for n in range(10))
    assert spent == shop.sales()
    assert sum(len(shop.customers['c%d' % n].orders)
               for n in range(10)) == 160
    conn.close()


def test_zodb_undo_restores_the_previous_state(zodb_on_objstore):
    db = zodb_on_objstore()
    create_shop(db)
    tm, conn, shop = open_shop(db)
    shop.products['apple'].price = 7
    shop.settings['currency'] = 'CHF'
    tm.get().note('price rise')
    tm.commit()
    tm.begin()
    shop.add_product('kiwi', 'Kiwi', 4, stock=3)
    tm.get().note('kiwi')
    tm.commit()

    # Undo the price rise (not the last transaction) through ZODB's DB.
    log = db.undoLog(0, 10)
    assert [entry['description'] for entry in log[:2]] == ['kiwi', 'price rise']
    tm.begin()
    db.undo(log[1]['id'], tm.get())
    tm.get().note('undo price rise')
    tm.commit()
    tm.begin()
    assert shop.products['apple'].price == 2
    assert shop.settings['currency'] == 'EUR'
    assert shop.products['kiwi'].stock == 3
    assert db.undoLog(0, 1)[0]['description'] == 'undo price rise'

    # A second connection agrees.
    tm2, conn2, shop2 = open_shop(db)
    assert zodb_app.dump(shop2) == zodb_app.dump(shop)

    # Undoing a transaction whose objects changed since is refused.
    shop.products['kiwi'].stock = 2
    tm.commit()
    tm.begin()
    kiwi_log = [e for e in db.undoLog(0, 10) if e['description'] == 'kiwi']
    db.undo(kiwi_log[0]['id'], tm.get())
    with pytest.raises(POSException.UndoError) as info:
        tm.commit()
    assert isinstance(info.value, errors.UndoError)
    tm.abort()
    conn.close()
    conn2.close()


def test_zodb_pack_collects_unreachable_objects(zodb_on_objstore):
    db = zodb_on_objstore()
    create_shop(db)
    tm, conn, shop = open_shop(db)
    old = shop.add_product('old', 'Discontinued', 1)
    old.tags.append('legacy')
    tm.commit()
    old_oid, tags_oid = old._p_oid, old.tags._p_oid
    fig_oid = shop.products['fig']._p_oid
    first_fig_tid = shop.products['fig']._p_serial
    tm.begin()
    del shop.products['old']
    shop.products['fig'].price = 6
    tm.commit()
    before = zodb_app.dump(shop)
    time.sleep(0.01)    # the pack time must be after the last commit

    db.pack()
    storage = db.storage
    for oid in old_oid, tags_oid:
        with pytest.raises(POSException.POSKeyError):
            storage.load(oid)
    # Only the current revision of a reachable object stays.
    assert storage.load(fig_oid)[1] == shop.products['fig']._p_serial
    with pytest.raises(POSException.POSKeyError):
        storage.loadSerial(fig_oid, first_fig_tid)

    tm2, conn2, shop2 = open_shop(db)
    assert zodb_app.dump(shop2) == before
    # The database keeps working after the pack.
    shop2.add_product('new', 'New', 1)
    tm2.commit()
    tm.begin()
    assert 'new' in shop.products and 'old' not in shop.products
    conn.close()
    conn2.close()


def test_shop_survives_reopening_the_file(tmp_path):
    path = str(tmp_path / 'shop.fs')
    db = ZODB.DB(adapt(FileStorage(path)))
    create_shop(db)
    tm, conn, shop = open_shop(db)
    shop.place_order('o1', 'ann', {'apple': 1, 'pear': 2})
    tm.commit()
    tm.begin()
    shop.add_product('gone', 'Gone', 1)
    tm.commit()
    tm.begin()
    del shop.products['gone']
    tm.commit()
    time.sleep(0.01)
    db.pack()
    tm.begin()
    shop.place_order('o2', 'bob', {'fig': 2})
    tm.commit()
    expected = zodb_app.dump(conn.root())
    last = db.lastTransaction()
    undo_log = db.undoLog(0, 100)
    conn.close()
    db.close()

    db = ZODB.DB(adapt(FileStorage(path)))
    tm, conn, root = open_shop_root(db)
    assert zodb_app.dump(root) == expected
    assert db.lastTransaction() == last
    assert db.undoLog(0, 100) == undo_log
    # The shop keeps working after reopening.
    root['shop'].place_order('o3', 'ann', {'fig': 1})
    tm.commit()
    tm.begin()
    assert root['shop'].order_count() == 3
    conn.close()
    db.close()


# -- databases written by ZODB -------------------------------------------

def build_zodb_datafs(path):
    """Write a Data.fs with ZODB alone: the shop, a BTree big enough to
    have several buckets, nested mappings, an undone transaction (ZODB
    writes back-pointers and an undone creation) and metadata on every
    transaction. Returns ``[(tid, dump of the root)]``, one per
    transaction, the database's initial one first."""
    db = ZODB.DB(ZODB.FileStorage.FileStorage(path))
    states = [(db.lastTransaction(), None)]
    tm, conn, root = open_shop_root(db)
    states[0] = (states[0][0], zodb_app.dump(root))

    def commit(note, user, **extension):
        txn = tm.get()
        txn.note(note)
        txn.setUser(user)
        for key, value in extension.items():
            txn.setExtendedInfo(key, value)
        tm.commit()
        tm.begin()
        states.append((db.lastTransaction(), zodb_app.dump(root)))

    shop = zodb_app.build_shop(root)
    commit('open the shop', 'admin', reason='opening', items=3)
    shop.place_order('o1', 'ann', {'apple': 3, 'fig': 1})
    commit('order o1', 'ann', ip='10.0.0.1')
    notes = root['notes'] = zodb_app.OOBTree()
    for n in range(400):
        notes['note-%04d' % n] = 'text %d' % n
    root['archive'] = zodb_app.PersistentMapping(
        y2025=zodb_app.PersistentMapping(q1=zodb_app.PersistentList([1, 2])))
    commit('notes and archive', 'admin')
    shop.add_product('kiwi', 'Kiwi', 4, stock=5)
    for n in range(0, 400, 7):
        del notes['note-%04d' % n]
    commit('kiwi', 'admin', batch=7)
    db.undo(db.undoLog(0, 1)[0]['id'], tm.get())
    commit('undo kiwi', 'admin')
    shop.products['apple'].price = 3
    root['archive']['y2025']['q1'].append(3)
    del shop.customers['bob']
    commit('price and archive', '', empty_user=True)
    conn.close()
    db.close()
    return states


def transactions(storage):
    """Every transaction of ``storage`` as plain values."""
    result = []
    for txn in storage.iterator():
        records = [(r.oid, r.tid, r.data) for r in txn]
        result.append((txn.tid, txn.status, bytes(txn.user),
                       bytes(txn.description), dict(txn.extension), records))
    return result


def text(value):
    """Transaction metadata as text, whether a storage gives bytes or str."""
    return value.decode('utf-8') if isinstance(value, bytes) else value


def outcome(method, *args):
    """What ``method(*args)`` returns, or the name of the KeyError it raises
    (ZODB's and objstore's POSKeyError are both KeyErrors)."""
    try:
        return method(*args)
    except KeyError as exc:
        return ('raised', type(exc).__name__)


def test_zodb_written_datafs_is_what_the_test_expects(tmp_path):
    states = build_zodb_datafs(str(tmp_path / 'Data.fs'))
    assert len(states) == 7
    assert 'kiwi' in str(states[4][1]) and 'kiwi' not in str(states[5][1])


@pytest.mark.parametrize('dest_kind', ['file', 'memory'])
def test_copy_transactions_from_a_zodb_datafs_keeps_all_history(
        tmp_path, dest_kind):
    source_path = str(tmp_path / 'Data.fs')
    build_zodb_datafs(source_path)
    source = ZODB.FileStorage.FileStorage(source_path, read_only=True)
    if dest_kind == 'file':
        dest = FileStorage(str(tmp_path / 'copy.fs'))
    else:
        dest = MemoryStorage()
    dest.copyTransactionsFrom(source)

    expected = transactions(source)
    assert len(expected) == 7
    assert expected[1][2:5] == (b'/ admin', b'open the shop',
                                {'reason': 'opening', 'items': 3})
    assert transactions(dest) == expected
    assert dest.lastTransaction() == source.lastTransaction()
    assert len(dest) == len(source)
    for _, _, _, _, _, records in expected:
        for oid, tid, _ in records:
            assert outcome(dest.loadSerial, oid, tid) == \
                outcome(source.loadSerial, oid, tid), (u64(oid), u64(tid))
            after = p64(u64(tid) + 1)
            assert outcome(dest.loadBefore, oid, after) == \
                outcome(source.loadBefore, oid, after), (u64(oid), u64(tid))
    # Undo ids are opaque (ZODB's FileStorage encodes the tid in base64).
    undo_log = [(d['time'], d['user_name'], d['description'])
                for d in source.undoLog(0, 100)]
    assert [(d['time'], d['user_name'], d['description'])
            for d in dest.undoLog(0, 100)] == undo_log
    source.close()
    if dest_kind == 'file':
        # What was copied is on disk.
        dest.close()
        dest = FileStorage(str(tmp_path / 'copy.fs'), read_only=True)
        assert transactions(dest) == expected
    dest.close()


def test_zodb_reads_an_objstore_file_copied_back_to_a_datafs(tmp_path):
    # The other direction: ZODB's own copyTransactionsFrom takes objstore's
    # iterator, so a database can always leave objstore for ZODB.
    build_zodb_datafs(str(tmp_path / 'Data.fs'))
    source = ZODB.FileStorage.FileStorage(str(tmp_path / 'Data.fs'),
                                          read_only=True)
    middle = FileStorage(str(tmp_path / 'objstore.fs'))
    middle.copyTransactionsFrom(source)
    back = ZODB.FileStorage.FileStorage(str(tmp_path / 'Back.fs'))
    back.copyTransactionsFrom(adapt(middle))
    assert transactions(back) == transactions(source)
    back.close()
    middle.close()
    db = ZODB.DB(ZODB.FileStorage.FileStorage(str(tmp_path / 'Back.fs')))
    _, conn, root = open_shop_root(db)
    expected_db = ZODB.DB(source)
    _, expected_conn, expected_root = open_shop_root(expected_db)
    assert zodb_app.dump(root) == zodb_app.dump(expected_root)
    conn.close()
    expected_conn.close()
    db.close()
    expected_db.close()



# -- objstore.DB on ZODB's storages and on migrated files ---------------

def assert_shows_every_state(db, states):
    """``db`` shows each ``(tid, dump)`` of ``states`` at that tid, and the
    last one as the current state."""
    for tid, expected in states:
        conn = db.open(at=tid)
        assert zodb_app.dump(conn.root()) == expected, u64(tid)
        conn.close()
    tm = new_tm()
    conn = db.open(transaction_manager=tm)
    tm.begin()
    assert zodb_app.dump(conn.root()) == states[-1][1]
    tm.abort()
    conn.close()


def test_objstore_db_reads_a_database_written_by_zodb(tmp_path):
    path = str(tmp_path / 'Data.fs')
    states = build_zodb_datafs(path)
    db = objstore.DB(ZODB.FileStorage.FileStorage(path))
    assert db.lastTransaction() == states[-1][0]
    assert_shows_every_state(db, states)
    # Every object, loaded one by one through the connection.
    tm = new_tm()
    conn = db.open(transaction_manager=tm)
    tm.begin()
    storage = ZODB.FileStorage.FileStorage(path, read_only=True)
    oids = {record.oid for txn in storage.iterator() for record in txn}
    assert len(oids) == 51
    missing = []
    for oid in sorted(oids):
        try:
            data, serial = storage.load(oid)
        except KeyError:
            # The kiwi and its tags list: their creation was undone.
            missing.append(oid)
            with pytest.raises(errors.POSKeyError):
                conn.get(oid)._p_activate()
            continue
        obj = conn.get(oid)
        obj._p_activate()
        assert obj._p_oid == oid and obj._p_jar is conn
        assert obj._p_serial == serial
        assert '%s.%s' % (type(obj).__module__, type(obj).__qualname__) == \
            '.'.join(ZODB.utils.get_pickle_metadata(data))
    assert len(missing) == 2
    storage.close()
    tm.abort()
    conn.close()
    db.close()


def test_objstore_db_writes_what_zodb_reads_back(tmp_path):
    path = str(tmp_path / 'Data.fs')
    build_zodb_datafs(path)
    db = objstore.DB(ZODB.FileStorage.FileStorage(path))
    tm = new_tm()
    conn = db.open(transaction_manager=tm)
    tm.begin()
    root = conn.root()
    shop = root['shop']
    shop.place_order('o2', 'ann', {'pear': 2, 'fig': 1})
    shop.add_product('plum', 'Plum', 1, stock=9)
    root['notes']['note-9999'] = 'written by objstore'
    del root['notes']['note-0001']
    root['archive']['y2026'] = zodb_app.PersistentMapping(q1=[shop])
    tm.get().note('objstore was here')
    tm.get().setUser('eve')
    tm.get().setExtendedInfo('tool', 'objstore')
    tm.commit()
    tm.begin()
    expected = zodb_app.dump(root)
    tm.abort()
    conn.close()
    db.close()

    zdb = ZODB.DB(ZODB.FileStorage.FileStorage(path))
    tm, zconn, zroot = open_shop_root(zdb)
    assert zodb_app.dump(zroot) == expected
    assert zroot['archive']['y2026']['q1'][0] is zroot['shop']
    last = zdb.undoLog(0, 1)[0]
    assert last['description'] == 'objstore was here'
    assert last['user_name'] == '/ eve'
    assert last['tool'] == 'objstore'
    # ZODB can undo what objstore wrote.
    zdb.undo(last['id'], tm.get())
    tm.commit()
    tm.begin()
    assert 'plum' not in zroot['shop'].products
    assert 'note-0001' in zroot['notes']
    zconn.close()
    zdb.close()


def test_objstore_db_conflicts_on_a_zodb_storage(tmp_path):
    path = str(tmp_path / 'Data.fs')
    build_zodb_datafs(path)
    db = objstore.DB(ZODB.FileStorage.FileStorage(path))
    tm1, tm2 = new_tm(), new_tm()
    conn1 = db.open(transaction_manager=tm1)
    conn2 = db.open(transaction_manager=tm2)
    tm1.begin()
    tm2.begin()
    shop1, shop2 = conn1.root()['shop'], conn2.root()['shop']
    # Resolved by BTrees in ZODB's storage.
    shop1.place_order('o8', 'ann', {'apple': 1})
    shop2.orders['o9'] = zodb_app.Order('o9', shop2.customers['ann'], [])
    shop2.order_count.change(1)
    tm1.commit()
    tm2.commit()
    tm1.begin()
    assert list(shop1.orders) == ['o1', 'o8', 'o9']
    assert shop1.order_count() == 3
    # Not resolvable: objstore's ConflictError (ZODB's too).
    tm2.begin()
    shop1.products['fig'].stock -= 1
    shop2.products['fig'].stock -= 2
    tm1.commit()
    with pytest.raises(errors.ConflictError) as info:
        tm2.commit()
    assert isinstance(info.value, transaction.interfaces.TransientError)
    tm2.abort()
    for attempt in tm2.attempts():
        with attempt:
            shop2.products['fig'].stock -= 2
    tm1.begin()
    assert shop1.products['fig'].stock == 20 - 1 - 1 - 2
    conn1.close()
    conn2.close()
    db.close()


@pytest.mark.parametrize('dest_kind', ['file', 'memory'])
def test_objstore_db_shows_a_migrated_datafs_and_its_past(tmp_path,
                                                          dest_kind):
    states = build_zodb_datafs(str(tmp_path / 'Data.fs'))
    source = ZODB.FileStorage.FileStorage(str(tmp_path / 'Data.fs'),
                                          read_only=True)
    dest_path = str(tmp_path / 'objstore.fs')
    dest = FileStorage(dest_path) if dest_kind == 'file' else MemoryStorage()
    dest.copyTransactionsFrom(source)
    source.close()
    if dest_kind == 'file':
        dest.close()
        db = objstore.DB(dest_path)
    else:
        db = objstore.DB(dest)
    assert_shows_every_state(db, states)
    # Undo and history keep working on the migrated data.
    tm = new_tm()
    conn = db.open(transaction_manager=tm)
    tm.begin()
    apple = conn.root()['shop'].products['apple']
    assert [text(h['description']) for h in db.history(apple, size=10)] == [
        'price and archive', 'order o1', 'open the shop']
    db.undo(db.undoLog(0, 1)[0]['id'], tm.get())
    tm.commit()
    tm.begin()
    assert apple.price == 2
    assert 'bob' in conn.root()['shop'].customers
    tm.abort()
    conn.close()
    db.close()


def test_objstore_db_reads_what_zodb_db_wrote_on_an_objstore_file(tmp_path):
    # A Zope application writes through ZODB.DB; objstore's tools read it.
    path = str(tmp_path / 'shop.fs')
    zdb = ZODB.DB(adapt(FileStorage(path)))
    create_shop(zdb)
    tm, zconn, shop = open_shop(zdb)
    shop.place_order('o1', 'bob', {'pear': 4})
    tm.commit()
    tm.begin()
    expected = zodb_app.dump(zconn.root())
    tm.abort()
    zconn.close()
    zdb.close()
    db = objstore.DB(path)
    tm = new_tm()
    conn = db.open(transaction_manager=tm)
    tm.begin()
    assert zodb_app.dump(conn.root()) == expected
    tm.abort()
    conn.close()
    db.close()


def test_objstore_open_a_zodb_file_uri(tmp_path):
    path = str(tmp_path / 'Data.fs')
    states = build_zodb_datafs(path)
    db = objstore.open('zodb+file://' + path)
    assert_shows_every_state(db, states)
    tm = new_tm()
    conn = db.open(transaction_manager=tm)
    tm.begin()
    conn.root()['shop'].products['pear'].stock = 7
    tm.commit()
    conn.close()
    db.close()
    zdb = ZODB.DB(ZODB.FileStorage.FileStorage(path, read_only=True))
    _, zconn, zroot = open_shop_root(zdb)
    assert zroot['shop'].products['pear'].stock == 7
    zconn.close()
    zdb.close()


def build_blob_datafs(tmp_path):
    import ZODB.blob
    path = str(tmp_path / 'Blobs.fs')
    db = ZODB.DB(ZODB.FileStorage.FileStorage(
        path, blob_dir=str(tmp_path / 'blobs')))
    tm, conn, root = open_shop_root(db)
    zodb_app.build_shop(root)
    tm.commit()
    tm.begin()
    blob = ZODB.blob.Blob(b'a picture of a fig')
    root['shop'].products['fig'].picture = blob
    tm.commit()
    tm.begin()
    root['shop'].products['fig'].price = 9
    tm.commit()
    conn.close()
    db.close()
    return path


@pytest.mark.parametrize('dest_kind', ['file', 'memory'])
def test_copy_refuses_a_datafs_with_blobs_and_copies_nothing(
        tmp_path, dest_kind):
    path = build_blob_datafs(tmp_path)
    source = ZODB.FileStorage.FileStorage(
        path, blob_dir=str(tmp_path / 'blobs'), read_only=True)
    dest_path = str(tmp_path / 'copy.fs')
    dest = FileStorage(dest_path) if dest_kind == 'file' else MemoryStorage()
    with pytest.raises(errors.Unsupported) as info:
        dest.copyTransactionsFrom(source)
    assert 'blob' in str(info.value).lower()
    # Nothing half-copied: the transactions before the blob's are not there
    # either, and the storage is still usable.
    assert list(dest.iterator()) == []
    assert dest.lastTransaction() == z64
    assert len(dest) == 0
    if dest_kind == 'file':
        dest.close()
        dest = FileStorage(dest_path)
        assert list(dest.iterator()) == []
    db = ZODB.DB(adapt(dest))
    tm, conn, root = open_shop_root(db)
    root['fresh'] = 1
    tm.commit()
    conn.close()
    db.close()
    source.close()
