"""Sphinx configuration for objstore's documentation.

Build with ``python -m sphinx -b html docs <output dir> -W``: warnings are
errors, and every ``>>>`` example in these pages also runs in the test suite
(``tests/test_docs.py``).
"""
project = 'objstore'
extensions = [
    'sphinx.ext.autodoc',
    'sphinx.ext.doctest',
    # autointerface documents zope.interface declarations (docs/api.rst).
    'repoze.sphinx.autointerface',
]
exclude_patterns = ['_build', 'dev']
nitpicky = True
# Classes of other projects that docstrings name; without intersphinx (the
# build runs offline) Sphinx cannot link them.
nitpick_ignore = [
    ('py:class', 'transaction.interfaces.TransientError'),
]
autodoc_member_order = 'bysource'
