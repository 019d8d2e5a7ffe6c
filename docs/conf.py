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


def _public_interface_path(app, env, node, contnode):
    """Link ``objstore.interfaces.<layer>.IFoo`` (where an interface is
    defined) to ``objstore.interfaces.IFoo`` (where the API page documents
    it, the path users import)."""
    target = node.get('reftarget', '')
    parts = target.split('.')
    if (node.get('refdomain') != 'py' or len(parts) != 4
            or parts[:2] != ['objstore', 'interfaces']):
        return None
    node['reftarget'] = 'objstore.interfaces.' + parts[-1]
    domain = env.get_domain('py')
    return domain.resolve_xref(env, node['refdoc'], app.builder,
                               node['reftype'], node['reftarget'], node,
                               contnode)


def setup(app):
    app.connect('missing-reference', _public_interface_path)
