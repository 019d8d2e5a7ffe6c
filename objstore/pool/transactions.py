"""The two contexts of a pool's transactions (see objstore.pool.pool).

:class:`Change` wraps one change: it joins the transaction the current
thread has open, or else runs in one of its own that commits when the
change is done (aborts if it raised). :class:`TransactionBlock` is
``pool.transaction()``: the outermost block begins and ends the
transaction, nested ones join it. Both hold the pool's lock while they
run, so another thread's changes wait rather than join.
"""
from objstore import errors


class Change:
    """One change: inside the pool's transaction, or in its own."""

    __slots__ = ('_pool', '_own')

    def __init__(self, pool):
        self._pool = pool

    def __enter__(self):
        pool = self._pool
        pool._lock.acquire()
        try:
            self._own = not pool._depth
            if self._own:
                pool._begin()
        except BaseException:
            pool._lock.release()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        pool = self._pool
        try:
            if self._own:
                pool._finish(commit=exc_type is None)
        finally:
            pool._lock.release()
        return False


class TransactionBlock:
    """``pool.transaction()``: nested blocks join the outermost."""

    def __init__(self, pool):
        self._pool = pool

    def __enter__(self):
        pool = self._pool
        pool._lock.acquire()
        try:
            if pool._depth:
                pool._depth += 1
            else:
                pool._begin()
        except BaseException:
            pool._lock.release()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        pool = self._pool
        try:
            if pool._depth > 1:
                pool._depth -= 1
                if exc_type is not None and pool._doomed is None:
                    # pmemobj's rule: a nested abort aborts everything.
                    pool._tm.abort()
                    pool.mm._end_transaction()
                    pool._tm.begin()
                    pool._doomed = '%s: %s' % (exc_type.__name__, exc)
                return False
            if pool._doomed is not None and exc_type is None:
                why = pool._doomed
                pool._finish(commit=False)
                raise errors.TransactionError(
                    'the transaction was rolled back: a nested'
                    ' pool.transaction() block raised %s' % why)
            pool._finish(commit=exc_type is None)
        finally:
            pool._lock.release()
        return False
