"""The key/value API of ``tina4_python.cache`` (chapter section 7): ``cache_get``, ``cache_set``,
``cache_delete``, ``cache_clear``, ``cache_stats``, ``sweep`` and ``clear_cache``, plus
``invalidate_tag``; each with an async twin named with an ``a`` prefix.

The sync functions run the store's sync driver in the caller's thread (``client/kv_sync.py``):
plain code and Tina4's async handlers alike, without a hop to another thread. In ``async def``
code the twins (``acache_get`` ...) use the async drivers, so the caller's loop never blocks on
the store. Both share the one store of ``TINA4_CACHE_BACKEND`` with the sidecar and every other
app instance that points at it. As in Tina4, a store that fails does not fail the call: a read
misses, a write answers False.

Where this differs from ``tina4_python.cache`` (the README's drop-in table has the list):
values round-trip their types (``Decimal``, ``datetime``, ``UUID`` ... come back as themselves,
not as ``str``), every ``cache_get`` returns a copy, ``cache_set`` answers True/False, and
``clear_cache()`` flushes the whole cache of this application: values, query results, and the
HTTP responses of every sidecar in front of it.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from time import monotonic
from typing import Any

from tina4_sidecar.client import kv_copies, kv_core, kv_sync
from tina4_sidecar.client.kv_core import COUNTERS, KvStores, acall
from tina4_sidecar.client.values import CorruptValue, decode, encode

_M = ord("M")
_opened = kv_sync._stores  # the list itself: filled on first use, emptied by runtime.reset()


def cache_get(key: Any) -> Any | None:
    """The cached value of ``key``, or None when it is missing or expired (or cached as None)."""
    if type(key) is not str:
        key = str(key)
    kv = _opened[0] if _opened else kv_sync.stores()
    shard = kv.shard
    if shard is not None:  # the memory store: read in place, copy a plain value (kv_copies)
        stored = shard.get(key, monotonic())
        if stored is None:
            COUNTERS.miss()
            return None
        if stored[0] == _M:
            COUNTERS.hit()
            try:
                return kv_copies.value_of(key, stored)
            except CorruptValue:
                return None
    payload = kv_sync.counted_get(kv, key)
    if payload is None:
        return None
    try:
        return decode(payload)
    except CorruptValue:  # not written by us (another app or version on a shared store)
        return None


async def acache_get(key: Any) -> Any | None:
    """``cache_get`` for ``async def`` code."""
    return _value(await acall(partial(_get, key=kv_core.check_key(key))))


def cache_set(key: Any, value: Any, ttl: float | None = None, tags: Iterable[str] | None = None) -> bool:
    """Cache ``value`` for ``ttl`` seconds (None: ``TINA4_CACHE_TTL``; 0 or less: no expiry; a float
    is rounded up). ``tags`` name groups that ``invalidate_tag`` drops at once. True when the store
    took it; TypeError for a value of a type the codec does not carry (``client/codec.py``)."""
    kv = kv_sync.stores()
    found_tags = kv_core.check_tags(tags)
    payload = encode(value)
    tokens = kv_sync.tag_tokens(kv, found_tags)
    return kv_sync.write(kv, kv_core.check_key(key), payload, kv_core.resolve_ttl(ttl), tokens)


async def acache_set(
    key: Any, value: Any, ttl: float | None = None, tags: Iterable[str] | None = None
) -> bool:
    """``cache_set`` for ``async def`` code."""
    return await acall(_setter(key, value, ttl, tags))


def cache_delete(key: Any) -> bool:
    """Remove ``key``; True when it existed.

    A key in the form of Tina4's own response-cache keys (``GET:http://host/path?query``) also
    purges that URL at every sidecar in front of the app, as deleting it removed the cached
    response in Tina4 (``client/purge.py``); True then means the purge was delivered.
    """
    found = kv_core.check_key(key)
    existed = kv_sync.stores().values.delete(found)
    from tina4_sidecar.client.purge import purge_response_key

    purged = purge_response_key(found)
    return existed or bool(purged)


async def acache_delete(key: Any) -> bool:
    """``cache_delete`` for ``async def`` code."""
    found = kv_core.check_key(key)
    existed = await acall(partial(_delete, key=found))
    from tina4_sidecar.client.purge import apurge_response_key

    return existed or bool(await apurge_response_key(found))


def cache_stats() -> dict[str, Any]:
    """Exactly ``hits``, ``misses``, ``size`` and ``backend``.

    ``hits``/``misses`` are this process's lookups since it started (or a clear); ``size`` is the
    number of values in the store; ``backend`` the store serving now (``file`` while a network
    store is down).
    """
    values = kv_sync.stores().values
    counters = kv_core.COUNTERS
    return {
        "hits": counters.hits,
        "misses": counters.misses,
        "size": values.size(),
        "backend": values.backend_name,
    }


async def acache_stats() -> dict[str, Any]:
    """``cache_stats`` for ``async def`` code."""
    return await acall(_stats)


def cache_clear() -> bool:
    """Tina4's ``cache_clear()``: remove every key/value entry of this application and reset the
    stats (never another application's keys, never query results or responses)."""
    values = kv_sync.stores().values
    done = values.clear()
    values.reset_stats()
    kv_core.COUNTERS.reset()
    return done


async def acache_clear() -> bool:
    """``cache_clear`` for ``async def`` code."""
    return bool(await acall(_clear))


def sweep() -> int:
    """Remove expired key/value entries now (memory, file and SQL stores keep them until looked at;
    Redis, Valkey, memcached and MongoDB expire them themselves and answer 0). How many went."""
    return kv_sync.stores().values.sweep()


def clear_cache() -> bool:
    """Flush everything, as the chapter says: the key/value entries (``cache_clear``), the persistent
    query cache of this namespace, and the cached HTTP responses of every sidecar in front of the
    app (``purge_all``). True when all of it was done; a purge that could not be delivered logs a
    warning that says where (``client/purge.py``)."""
    from tina4_sidecar.client.purge import purge_all
    from tina4_sidecar.client.query.layer import clear_every_query_layer

    done = cache_clear()
    done = clear_every_query_layer() and done
    return purge_all() and done


async def aclear_cache() -> bool:
    """``clear_cache`` for ``async def`` code (the store calls run in a worker thread)."""
    import asyncio

    return await asyncio.to_thread(clear_cache)


def invalidate_tag(tag: str) -> bool:
    """Every value cached with ``tag`` becomes a miss, in every process sharing the store.

    O(1) whatever the number of values. False when the store could not be written.
    """
    return kv_sync.invalidate(kv_sync.stores(), _tag(tag))


async def ainvalidate_tag(tag: str) -> bool:
    """``invalidate_tag`` for ``async def`` code."""
    return await acall(partial(kv_core.invalidate, tag=_tag(tag)))


# -- the async operations (on the bridge loop) -----------------------------------------------------


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


async def _clear(stores: KvStores) -> bool:
    done = await stores.values.clear()
    stores.values.reset_stats()
    kv_core.COUNTERS.reset()
    return done


def _setter(key: Any, value: Any, ttl: float | None, tags: Iterable[str] | None) -> kv_core.KvOp[bool]:
    """The set operation, with every argument checked and the value encoded before any I/O."""
    return partial(
        _set,
        key=kv_core.check_key(key),
        payload=encode(value),
        ttl=kv_core.resolve_ttl(ttl),
        tags=kv_core.check_tags(tags),
    )


def _value(payload: bytes | None) -> Any | None:
    if payload is None:
        return None
    try:
        return decode(payload)
    except CorruptValue:
        return None


def _tag(tag: str) -> str:
    return kv_core.check_tags([tag])[0]
