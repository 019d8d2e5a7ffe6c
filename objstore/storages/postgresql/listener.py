"""LISTEN for the commits of other processes, in a background thread.

Every commit sends ``NOTIFY <channel>, '<tid>'`` inside its transaction, so
the notification goes out exactly when the commit becomes visible. With a
``poll_interval``, a storage's instances skip the polling query while no
notification newer than their snapshot arrived (and the interval has not
run out); the listener tells them what arrived. One listener (one
connection) serves every instance of a storage in a process.
"""
import threading
import time

import psycopg

RETRY_DELAY = 1.0


class Listener:
    """Follows the newest tid announced on ``channel``.

    ``shared.note_commit(tid)`` is called for every notification.
    :meth:`listening_since` is the monotonic time since which no
    notification can have been missed (None while not connected).
    """

    def __init__(self, dsn, connect_options, channel, shared):
        self._dsn = dsn
        self._options = connect_options
        self._channel = channel
        self._shared = shared
        self._since = None
        self._stop = threading.Event()
        self._conn = None
        self._thread = threading.Thread(
            target=self._run, name='objstore-pg-listener %s' % channel,
            daemon=True)
        self._thread.start()

    def listening_since(self):
        return self._since

    def _run(self):
        while not self._stop.is_set():
            try:
                self._listen()
            except psycopg.Error:
                self._since = None
                self._close()
                self._stop.wait(RETRY_DELAY)

    def _listen(self):
        conn = self._conn = psycopg.connect(self._dsn, autocommit=True,
                                            **self._options)
        conn.execute('LISTEN %s' % self._channel)
        self._since = time.monotonic()
        while not self._stop.is_set():
            for notify in conn.notifies(timeout=0.5):
                try:
                    tid = int(notify.payload)
                except ValueError:
                    continue
                self._shared.note_commit(tid)

    def _close(self):
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass

    def close(self):
        """Stop listening; waits for the thread (at most about a second)."""
        self._stop.set()
        self._since = None
        self._thread.join(5)
        self._close()
