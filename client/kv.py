"""The spec's key/value API (section 7): ``cache_get``, ``cache_set``, ``cache_delete``, ``cache_stats``,
``clear_cache``, plus ``invalidate_tag``; each with an async twin named with an ``a`` prefix.

The sync functions work in plain code and inside Tina4's async handlers alike (they run on the
client's bridge loop, see ``client.runtime``); in ``async def`` code the twins avoid blocking
the caller's loop while the store answers. All share the one store of ``TINA4_CACHE_BACKEND``
with the sidecar and every other app instance that points at it. Values are JSON data or
bytes (``client.values``). As in Tina4, a store that fails does not fail the call: a read
misses, a write answers False.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

from tina4_sidecar.client import kv_core
from tina4_sidecar.client.kv_core import KvStores, acall, call
from tina4_sidecar.client.values import CorruptValue, decode, encode


def cache_get(key: str) -> Any | None:
    """The cached value of ``key``, or None when it is missing or expired (or cached as None)."""
    return _value(call(partial(_get, key=kv_core.check_key(key))))


async def acache_get(key: str) -> Any | None:
    """``cache_get`` for ``async def`` code."""
    return _value(await acall(partial(_get, key=kv_core.check_key(key))))


def cache_set(key: str, value: Any, ttl: int | None = None, tags: Iterable[str] | None = None) -> bool:
    """Cache ``value`` for ``ttl`` seconds (None: ``TINA4_CACHE_TTL``; 0: no expiry).

    ``tags`` name groups that ``invalidate_tag`` drops at once. True when the store took it.
    TypeError for a value that is neither JSON data nor bytes, ValueError for a negative TTL.
    """
    return call(_setter(key, value, ttl, tags))


async def acache_set(key: str, value: Any, ttl: int | None = None, tags: Iterable[str] | None = None) -> bool:
    """``cache_set`` for ``async def`` code."""
    return await acall(_setter(key, value, ttl, tags))


def cache_delete(key: str) -> bool:
    """Remove ``key``; True when it existed."""
    return call(partial(_delete, key=kv_core.check_key(key)))


async def acache_delete(key: str) -> bool:
    """``cache_delete`` for ``async def`` code."""
    return await acall(partial(_delete, key=kv_core.check_key(key)))


def cache_stats() -> dict[str, Any]:
    """Exactly ``hits``, ``misses``, ``size`` and ``backend``.

    ``hits``/``misses`` are this process's lookups since it started (or ``clear_cache()``);
    ``size`` is the number of values in the shared store; ``backend`` the store serving now
    (``file`` while a network store is down).
    """
    return call(_stats)


async def acache_stats() -> dict[str, Any]:
    """``cache_stats`` for ``async def`` code."""
    return await acall(_stats)


def clear_cache() -> None:
    """Remove every key/value entry of this application (never responses or query results) and
    reset the stats."""
    call(_clear)


async def aclear_cache() -> None:
    """``clear_cache`` for ``async def`` code."""
    await acall(_clear)


def invalidate_tag(tag: str) -> bool:
    """Every value cached with ``tag`` becomes a miss, in every process sharing the store.

    O(1) whatever the number of values. False when the store could not be written.
    """
    return call(partial(kv_core.invalidate, tag=_tag(tag)))


async def ainvalidate_tag(tag: str) -> bool:
    """``invalidate_tag`` for ``async def`` code."""
    return await acall(partial(kv_core.invalidate, tag=_tag(tag)))


# -- the operations ------------------------------------------------------------------------------------


async def _get(stores: KvStores, key: str) -> bytes | None:
    payload = await kv_core.lookup(stores, key)
    kv_core.COUNTERS.count(payload is not None)
    return payload


async def _set(stores: KvStores, key: str, payload: bytes, ttl: int, tags: tuple[str, ...]) -> bool:
    return await kv_core.write(stores, key, payload, ttl, await kv_core.tag_tokens(stores, tags))


async def _delete(stores: KvStores, key: str) -> bool:
    return await stores.values.delete(key)


async def _stats(stores: KvStores) -> dict[str, Any]:
    counters = kv_core.COUNTERS
    size = await stores.values.size()
    return {
        "hits": counters.hits,
        "misses": counters.misses,
        "size": size,
        "backend": stores.values.backend_name,
    }


async def _clear(stores: KvStores) -> None:
    await stores.values.clear()
    stores.values.reset_stats()
    kv_core.COUNTERS.reset()


# -- in the caller's thread ------------------------------------------------------------------------


def _setter(key: str, value: Any, ttl: int | None, tags: Iterable[str] | None) -> kv_core.KvOp[bool]:
    """The set operation, with every argument checked and the value encoded before any I/O."""
    return partial(
        _set,
        key=kv_core.check_key(key),
        payload=encode(value),
        ttl=kv_core.resolve_ttl(ttl),
        tags=kv_core.check_tags(tags),
    )


def _value(payload: bytes | None) -> Any | None:
    # Decoded here, not on the bridge loop: large values do not hold up other threads' calls.
    if payload is None:
        return None
    try:
        return decode(payload)
    except CorruptValue:  # not written by us (another app or version on a shared store)
        return None


def _tag(tag: str) -> str:
    return kv_core.check_tags([tag])[0]
