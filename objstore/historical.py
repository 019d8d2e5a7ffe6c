"""Read-only views of a storage pinned at a past moment (time travel).

``db.open(at=...)`` reads through one: every load returns the revision
current just before the pinned tid.
"""
from zope.interface import implementer

from objstore import errors
from objstore.interfaces import IMVCCStorage
from objstore.views import Delegating, load_before_start

__all__ = ['HistoricalInstance', 'historical']


def _read_only(what):
    def refuse(self, *args, **kw):
        raise errors.ReadOnlyHistoryError(
            'cannot %s: this view of %s shows the database before tid %s'
            ' and is read-only' % (what, self.getName(),
                                   errors.oid_repr(self._start)))
    refuse.__name__ = what
    return refuse


@implementer(IMVCCStorage)
class HistoricalInstance(Delegating):
    """A read-only view of a storage just before the tid ``before``.

    ``load`` returns the revision current at that moment (POSKeyError if
    the object did not exist then); writes raise ReadOnlyHistoryError;
    ``poll_invalidations()`` returns an empty set, as nothing it shows
    changes. ``release()`` releases the instance it was built on, if any.
    """

    _optional = ('history_start', 'iterator', 'getTid')

    def __init__(self, storage, before, owned=False):
        if not isinstance(before, bytes) or len(before) != 8:
            raise TypeError('before must be an 8-byte tid, not %r'
                            % (before,))
        super().__init__(storage)
        self._start = before
        self._owned = owned

    def new_instance(self):
        if self._owned:
            return historical(self._storage.new_instance(), self._start)
        return HistoricalInstance(self._storage, self._start)

    load = load_before_start

    def isReadOnly(self):
        return True

    def supportsUndo(self):
        return False

    def poll_invalidations(self):
        return set()

    def sync(self, force=True):
        """Nothing to do: the view never moves."""

    def release(self):
        if self._owned:
            self._owned = False
            release = getattr(self._storage, 'release', None)
            if release is not None:
                release()

    close = release

    def tpc_abort(self, transaction):
        """Nothing was begun here, so nothing to discard."""

    new_oid = _read_only('new_oid')
    tpc_begin = _read_only('tpc_begin')
    store = _read_only('store')
    deleteObject = _read_only('deleteObject')
    checkCurrentSerialInTransaction = _read_only(
        'checkCurrentSerialInTransaction')
    tpc_vote = _read_only('tpc_vote')
    tpc_finish = _read_only('tpc_finish')
    undo = _read_only('undo')
    pack = _read_only('pack')


def historical(instance, before):
    """A read-only view, pinned just before ``before``, of an instance of
    a natively MVCC storage (or of any storage with ``loadBefore``).

    The view owns ``instance``: its ``release()`` releases it.
    """
    return HistoricalInstance(instance, before, owned=True)
