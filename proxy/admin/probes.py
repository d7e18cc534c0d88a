"""What the admin API reads from the store and the app, at most once a second however often it is asked.

A load balancer's probes, a Prometheus scrape and an operator's ``stats`` may arrive together and
often: the store's stats (its size is a SCAN on Redis) and the readiness checks (a store PING, a
GET of the app's manifest) run at most once per ``PROBE_TTL`` seconds, and concurrent callers
share the one running check.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tina4_sidecar.proxy.sidecar import Sidecar
from tina4_sidecar.store.contract import StoreStats, StoreUnavailable

log = logging.getLogger("tina4_sidecar.admin")

PROBE_TTL = 1.0
"""Seconds a result is reused."""

APP_TIMEOUT = 2.0
"""Seconds the app has to answer the readiness GET: a probe must not hang on a hung app."""

MAX_PROBE_BODY = 1024 * 1024
"""Bytes of the app's answer read (and dropped) so that the connection goes back to the pool."""


class Memo[T]:
    """The result of an async call, reused for ``ttl`` seconds; concurrent callers share one call."""

    def __init__(self, call: Callable[[], Awaitable[T]], ttl: float = PROBE_TTL) -> None:
        self._call = call
        self._ttl = ttl
        self._value: T | None = None
        self._at = float("-inf")
        self._running: asyncio.Task[T] | None = None

    async def get(self) -> T:
        if self._value is not None and time.monotonic() - self._at < self._ttl:
            return self._value
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._refresh())
        # shield: a caller that gives up (client gone) must not cancel the others' check
        return await asyncio.shield(self._running)

    async def _refresh(self) -> T:
        value = await self._call()
        self._value, self._at = value, time.monotonic()
        return value


@dataclass(frozen=True)
class Readiness:
    store: bool
    app: bool

    @property
    def ok(self) -> bool:
        return self.store and self.app


class Probes:
    """One sidecar's memoised store stats and readiness."""

    def __init__(self, sidecar: Sidecar) -> None:
        # Weak: the probes are kept per sidecar and must not keep a stopped one alive.
        ref = weakref.ref(sidecar)
        self.store_stats = Memo(lambda: _store_stats(_alive(ref)))
        self.readiness = Memo(lambda: _readiness(_alive(ref)))


_PROBES: dict[int, Probes] = {}
"""By ``id``: a Sidecar is an unhashable dataclass; a finalizer removes its entry when it goes."""


def probes_for(sidecar: Sidecar) -> Probes:
    """The sidecar's probes, made on first use and dropped with the sidecar."""
    key = id(sidecar)
    probes = _PROBES.get(key)
    if probes is None:
        probes = _PROBES[key] = Probes(sidecar)
        weakref.finalize(sidecar, _PROBES.pop, key, None)
    return probes


def _alive(ref: weakref.ref[Sidecar]) -> Sidecar:
    sidecar = ref()
    if sidecar is None:
        raise RuntimeError("the sidecar is gone")
    return sidecar


async def _store_stats(sidecar: Sidecar) -> StoreStats:
    return await sidecar.store.stats()


async def _readiness(sidecar: Sidecar) -> Readiness:
    store, app = await asyncio.gather(_store_answers(sidecar), _app_answers(sidecar))
    return Readiness(store=store, app=app)


async def _store_answers(sidecar: Sidecar) -> bool:
    try:
        await sidecar.store.ping()  # bounded by the store's own timeout
    except StoreUnavailable as exc:
        log.debug("not ready: store: %s", exc)
        return False
    return True


async def _app_answers(sidecar: Sidecar) -> bool:
    """The app answers HTTP below 500 on its manifest path (a 404 still proves it serves)."""
    path = sidecar.settings.manifest_path
    try:
        async with asyncio.timeout(APP_TIMEOUT):
            accept = {"Accept": "application/json"}
            async with sidecar.upstream.request("GET", path, accept, fresh=True) as response:
                await response.content.read(MAX_PROBE_BODY)
                status = response.status
    except Exception as exc:  # unreachable, too slow, or a connection broken mid-body
        log.debug("not ready: app: %s: %s", type(exc).__name__, exc)
        return False
    if status >= 500:
        log.debug("not ready: app answered %d for %s", status, path)
        return False
    return True
