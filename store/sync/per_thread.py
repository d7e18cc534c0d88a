"""``PerThread``: one driver connection kept by each calling thread, for the sync stores' hot calls.

A pool costs every call a checkout and a return (locks, a queue; redis-py also polls the socket
for stray bytes; psycopg's pool checks the connection's state): measured here, redis-py's pooled
``GET`` about twice the CPU of the same command on a connection the thread already holds. So a
thread keeps the connection it first got, and later calls use it directly:

* at most ``limit`` connections exist at once; past that ``get()`` answers None and the caller
  uses its pool, as before;
* a thread that ends gives its connection back to an idle list (a thread-per-request server
  reuses them instead of connecting once per request);
* ``discard()`` after a failure closes the calling thread's connection; the next call connects
  again;
* a forked child never uses (nor closes) the parent's connections: they share its sockets;
* ``close()`` closes every connection, idle or held, and later calls answer None.

The driver's own reconnection and timeouts still apply: this only decides which connection a
call uses. The same connection class and arguments as the store's pool, so the bytes sent and
read are the same.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

C = TypeVar("C")

_forks = [0]
"""Forks this process descends from: a lease taken before a fork is the parent's."""


def _forked() -> None:
    _forks[0] += 1


os.register_at_fork(after_in_child=_forked)


class _Lease[C]:
    """The connection a thread holds; when the thread ends (its ``local`` is dropped) it goes back."""

    __slots__ = ("conn", "fork", "owner")

    def __init__(self, conn: C, owner: PerThread[C]) -> None:
        self.conn = conn
        self.owner: PerThread[C] | None = owner
        self.fork = _forks[0]

    def __del__(self) -> None:
        owner, self.owner = self.owner, None
        if owner is not None and self.fork == _forks[0]:
            with contextlib.suppress(Exception):  # interpreter shutdown: nothing to give back to
                owner._give_back(self.conn)


class PerThread[C]:
    """Connections made by ``connect`` (closed by ``close_conn``), one per calling thread."""

    def __init__(self, connect: Callable[[], C], close_conn: Callable[[C], None], limit: int) -> None:
        self._connect = connect
        self._close_conn = close_conn
        self.limit = limit
        self._local = threading.local()
        self._lock = threading.Lock()
        self._idle: list[C] = []
        self._held: dict[int, C] = {}  # id(conn) -> conn, for close(); counts toward the limit
        self._making = 0  # connections being made now: they count toward the limit too
        self._fork = _forks[0]
        self._closed = False

    def get(self) -> C | None:
        """The calling thread's connection (made now if it has none); None past the limit or after
        ``close()``. Connecting may raise the driver's error."""
        lease: _Lease[C] | None = getattr(self._local, "lease", None)
        if lease is not None and lease.fork == _forks[0] and lease.owner is not None:
            return lease.conn
        return self._lease()

    def discard(self) -> None:
        """Close the calling thread's connection (after a failure left it in an unknown state)."""
        lease: _Lease[C] | None = getattr(self._local, "lease", None)
        self._local.lease = None
        if lease is None or lease.owner is None or lease.fork != _forks[0]:
            return
        lease.owner = None
        with self._lock:
            self._held.pop(id(lease.conn), None)
        self._quietly_close(lease.conn)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns = [*self._idle, *self._held.values()] if self._fork == _forks[0] else []
            self._idle, self._held = [], {}
        self._local.lease = None
        for conn in conns:
            self._quietly_close(conn)

    def count(self) -> int:
        """Connections that exist now (held by a thread or idle)."""
        with self._lock:
            return len(self._held) + len(self._idle)

    def _lease(self) -> C | None:
        with self._lock:
            if self._fork != _forks[0]:  # the parent's connections: never ours to use or close
                self._idle, self._held, self._fork = [], {}, _forks[0]
            if self._closed:
                return None
            if self._idle:
                conn = self._idle.pop()
            elif len(self._held) + self._making >= self.limit:
                return None
            else:
                conn = None
                self._making += 1
        if conn is None:
            try:
                conn = self._connect()
            finally:
                with self._lock:
                    self._making -= 1
        with self._lock:
            if self._closed:
                closed = True
            else:
                closed = False
                self._held[id(conn)] = conn
        if closed:
            self._quietly_close(conn)
            return None
        self._local.lease = _Lease(conn, self)
        return conn

    def _give_back(self, conn: C) -> None:
        with self._lock:
            if self._held.pop(id(conn), None) is None:
                return  # discarded or closed meanwhile
            if not self._closed:
                self._idle.append(conn)
                return
        self._quietly_close(conn)

    def _quietly_close(self, conn: C) -> None:
        try:
            self._close_conn(conn)
        except Exception as exc:
            log.debug("closing a per-thread connection failed: %s", exc)
