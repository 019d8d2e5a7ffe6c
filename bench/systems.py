"""The storages the benchmark compares, behind one small adapter each.

A *system* knows how to make a fresh storage in a directory, how to get a
storage holding the same data again ("reopen": a new instance on the same
file for file storages, the same instance for memory storages, which cannot
be reopened), and, for file storages, how to open a file set at rest and
how to strip its index checkpoints to force a full scan.

The objstore storages are imported lazily: when one is missing or fails to
import, its pair is skipped and the reason printed, so the harness also
runs on ZODB alone (``--calibrate`` puts ZODB on both sides).
"""
import glob
import os

#: File name of the data file inside a system's directory.
DATA_FILE = 'Data.fs'


class System:
    """One storage implementation as the benchmark drives it."""

    #: 'objstore' or 'ZODB'
    family = None
    #: 'memory' or 'file'
    kind = None
    label = None

    def storage_class(self):
        """The storage class (imported here, so a missing one is reported)."""
        raise NotImplementedError

    def references(self):
        """The ``referencesf`` this family's database passes to ``pack``."""
        raise NotImplementedError

    def create(self, directory):
        """A new empty storage whose files (if any) live in ``directory``."""
        return self.storage_class()()

    def reopen(self, storage, directory):
        """A storage holding the same data, as cold as this kind allows."""
        return storage


class _FileSystem(System):
    kind = 'file'
    #: Index checkpoint files, as suffixes (globs) of the data file's path.
    checkpoint_globs = ()

    def path(self, directory):
        return os.path.join(directory, DATA_FILE)

    def create(self, directory):
        return self.storage_class()(self.path(directory), create=True)

    def open(self, directory):
        """The storage on an existing file set (read-write, as apps open it)."""
        return self.storage_class()(self.path(directory))

    def reopen(self, storage, directory):
        storage.close()
        return self.open(directory)

    def checkpoint_paths(self, directory):
        """The files that let ``open`` skip scanning the log."""
        base = self.path(directory)
        names = set()
        for pattern in self.checkpoint_globs:
            names.update(glob.glob(base + pattern))
        return sorted(names)

    def strip_checkpoints(self, directory):
        """Delete the checkpoint files; returns their names."""
        return _remove(self.checkpoint_paths(directory))


def _zodb_references():
    from ZODB.serialize import referencesf
    return referencesf


def _objstore_references():
    from objstore.serialize import references
    return references


class ZodbMapping(System):
    family = 'ZODB'
    kind = 'memory'
    label = 'ZODB MappingStorage'

    def storage_class(self):
        from ZODB.MappingStorage import MappingStorage
        return MappingStorage

    def references(self):
        return _zodb_references()


class ZodbFile(_FileSystem):
    """ZODB's FileStorage with its defaults (it fsyncs every commit)."""

    family = 'ZODB'
    label = 'ZODB FileStorage'
    # ZODB saves its index only on close and pack; without it, open scans
    # the whole file (and then writes a new index).
    checkpoint_globs = ('.index',)

    def storage_class(self):
        from ZODB.FileStorage import FileStorage
        return FileStorage

    def references(self):
        return _zodb_references()


class ObjstoreMemory(System):
    family = 'objstore'
    kind = 'memory'
    label = 'objstore MemoryStorage'

    def storage_class(self):
        from objstore.storages import MemoryStorage
        return MemoryStorage

    def references(self):
        return _objstore_references()


class ObjstoreFile(_FileSystem):
    """objstore's FileStorage with its defaults (``fsync=True``)."""

    family = 'objstore'
    label = 'objstore FileStorage'
    # objstore.storages.file.index: the checkpoint is ``<log>.index``.
    checkpoint_globs = ('.index',)

    def storage_class(self):
        try:
            from objstore.storages import FileStorage
        except ImportError:
            # The brief's public name; until objstore.storages re-exports
            # it, take it from its package.
            from objstore.storages.file import FileStorage
        return FileStorage

    def references(self):
        return _objstore_references()


def _remove(paths):
    for path in paths:
        os.remove(path)
    return [os.path.basename(p) for p in paths]


#: name -> system class; ``--calibrate`` maps the objstore names to ZODB's.
SYSTEMS = {
    'objstore-memory': ObjstoreMemory,
    'objstore-file': ObjstoreFile,
    'zodb-mapping': ZodbMapping,
    'zodb-file': ZodbFile,
}

#: pair name -> (objstore side, ZODB side)
PAIRS = {
    'memory': ('objstore-memory', 'zodb-mapping'),
    'file': ('objstore-file', 'zodb-file'),
}

CALIBRATION = {
    'objstore-memory': 'zodb-mapping',
    'objstore-file': 'zodb-file',
}


def get(name):
    return SYSTEMS[name]()


def check_available(name):
    """None when ``name`` can be driven, else a one-line reason."""
    system = get(name)
    try:
        system.storage_class()
        system.references()
    except Exception as exc:
        return '%s: %s' % (type(exc).__name__, exc)
    return None
