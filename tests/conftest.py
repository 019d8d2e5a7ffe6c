"""Shared pytest set-up for objstore's tests."""
import pytest

# The conformance mixins in objstore.testing assert with plain ``assert``;
# rewrite them like test modules so failures show the compared values.
pytest.register_assert_rewrite('objstore.testing')


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'history: needs a storage that keeps history (undo,'
        ' db.open(at=...), history()); not run on the kinds in'
        ' db_fixtures.NO_HISTORY')


def pytest_collection_modifyitems(config, items):
    """Deselect (not skip) history tests on storages that keep none: they
    do not apply there, and the storages' own tests check that they
    refuse such requests clearly."""
    from db_fixtures import NO_HISTORY
    keep, dropped = [], []
    for item in items:
        callspec = getattr(item, 'callspec', None)
        kind = callspec.params.get('storage_factory') if callspec else None
        if kind in NO_HISTORY and item.get_closest_marker('history'):
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
