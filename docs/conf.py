"""Sphinx configuration for objstore's documentation."""
project = 'objstore'
extensions = ['sphinx.ext.autodoc', 'sphinx.ext.doctest']
exclude_patterns = ['_build', 'dev']
nitpicky = True
