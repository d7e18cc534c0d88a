"""Following the store's invalidation channel, so that near-cache copies are trusted between changes.

With a store that pushes (Redis, Valkey, Redis Cluster: ``store/push.py``) each sidecar process
subscribes to ``<namespace>:near-invalidate``. While the subscription is confirmed and alive, the
near cache trusts its copies until they expire or an announced change drops them: a HIT costs no
store round trip. When it is not (yet) confirmed, is lost, or stops answering, the near cache falls
back to ``TINA4_SIDECAR_NEAR_CACHE_RECHECK``, exactly as without push, and a new subscription is
opened (with backoff); once it is confirmed the near cache is emptied, since announcements made in
between may have been missed.

Alive means proven, not assumed: a PING is sent on the subscription's connection every
``HEARTBEAT`` seconds, and its answer, which the server sends after every message published before
it, proves that everything announced before the PING was sent has been applied here. Copies are
trusted only until ``sent + liveness`` of the latest answered PING (``liveness`` = ``HEARTBEAT`` +
the store timeout), so a connection that dies silently costs at most that much staleness.

While a network store is down for this process, the file store stands in for it
(``store/fallback.py``) and push says nothing about what that holds: copies are not trusted on
push then, and once the store serves again the near cache is emptied, so that no copy read from
the stand-in outlives the outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable

from tina4_sidecar.config import SidecarSettings
from tina4_sidecar.proxy.near.cache import NearCache
from tina4_sidecar.store.contract import Store
from tina4_sidecar.store.factory import changes_of
from tina4_sidecar.store.fallback import FallbackStore
from tina4_sidecar.store.push import Subscription, decode

log = logging.getLogger("tina4_sidecar.near_cache")

HEARTBEAT = 0.5
"""Seconds between two PINGs on the subscription's connection."""

OPEN_TIMEOUT = 5.0
"""Seconds a subscription may take to connect and be confirmed (at least the store timeout)."""

RETRY_FIRST = 0.1
RETRY_MAX = 5.0
"""Seconds between attempts to subscribe again: doubling from the first to the most."""


def follow_changes(
    near: NearCache, store: Store, settings: SidecarSettings, timeout: float
) -> NearInvalidation | None:
    """Start following ``store``'s invalidation channel for ``near``; None when there is nothing to
    follow (a store without push, push turned off, or no near cache in use)."""
    if not (settings.fast_path and settings.near_cache_entries and settings.near_cache_push):
        return None
    if changes_of(store) is None:
        return None
    follower = NearInvalidation(near, lambda: _subscription(store), timeout, lambda: _stood_in_for(store))
    follower.start()
    return follower


def _subscription(store: Store) -> Subscription:
    subscription = changes_of(store)
    assert subscription is not None  # the store's backend does not change while it runs
    return subscription


def _stood_in_for(store: Store) -> bool:
    return isinstance(store, FallbackStore) and store.degraded


class NearInvalidation:
    """Keeps ``near`` subscribed to the announced changes, through ``subscribe`` (a new subscription
    per attempt), for as long as it runs."""

    def __init__(
        self,
        near: NearCache,
        subscribe: Callable[[], Subscription],
        timeout: float,
        degraded: Callable[[], bool] = lambda: False,
    ) -> None:
        """``degraded()`` answers True while another store stands in for the one that announces."""
        self.near = near
        self._subscribe = subscribe
        self._degraded = degraded
        self._stood_in = False
        self.timeout = timeout
        self.liveness = HEARTBEAT + timeout
        """Seconds after a PING was sent until which its answer lets copies be trusted."""
        self.subscriptions = 0
        """Subscriptions confirmed so far (the first and every resubscription)."""
        self.received = 0
        """Announced changes applied to the near cache."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="tina4-near-invalidation")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.near.unsubscribed()

    async def _run(self) -> None:
        delay = RETRY_FIRST
        failing = False
        while True:
            subscription = self._subscribe()
            confirmed = self.subscriptions
            try:
                await self._follow(subscription)
            except Exception as exc:  # any failure: fall back to rechecking, then subscribe again
                if self.subscriptions > confirmed:
                    failing, delay = False, RETRY_FIRST  # it worked for a while: come back quickly
                if not failing:  # one warning per outage
                    log.warning(
                        "near cache: no invalidation channel (%s); rechecking the store per "
                        "TINA4_SIDECAR_NEAR_CACHE_RECHECK until it is back",
                        _describe(exc),
                    )
                failing = True
            finally:
                self.near.unsubscribed()
                await _close(subscription)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    async def _follow(self, subscription: Subscription) -> None:
        started = time.monotonic()
        await asyncio.wait_for(subscription.open(), max(self.timeout, OPEN_TIMEOUT))
        self._trust(started, subscribed=True)
        self.subscriptions += 1
        log.info("near cache: following %s (push invalidation)", _name(subscription))
        pings: deque[float] = deque()
        reader = asyncio.create_task(self._read(subscription, pings))
        beater = asyncio.create_task(self._beat(subscription, pings))
        try:
            done, _ = await asyncio.wait((reader, beater), return_when=asyncio.FIRST_COMPLETED)
            self.near.unsubscribed()  # at once: the copies must not wait for the clean-up below
            for task in done:
                task.result()
        finally:
            for task in (reader, beater):
                task.cancel()
            await asyncio.gather(reader, beater, return_exceptions=True)

    async def _read(self, subscription: Subscription, pings: deque[float]) -> None:
        while True:
            data = await subscription.receive()
            if data is None:  # a PING answered: everything announced before it was sent is here
                if pings:
                    self._trust(pings.popleft())
                continue
            self.received += 1
            self.near.apply(decode(data))

    def _trust(self, proven_at: float, subscribed: bool = False) -> None:
        """Every change announced before ``proven_at`` has been applied here: copies may be trusted
        until ``proven_at + liveness``, unless the store does not serve from the server that announces."""
        if self._degraded():
            self._stood_in = True
            self.near.unsubscribed()
        elif subscribed or self._stood_in:
            self._stood_in = False
            self.near.subscribed(proven_at + self.liveness)  # empties the near cache
        else:
            self.near.alive(proven_at + self.liveness)

    async def _beat(self, subscription: Subscription, pings: deque[float]) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT)
            now = time.monotonic()
            if pings and now - pings[0] > self.liveness:
                raise TimeoutError(f"no answer to a PING in {self.liveness:g}s")
            pings.append(now)
            await asyncio.wait_for(subscription.ping(), self.timeout)


async def _close(subscription: Subscription) -> None:
    try:
        await subscription.close()
    except Exception as exc:
        log.debug("closing the invalidation subscription failed: %s", exc)


def _name(subscription: Subscription) -> str:
    return str(getattr(subscription, "channel", "the invalidation channel"))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return str(exc) or "timed out"
    return f"{type(exc).__name__}: {exc}"[:300]
