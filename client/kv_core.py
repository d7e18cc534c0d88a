"""The key/value cache on the bridge loop: lookups, writes, tag tokens and the user-visible counters.

The operations are coroutines over the two store layers (``KvStores``); ``call``/``acall`` run
one for a sync or async caller, on the bridge loop (``client.runtime``) or, when both layers are
in-process memory stores, right in the caller's thread (no I/O, no thread switch). The public
functions are in ``client.kv`` and ``client.get_or_set``.

Where things live, in the store chosen by ``TINA4_CACHE_*``:

* values in the ``kv`` layer under the user's key, exactly: ``clear_cache()`` clears that layer
  (never responses, query results or another namespace) and its ``size()`` counts only values;
* tag tokens (``~tok:kvtag:<tag>``) and locks (``~lock:kv:<key>``) in the ``meta`` layer, so
  that they neither count in the size, nor compete with values in the memory store's LRU, nor
  can be taken by a user key.

A tagged value records its tags' tokens (``store.invalidation``); a tag is invalidated by a new
token, and a value whose recorded token differs is a miss. A tag gets its token when first
used, before any value records it: a value never records "no token", so losing the token
(evicted, cleared) can only cause misses.

Hits and misses are counted here, per process, for what the caller saw: reads of tokens and
locks, and the polling of a waiting ``cache_get_or_set``, never count.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Final

from tina4_sidecar.client import runtime
from tina4_sidecar.client.values import CorruptValue, unwrap, wrap
from tina4_sidecar.store.contract import Store
from tina4_sidecar.store.invalidation import (
    MARKER_TTL,
    MAX_ENTRY_TTL,
    bump,
    new_token,
    read_tokens,
    scope,
    still_valid,
)

log = logging.getLogger(__name__)

KV_LAYER: Final = "kv"
META_LAYER: Final = "meta"
TAG_KIND: Final = "kvtag"


class Counters:
    """What the callers of this process saw since the start, ``clear_cache()`` or ``reset()``.

    Lock-free: ``next()`` on an ``itertools.count`` is one C call, atomic under the GIL, where a
    lock around ``+= 1`` cost a third of a memory-store ``cache_get``.
    """

    def __init__(self) -> None:
        self._hits = itertools.count()
        self._misses = itertools.count()

    def count(self, hit: bool) -> None:
        next(self._hits if hit else self._misses)

    def hit(self) -> None:
        next(self._hits)

    def miss(self) -> None:
        next(self._misses)

    @property
    def hits(self) -> int:
        return _counted(self._hits)

    @property
    def misses(self) -> int:
        return _counted(self._misses)

    def reset(self) -> None:
        self._hits, self._misses = itertools.count(), itertools.count()

    def restart(self) -> None:
        """At ``reset()`` and in a forked child."""
        self.reset()


def _counted(counter: itertools.count[int]) -> int:
    return int(repr(counter)[6:-1])  # "count(41)": the next value, i.e. how many were taken


COUNTERS = Counters()
runtime.on_reset(COUNTERS.restart)


# -- argument checks (in the caller's thread, before any I/O) ----------------------------------


def check_key(key: object) -> str:
    """The key as the store keeps it: a str as it is, anything else as ``str(key)`` (Tina4 takes
    any key; ``42`` and ``"42"`` name one entry here, as in Tina4's file and network stores)."""
    return key if type(key) is str else str(key)


def resolve_ttl(ttl: object) -> int:
    """Tina4's leniency: None -> ``TINA4_CACHE_TTL``; a float is rounded up to whole seconds (the
    stores count whole seconds; never shorter than asked); 0 or less -> no expiry, as Tina4 does.
    Anything that is not a number raises TypeError."""
    if ttl is None:
        return runtime.settings().cache_ttl
    if type(ttl) is int:
        return ttl if ttl > 0 else 0
    if isinstance(ttl, int | float) and not isinstance(ttl, bool):
        return math.ceil(ttl) if ttl > 0 else 0
    raise TypeError(f"ttl must be a number of seconds, not {type(ttl).__name__}")


def check_tags(tags: Iterable[str] | None) -> tuple[str, ...]:
    """The tags, de-duplicated in order; a bare str is refused (it would be split into letters)."""
    if tags is None:
        return ()
    if isinstance(tags, str | bytes):
        raise TypeError("tags must be a list of str, not a single str: write tags=[tag]")
    found: dict[str, None] = {}
    for tag in tags:
        if not isinstance(tag, str) or not tag:
            raise TypeError(f"every tag must be a non-empty str, got {tag!r}")
        found[tag] = None
    return tuple(found)


# -- running an operation: inline on in-process stores, else on the bridge loop ------------------


@dataclass(frozen=True)
class KvStores:
    """The two layers the key/value API uses."""

    values: Store
    meta: Store


type KvOp[T] = Callable[[KvStores], Coroutine[Any, Any, T]]


def call[T](op: KvOp[T]) -> T:
    """Run ``op`` for a sync caller: in its own thread on the memory store, else on the bridge."""
    stores = inline_stores()
    if stores is not None:
        return runtime.run_inline(op(stores))
    return runtime.run_sync(on_bridge(op))


async def acall[T](op: KvOp[T]) -> T:
    """Run ``op`` for an async caller: directly on the memory store, else on the bridge."""
    stores = inline_stores()
    if stores is not None:
        return runtime.run_inline(op(stores))
    return await runtime.run_async(on_bridge(op))


async def on_bridge[T](op: KvOp[T]) -> T:
    """``op`` with the stores opened (once per process) on the bridge loop."""
    # Both layers are opened at once, so that inline_stores() finds both from the first call on.
    values = await runtime.store_for(KV_LAYER)
    meta = await runtime.store_for(META_LAYER)
    return await op(KvStores(values, meta))


def inline_stores() -> KvStores | None:
    found = runtime.opened_in_process(KV_LAYER, META_LAYER)
    return None if found is None else KvStores(*found)


# -- the operations --------------------------------------------------------------------------------


def tag_scope(tag: str) -> str:
    return scope(TAG_KIND, tag)


async def lookup(stores: KvStores, key: str) -> bytes | None:
    """The payload of ``key``'s live value; None when absent, expired, unreadable or invalidated.

    Untagged values cost one store read, tagged values one more (their tokens, in one round trip).
    """
    stored = await stores.values.get(key)
    if stored is None:
        return None
    try:
        payload, tags = unwrap(stored)
    except CorruptValue as exc:
        log.debug("ignoring the unreadable value of %r: %s", key, exc)
        return None
    if tags and not await _tags_valid(stores.meta, tags):
        # Awaited, not left to a background task: a later cache_set of this key from this
        # process must never race with (and lose to) this delete.
        await stores.values.delete(key)
        return None
    return payload


async def _tags_valid(meta: Store, recorded: dict[str, str | None]) -> bool:
    scopes = {tag_scope(tag): token for tag, token in recorded.items()}
    current = await read_tokens(meta, list(scopes))
    return still_valid(scopes, current)


async def tag_tokens(stores: KvStores, tags: tuple[str, ...]) -> dict[str, str] | None:
    """The current token of each tag, creating missing ones; None when the store could not say.

    Read before a value is computed: an invalidation while it is computed then makes it a miss.
    """
    if not tags:
        return {}
    current = await read_tokens(stores.meta, [tag_scope(tag) for tag in tags])
    tokens: dict[str, str] = {}
    for tag in tags:
        token = current[tag_scope(tag)] or await _create_token(stores.meta, tag_scope(tag))
        if token is None:
            return None
        tokens[tag] = token
    return tokens


async def _create_token(meta: Store, name: str) -> str | None:
    """A first token for ``name``; another process's, when it created one at the same moment."""
    token = new_token()
    if await meta.add(name, token, MARKER_TTL):
        return token.decode("ascii")
    existing = await meta.get(name)
    if existing is not None:
        return existing.decode("ascii", "replace")
    # add() failed and nobody holds a token: the store cannot add (or is down); a plain set
    # may overwrite a racing process's first token, which only costs that process's value a miss.
    return token.decode("ascii") if await meta.set(name, token, MARKER_TTL) else None


async def write(stores: KvStores, key: str, payload: bytes, ttl: int, tokens: dict[str, str] | None) -> bool:
    """Store ``payload`` with its tags' tokens; ``tokens=None`` (unknown) stores nothing."""
    if tokens is None:
        return False
    if tokens:  # it records tokens: it may not outlive them (store/invalidation.py, MARKER_TTL)
        ttl = min(ttl or MAX_ENTRY_TTL, MAX_ENTRY_TTL)
    return await stores.values.set(key, wrap(payload, tokens), ttl)


async def invalidate(stores: KvStores, tag: str) -> bool:
    """A new token for ``tag``: every value tagged with it is a miss from now on, everywhere."""
    return await bump(stores.meta, [tag_scope(tag)])
