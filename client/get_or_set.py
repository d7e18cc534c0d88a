"""``cache_get_or_set``: a missing value is computed once, however many threads, tasks and processes ask.

Within a process, concurrent callers for one key share one *flight*: the first computes, the
others wait for its result (or its exception). Across processes, the flight's leader takes a
lock in the store's ``meta`` layer (``~lock:kv:<key>``, see ``client.store_lock``); a process
that finds it taken polls for the value instead. The producer runs in the caller's own thread
(sync) or task (async), never on the bridge loop, so it may use its request, its database
connection and its thread-locals, and a slow producer holds up no other cache call.

The tags' tokens are read before the producer runs: a tag invalidated while it computes makes
the stored value a miss (the callers of this flight still get it).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from tina4_sidecar.client import kv_core, runtime
from tina4_sidecar.client.kv_core import KvStores
from tina4_sidecar.client.store_lock import StoreLock, take_or_wait
from tina4_sidecar.client.values import decode, encode

DEFAULT_LOCK_TTL = 30
"""Seconds another process waits for a producer before computing the value itself."""

LOCK_PREFIX = "~lock:kv:"


class _Abandoned(Exception):
    """The leader stopped without an outcome (cancelled, interrupted): a waiter takes over."""


@dataclass
class _Lead:
    """What the caller that computes needs to finish its flight."""

    stores: KvStores
    key: str
    flight: asyncio.Future[bytes]
    tokens: dict[str, str] | None
    lock: StoreLock


_flights: dict[str, asyncio.Future[bytes]] = {}
runtime.on_reset(_flights.clear)


def cache_get_or_set(
    key: str,
    producer: Callable[[], Any],
    ttl: int | None = None,
    tags: Iterable[str] | None = None,
    *,
    lock_ttl: int = DEFAULT_LOCK_TTL,
) -> Any:
    """The cached value of ``key``; on a miss, ``producer()``'s result, cached as ``cache_set`` would.

    Concurrent callers (threads, and processes sharing the store) run ``producer`` once; the
    others get its value (as the cache returns it: tuples as lists) or its exception.
    ``lock_ttl`` bounds how long another process waits for this one before computing itself.
    """
    key, ttl, found_tags = _checked(key, ttl, tags, lock_ttl)
    cached = _inline_hit(key)
    if cached is not None:
        return decode(cached)
    outcome = runtime.run_sync(
        kv_core.on_bridge(partial(_begin, key=key, tags=found_tags, lock_ttl=lock_ttl))
    )
    if not isinstance(outcome, _Lead):
        return decode(outcome)
    try:
        value = producer()
        payload = encode(value)
    except BaseException as exc:
        runtime.run_sync(_abort(outcome, exc))
        raise
    runtime.run_sync(_complete(outcome, payload, ttl))
    return value


async def acache_get_or_set(
    key: str,
    producer: Callable[[], Any | Awaitable[Any]],
    ttl: int | None = None,
    tags: Iterable[str] | None = None,
    *,
    lock_ttl: int = DEFAULT_LOCK_TTL,
) -> Any:
    """``cache_get_or_set`` for ``async def`` code; ``producer`` may be sync or async."""
    key, ttl, found_tags = _checked(key, ttl, tags, lock_ttl)
    cached = _inline_hit(key)
    if cached is not None:
        return decode(cached)
    begin = partial(_begin, key=key, tags=found_tags, lock_ttl=lock_ttl)
    outcome = await runtime.run_async(kv_core.on_bridge(begin))
    if not isinstance(outcome, _Lead):
        return decode(outcome)
    try:
        value = producer()
        if inspect.isawaitable(value):
            value = await value
        payload = encode(value)
    except BaseException as exc:
        # shielded: a second cancellation must not leave the flight and the lock behind
        await asyncio.shield(runtime.run_async(_abort(outcome, exc)))
        raise
    await asyncio.shield(runtime.run_async(_complete(outcome, payload, ttl)))
    return value


def _inline_hit(key: str) -> bytes | None:
    """A hit found in the caller's thread on the memory store (a miss goes to the bridge loop,
    where the flights are, and is counted there)."""
    stores = kv_core.inline_stores()
    if stores is None:
        return None
    payload = runtime.run_inline(kv_core.lookup(stores, key))
    if payload is not None:
        kv_core.COUNTERS.count(True)
    return payload


def _checked(
    key: str, ttl: int | None, tags: Iterable[str] | None, lock_ttl: int
) -> tuple[str, int, tuple[str, ...]]:
    if isinstance(lock_ttl, bool) or not isinstance(lock_ttl, int) or lock_ttl < 1:
        raise ValueError(f"lock_ttl must be a whole number of seconds >= 1, got {lock_ttl!r}")
    return kv_core.check_key(key), kv_core.resolve_ttl(ttl), kv_core.check_tags(tags)


# -- on the bridge loop --------------------------------------------------------------------------


async def _begin(stores: KvStores, key: str, tags: tuple[str, ...], lock_ttl: int) -> bytes | _Lead:
    """The payload when cached (or computed meanwhile by another caller), else a lead to compute."""
    payload = await kv_core.lookup(stores, key)
    kv_core.COUNTERS.count(payload is not None)
    if payload is not None:
        return payload
    while True:
        flight = _flights.get(key)
        if flight is None:
            return await _lead(stores, key, tags, lock_ttl)
        try:
            return await asyncio.shield(flight)
        except _Abandoned:
            continue  # its leader gave up: lead a new flight, or join one another waiter started


async def _lead(stores: KvStores, key: str, tags: tuple[str, ...], lock_ttl: int) -> bytes | _Lead:
    flight: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    flight.add_done_callback(_retrieve)
    _flights[key] = flight
    try:
        tokens = await kv_core.tag_tokens(stores, tags)
        ready = partial(kv_core.lookup, stores, key)
        outcome = await take_or_wait(stores.meta, LOCK_PREFIX + key, lock_ttl, ready)
    except BaseException as exc:
        _settle(key, flight, exc)
        raise
    if isinstance(outcome, StoreLock):
        return _Lead(stores, key, flight, tokens, outcome)
    _settle(key, flight, outcome)  # another process computed it
    return outcome


async def _complete(lead: _Lead, payload: bytes, ttl: int) -> None:
    try:
        await kv_core.write(lead.stores, lead.key, payload, ttl, lead.tokens)
        await lead.lock.release()  # after the write: a poller must find the value, not a free lock
    finally:
        _settle(lead.key, lead.flight, payload)


async def _abort(lead: _Lead, exc: BaseException) -> None:
    try:
        await lead.lock.release()
    finally:
        _settle(lead.key, lead.flight, exc)


def _settle(key: str, flight: asyncio.Future[bytes], outcome: bytes | BaseException) -> None:
    if _flights.get(key) is flight:
        del _flights[key]
    if flight.done():
        return
    if isinstance(outcome, bytes):
        flight.set_result(outcome)
    elif isinstance(outcome, Exception):
        flight.set_exception(outcome)
    else:  # CancelledError, KeyboardInterrupt...: not the waiters' to raise
        flight.set_exception(_Abandoned())


def _retrieve(flight: asyncio.Future[bytes]) -> None:
    # A flight nobody joined must not log "Future exception was never retrieved".
    if not flight.cancelled():
        flight.exception()
