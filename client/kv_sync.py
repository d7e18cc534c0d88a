"""The key/value cache for sync callers: the operations of ``client/kv_core.py`` over the sync
stores, in the caller's own thread (no event loop, no thread switch; see ``store/sync/``).

Same layers, same stored bytes (``client/values.py``), same tag tokens and the same per-process
counters as the async twins: a value written by ``cache_set`` is read by ``acache_get``, by
another process, and the other way round.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tina4_sidecar.client import runtime
from tina4_sidecar.client.kv_core import COUNTERS, KV_LAYER, META_LAYER, tag_scope
from tina4_sidecar.client.values import CorruptValue, unwrap, wrap
from tina4_sidecar.store.backends.memory import Shard
from tina4_sidecar.store.invalidation import MARKER_TTL, MAX_ENTRY_TTL, new_token, still_valid, tokens_from
from tina4_sidecar.store.sync.contract import SyncStore
from tina4_sidecar.store.sync.local import SyncMemoryStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SyncKv:
    values: SyncStore
    meta: SyncStore
    shard: Shard | None
    """The memory store's entries, which ``cache_get`` reads directly (no other store has one)."""


_stores: list[SyncKv] = []


def stores() -> SyncKv:
    """The two layers, opened on first use (again after ``runtime.reset()`` or a fork)."""
    if _stores:
        return _stores[0]
    values = runtime.sync_store(KV_LAYER)
    shard = values.shard if isinstance(values, SyncMemoryStore) else None
    found = SyncKv(values, runtime.sync_store(META_LAYER), shard)
    _stores[:] = [found]
    return found


def lookup(kv: SyncKv, key: str) -> bytes | None:
    """The payload of ``key``'s live value; None when absent, expired, unreadable or invalidated."""
    stored = kv.values.get(key)
    if stored is None:
        return None
    if stored[:1] == b"M":  # untagged: one store read, nothing else to check
        return stored
    try:
        payload, tags = unwrap(stored)
    except CorruptValue as exc:
        log.debug("ignoring the unreadable value of %r: %s", key, exc)
        return None
    if tags:
        scopes = {tag_scope(tag): token for tag, token in tags.items()}
        current = tokens_from(kv.meta.get_many(list(scopes)), list(scopes))
        if not still_valid(scopes, current):
            kv.values.delete(key)
            return None
    return payload


def tag_tokens(kv: SyncKv, tags: tuple[str, ...]) -> dict[str, str] | None:
    """The current token of each tag, creating missing ones; None when the store could not say."""
    if not tags:
        return {}
    names = [tag_scope(tag) for tag in tags]
    current = tokens_from(kv.meta.get_many(names), names)
    tokens: dict[str, str] = {}
    for tag, name in zip(tags, names, strict=True):
        token = current[name] or _create_token(kv.meta, name)
        if token is None:
            return None
        tokens[tag] = token
    return tokens


def _create_token(meta: SyncStore, name: str) -> str | None:
    token = new_token()
    if meta.add(name, token, MARKER_TTL):
        return token.decode("ascii")
    existing = meta.get(name)
    if existing is not None:
        return existing.decode("ascii", "replace")
    return token.decode("ascii") if meta.set(name, token, MARKER_TTL) else None


def write(kv: SyncKv, key: str, payload: bytes, ttl: int, tokens: dict[str, str] | None) -> bool:
    if tokens is None:
        return False
    if tokens:  # it records tokens: it may not outlive them (store/invalidation.py, MARKER_TTL)
        ttl = min(ttl or MAX_ENTRY_TTL, MAX_ENTRY_TTL)
    return kv.values.set(key, wrap(payload, tokens), ttl)


def invalidate(kv: SyncKv, tag: str) -> bool:
    return kv.meta.set(tag_scope(tag), new_token(), MARKER_TTL)


def counted_get(kv: SyncKv, key: str) -> bytes | None:
    payload = lookup(kv, key)
    COUNTERS.count(payload is not None)
    return payload


runtime.on_reset(_stores.clear)
