"""objstore's benchmarks (part of the repository, not of the installed package).

Run them from the repository root: ``python -m bench storages --help``.
"""
