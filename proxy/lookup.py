"""lookup: one store round trip for a request's entry and the invalidation tokens around it.

Shared by the aiohttp pipeline and the HIT fast path, so both decide a HIT the same way.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

from tina4_sidecar.proxy.http.entry import Entry, EntryError
from tina4_sidecar.proxy.http.request_head import RequestHead
from tina4_sidecar.proxy.http.variants import decode_index, request_values, variant_key
from tina4_sidecar.proxy.sidecar import Sidecar
from tina4_sidecar.store.invalidation import read_tokens, still_valid, tokens_from
from tina4_sidecar.store.response_key import lookup_scopes
from tina4_sidecar.store.soft_purge import soft_purged

log = logging.getLogger("tina4_sidecar.proxy")


@dataclass(slots=True)
class Lookup:
    """What one lookup read: the URL's primary key, the key its variant lives under, the entry
    there (fresh or stale, never purged) and the invalidation tokens read with it."""

    primary: str
    key: str
    entry: Entry | None
    tokens: dict[str, str | None]


async def lookup(sidecar: Sidecar, primary: str, head: RequestHead) -> Lookup:
    scopes = lookup_scopes(head.raw_path, sidecar.query_filter.canonical(head.query), head.host)
    raw, *values = await sidecar.store.get_many([primary, *scopes])
    tokens = tokens_from(values, scopes)
    key = primary
    names = decode_index(raw) if raw is not None else None
    if names is not None:  # a varying URL: its variants live under their own keys
        key = variant_key(primary, request_values(names, head.headers))
        raw = await sidecar.store.get(key)
    entry = _decode(sidecar, raw, key)
    if entry is None or not entry.matches_vary(
        dict(request_values([n for n, _ in entry.vary], head.headers))
    ):
        return Lookup(primary, key, None, tokens)
    recorded = dict(entry.tokens)
    unread = [name for name in recorded if name not in tokens]
    current = {**tokens, **(await read_tokens(sidecar.store, unread))} if unread else tokens
    if not still_valid(recorded, current):
        if not soft_purged(recorded, current):
            return Lookup(primary, key, None, tokens)
        entry = expired(entry)  # soft purge: stale now, still usable for stale-if-error
    return Lookup(primary, key, entry, tokens)


def expired(entry: Entry) -> Entry:
    """The entry as if its TTL had just run out (its stale windows start now)."""
    return replace(entry, ttl=min(entry.ttl, int(time.time() - entry.stored_at) - 1))


def _decode(sidecar: Sidecar, raw: bytes | None, key: str) -> Entry | None:
    """The entry in ``raw``; None (a miss, which the fetch then overwrites) when it is not one this
    sidecar can read: during a rolling upgrade the other version's entries are simply misses."""
    if raw is None:
        return None
    try:
        return Entry.decode(raw)
    except EntryError as exc:
        if sidecar.metrics.unreadable_entry(str(exc) if exc.kind == "version" else exc.kind):
            log.warning("unreadable cache entry for %s: %s (treated as a miss; logged once)", key, exc)
        return None
