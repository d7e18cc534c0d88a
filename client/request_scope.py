"""The request-scoped query cache's scope: one per HTTP request, found through a ContextVar.

Tina4's own request-scoped cache lives on the connection object and is cleared at each request
start, so two concurrent requests sharing a ``Database`` read and clear each other's entries.
Ours lives in the request's *context*: every request that Tina4 dispatches runs ``handle()`` in a
context of its own (uvicorn starts a task per request; Tina4's built-in server one per
connection, where keep-alive requests follow each other), and ``begin_request()`` puts a fresh
:class:`QueryScope` into that context at the request's start. Everything that runs for the
request sees the same scope: middleware and async handlers run in that context, sync handlers
run in a thread with a copy of it (``asyncio.to_thread``), and tasks the handler starts copy it
too. No other request can reach it.

Code outside a request (scripts, workers, background tasks) shares one process-wide *ambient*
scope, whose entries expire after ``TINA4_AUTO_CACHING_TTL`` seconds since nothing marks a
request's end there. ``request_scope()`` gives such code an explicit scope of its own (one
job, one scope).

The request start is hooked where Tina4 itself resets its request-scoped cache:
``Database.reset_request_caches()``, which ``tina4_python.core.server.handle()`` calls in its
pre-match stages for every request, on the built-in server and under any ASGI server alike,
before any middleware or handler runs (see ``hook_tina4_request_start``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, Protocol

log = logging.getLogger(__name__)

MAX_ENTRIES = 512
"""Entries one scope keeps; the least recently used goes first."""

MAX_WEIGHT = 1_000_000
"""Cells (rows x columns) of results one scope keeps: a request reading huge results stays bounded."""

_HOOK_MARK = "__tina4_sidecar_request_scope__"


class Weighed(Protocol):
    @property
    def weight(self) -> int: ...


class QueryScope:
    """Query results (``query_cache.Snapshot``) of one request (or of the ambient scope), by key.

    Thread-safe: a request's sync handler, the tasks it starts and its middleware may all use it.
    """

    __slots__ = ("_entries", "_lock", "_weight", "in_request")

    def __init__(self, in_request: bool) -> None:
        self.in_request = in_request
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires_at, payload = entry
            if expires_at and expires_at <= time.monotonic():
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return payload

    def put(self, key: str, payload: Weighed, ttl: float) -> None:
        """Keep ``payload`` for ``ttl`` seconds (0: until the scope ends or is flushed)."""
        if payload.weight > MAX_WEIGHT:
            return
        expires_at = time.monotonic() + ttl if ttl else 0.0
        with self._lock:
            self._drop(key)
            self._entries[key] = (expires_at, payload)
            self._weight += payload.weight
            while len(self._entries) > MAX_ENTRIES or self._weight > MAX_WEIGHT:
                self._drop(next(iter(self._entries)))

    def flush(self) -> None:
        with self._lock:
            self._entries.clear()
            self._weight = 0

    def size(self) -> int:
        """Live entries."""
        now = time.monotonic()
        with self._lock:
            for key in [k for k, (at, _) in self._entries.items() if at and at <= now]:
                self._drop(key)
            return len(self._entries)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._weight -= entry[1].weight


_scope: ContextVar[QueryScope | None] = ContextVar("tina4_sidecar_query_scope", default=None)
_ambient = QueryScope(in_request=False)


def current() -> QueryScope:
    """The scope of the request running in this context, else the process-wide ambient scope."""
    return _scope.get() or _ambient


def ambient() -> QueryScope:
    return _ambient


def begin_request() -> QueryScope:
    """Start a fresh scope in the current context (the request's start). Returns it."""
    scope = QueryScope(in_request=True)
    _scope.set(scope)
    return scope


@contextlib.contextmanager
def request_scope() -> Iterator[QueryScope]:
    """A scope of its own for the code in the ``with`` block (a job of a worker, a test's request)."""
    token = _scope.set(QueryScope(in_request=True))
    try:
        scope = _scope.get()
        assert scope is not None
        yield scope
    finally:
        _scope.reset(token)


def flush_after_write() -> None:
    """A write happened in this context: flush this request's scope and the ambient one.

    Other requests' scopes are theirs: a request sees its own writes, and another request's
    only from its next start on (the chapter's rules).
    """
    scope = _scope.get()
    if scope is not None:
        scope.flush()
    _ambient.flush()


def hook_tina4_request_start() -> bool:
    """Make Tina4 start a fresh scope at every request start. Idempotent; False without Tina4.

    Tina4's dispatcher calls ``Database.reset_request_caches()`` (a classmethod) from
    ``_stage_reset_request_caches``, awaited directly by ``handle()``: the ContextVar set there
    is the request's. It runs for every request that reaches the router, before global
    middleware, the auth gate and the handler; only CORS preflights, rate-limit refusals,
    trailing-slash redirects and Tina4's dev/swagger pages answer earlier, and they run no app
    code. The original method still runs afterwards.
    """
    try:
        from tina4_python.database.connection import Database as Tina4Database
    except ImportError:
        return False
    original = Tina4Database.__dict__.get("reset_request_caches")
    if not isinstance(original, classmethod):
        log.warning(
            "Tina4 has no Database.reset_request_caches(): the request-scoped query cache "
            "cannot tell requests apart and uses its safety TTL instead"
        )
        return False
    if getattr(original.__func__, _HOOK_MARK, False):
        return True
    wrapped = original.__func__

    def reset_request_caches(cls: Any) -> None:
        begin_request()
        wrapped(cls)

    setattr(reset_request_caches, _HOOK_MARK, True)
    reset_request_caches.__doc__ = wrapped.__doc__
    Tina4Database.reset_request_caches = classmethod(reset_request_caches)
    return True
