"""Stand-ins for objects whose class can no longer be imported.

A database outlives the code that wrote it: a module is renamed, a class is
deleted. Loading such a record must not fail (the rest of the database is
still useful), so :func:`find_global` answers a missing global with a
*broken class* of the same module and name. Its instances keep the state
they were loaded with and refuse changes, so writing one back (a copy, a
migration, an undo) stores that state unchanged; once the code is back, the
same records load as the real class again.

Callers may rely on:

- ``find_global(module, name)`` returns the global when it can be imported,
  else a subclass of :class:`Broken`; the same ``(module, name)`` always
  gives the same broken class, whose ``__module__``/``__name__`` are the
  missing ones.
- ``persistent_broken(cls)`` is the :class:`PersistentBroken` variant of a
  broken class (also always the same class); ghosts of records whose class
  is missing are of that kind.
- Setting an attribute (other than ``_p_``/``_v_`` ones) on a broken
  object raises :class:`BrokenModified`; so does pickling a persistent
  broken object outside a database.

The behaviour follows ZODB's ``ZODB.broken``, so records ZODB considers
broken load here the same way.
"""
import copyreg
import sys

import persistent
from _compat_pickle import IMPORT_MAPPING
from _compat_pickle import NAME_MAPPING

from objstore import errors

# (module, name) -> broken class; one class per missing global, so that
# isinstance checks and cache identity hold across loads.
_broken_classes = {}

# Records written by ZODB pickle non-persistent broken objects through
# ZODB's ``rebuild``; read them through ours so they need no ZODB.
_ALIASES = {('ZODB.broken', 'rebuild'): ('objstore.broken', 'rebuild')}


BrokenModified = errors.BrokenModified  # defined with the other errors


class Broken:
    """Base of the classes made for missing globals.

    An instance keeps what the record gave it: the ``__new__`` arguments,
    the ``__init__`` arguments if any, and the state passed to
    ``__setstate__``; it pickles back to the same class name and state.
    """

    __Broken_newargs__ = ()
    __Broken_initargs__ = None
    __Broken_state__ = None

    def __new__(cls, *args):
        self = object.__new__(cls)
        self.__dict__['__Broken_newargs__'] = args
        return self

    def __init__(self, *args):
        self.__dict__['__Broken_initargs__'] = args

    def __setstate__(self, state):
        self.__dict__['__Broken_state__'] = state

    def __reduce__(self):
        # The NEWOBJ form is what the original class pickled as (protocol
        # 2+), so the bytes written back match the ones read.
        return (copyreg.__newobj__,
                (type(self),) + tuple(self.__Broken_newargs__ or ()),
                self.__Broken_state__)

    def __setattr__(self, name, value):
        raise BrokenModified(
            'cannot set %r on a broken %s object: its class cannot be '
            'imported' % (name, _dotted(type(self))))

    def __repr__(self):
        return '<broken %s instance>' % _dotted(type(self))


class PersistentBroken(Broken, persistent.Persistent):
    """A persistent object whose class is missing.

    It behaves as a persistent object towards its connection (``_p_``
    attributes, ghosting, loading) and keeps its state for writing back;
    ``__getstate__`` returns that state unchanged.
    """

    def __new__(cls, *args):
        self = persistent.Persistent.__new__(cls)
        self.__dict__['__Broken_newargs__'] = args
        return self

    def __getstate__(self):
        return self.__Broken_state__

    def __getnewargs__(self):
        # Defined (as in ZODB) so references to broken objects are bare
        # oids: a reader then loads the record to learn the class, which
        # stays right if the real class comes back with other __new__ args.
        return tuple(self.__Broken_newargs__ or ())

    def __setattr__(self, name, value):
        if name.startswith(('_p_', '_v_')):
            persistent.Persistent.__setattr__(self, name, value)
        else:
            Broken.__setattr__(self, name, value)

    def __reduce__(self, *args):
        raise BrokenModified(
            'cannot pickle broken %s object %s outside its database: its '
            'class cannot be imported'
            % (_dotted(type(self)), errors.oid_repr(self._p_oid)))

    __reduce_ex__ = __reduce__

    def __repr__(self):
        return '<persistent broken %s instance %s>' % (
            _dotted(type(self)), errors.oid_repr(self._p_oid))


def _dotted(cls):
    return '%s.%s' % (cls.__module__, cls.__name__)


def is_broken(cls):
    """True when ``cls`` is a broken class (made for a missing global)."""
    return isinstance(cls, type) and issubclass(cls, Broken)


def broken_class(module, name):
    """The broken class standing for the missing global ``module.name``."""
    key = (module, name)
    cls = _broken_classes.get(key)
    if cls is None:
        cls = type(name, (Broken,), {'__module__': module})
        cls = _broken_classes.setdefault(key, cls)
    return cls


def persistent_broken(cls):
    """The :class:`PersistentBroken` variant of broken class ``cls``."""
    if issubclass(cls, PersistentBroken):
        return cls
    found = cls.__dict__.get('_Broken_persistent_class')
    if found is None:
        found = type(cls.__name__, (PersistentBroken, cls),
                     {'__module__': cls.__module__})
        # type.__setattr__: the class is ours, not a broken instance.
        type.__setattr__(cls, '_Broken_persistent_class', found)
    return found


def _lookup(module_name, name):
    module = sys.modules.get(module_name)
    if module is None:
        try:
            __import__(module_name)
        except ImportError:
            return _MISSING
        module = sys.modules.get(module_name, _MISSING)
    value = module
    # Dotted names are nested classes; pickle protocol 4 writes them so.
    for part in name.split('.'):
        value = getattr(value, part, _MISSING)
    return value


_MISSING = object()


def find_global(module, name):
    """The global ``module.name``, or a broken class when it is missing.

    Python 2 names in old records are mapped to their Python 3 homes first
    (as pickle does). Only a missing module or attribute gives a broken
    class; other errors raised while importing the module propagate.
    """
    if (module, name) in NAME_MAPPING:
        module, name = NAME_MAPPING[(module, name)]
    elif module in IMPORT_MAPPING:
        module = IMPORT_MAPPING[module]
    if (module, name) in _ALIASES:
        module, name = _ALIASES[(module, name)]
    value = _lookup(module, name)
    if value is _MISSING:
        return broken_class(module, name)
    return value


def rebuild(module, name, *args):
    """A broken (or, if its class is back, real) object, as ZODB's records
    of non-persistent broken objects ask for."""
    cls = find_global(module, name)
    return cls.__new__(cls, *args)
