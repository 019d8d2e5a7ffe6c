"""ZODB blobs are not supported yet: storing one is refused, nothing is written."""
import pytest
import transaction

import objstore
from objstore import errors

blob = pytest.importorskip('ZODB.blob')


@pytest.mark.parametrize('target', ['memory://', 'file'])
def test_committing_a_blob_raises_unsupported_and_writes_nothing(
        target, tmp_path):
    if target == 'file':
        target = str(tmp_path / 'data.fs')
    db = objstore.open(target)
    tm = transaction.TransactionManager()
    conn = db.open(tm)
    conn.root()['kept'] = 1
    tm.commit()
    last = db.lastTransaction()

    conn.root()['blob'] = blob.Blob(b'data')
    conn.root()['other'] = 2
    with pytest.raises(errors.Unsupported, match='ZODB.blob.Blob.*not supported'):
        tm.commit()
    tm.abort()

    assert db.lastTransaction() == last
    assert dict(conn.root()) == {'kept': 1}
    conn.close()
    db.close()
