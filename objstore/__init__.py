"""objstore: an object database for Python in the style of ZODB.

The storages live in :mod:`objstore.storages`, their contracts in
:mod:`objstore.interfaces` and the exceptions in :mod:`objstore.errors`.
"""
