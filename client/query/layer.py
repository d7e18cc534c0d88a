"""The persistent query cache in the shared store: entries in the ``query`` layer, tokens in ``meta``.

All calls run the store's sync driver in the caller's thread (``store/sync/``). A store failure
never fails a query (the store contract): a lookup then misses and a result is not stored.

Tokens expire (``token_ttl``: longer than any entry that can record them, ``2 x TINA4_DB_CACHE_TTL
+ 60 s``), so the markers of tables and databases that nobody writes any more do not pile up; a
token that expired reads as None, which matches no recorded token, so it only turns entries
that outlived it into misses. The entries this process stored are indexed by the scopes they
recorded, so that a write or a ``cache_clear()`` deletes the ones it invalidates: ``size``
(the store's count) then no longer counts them. Entries other processes stored expire by their
TTL (they are never served: their tokens changed).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence

from tina4_sidecar.client import runtime
from tina4_sidecar.client.query.entry import entry_blob, valid_entry
from tina4_sidecar.client.query.near import NEAR, NearEntry
from tina4_sidecar.client.query.snapshot import Snapshot, decode_snapshot, encode_snapshot
from tina4_sidecar.client.query.trust import TrustedTokens, trusted_tokens
from tina4_sidecar.config import Backend, QueryCacheSettings, load_settings
from tina4_sidecar.store.invalidation import MARKER_TTL, new_token, scope, tokens_from
from tina4_sidecar.store.sync.contract import SyncStore
from tina4_sidecar.store.sync.fallback import SyncFallbackStore
from tina4_sidecar.store.sync.redis import SyncRedisStore
from tina4_sidecar.store.sync.together import read_together

log = logging.getLogger("tina4_sidecar.client.query")

QALL = scope("qall")
"""Recorded by every persistent entry of this namespace; ``clear_cache()`` bumps it, so copies
that other processes hold (``near.py``) stop being served when the entries are cleared."""

INDEX_LIMIT = 10_000
"""Entries per process whose scopes are remembered for deletion on a write."""


class PersistentLayer:
    """The ``query`` and ``meta`` layers of the store ``TINA4_DB_CACHE_BACKEND`` names."""

    def __init__(self, settings: QueryCacheSettings) -> None:
        self.backend: Backend = settings.db_cache_backend
        self.url = settings.db_cache_url
        self.ttl = settings.db_cache_ttl
        self.token_ttl = 2 * self.ttl + 60 if self.ttl else MARKER_TTL
        self.push = settings.db_cache_push

    def stores(self) -> tuple[SyncStore, SyncStore]:
        return (
            runtime.sync_store("query", self.backend, self.url),
            runtime.sync_store("meta", self.backend, self.url),
        )

    def where(self) -> str:
        return f"{self.backend.value}:{self.url or ''}"

    def trust(self, meta: SyncStore) -> TrustedTokens | None:
        """The push follower of the token layer (``trust.py``), with TINA4_DB_CACHE_PUSH on Redis."""
        if not self.push:
            return None
        primary = meta.primary if isinstance(meta, SyncFallbackStore) else meta
        if not isinstance(primary, SyncRedisStore) or primary.channel is None:
            return None
        if isinstance(meta, SyncFallbackStore) and meta.degraded:
            return None
        return trusted_tokens(self.where(), primary._redis(), primary.channel, primary.timeout)

    def lookup(self, key: str | None, scopes: Sequence[str]) -> tuple[Snapshot | None, dict[str, str | None]]:
        """The live cached result of ``key`` and the current tokens of ``scopes`` (plus ``QALL``).

        A copy this process holds (``near.py``) costs one read of the tokens; otherwise the entry
        and the tokens are read in one round trip where the store allows (``store/sync/together``).
        A scope without a token gets one now, before the caller runs its query: an entry never
        records "no token". A token this call could not write stays None, and the caller then
        does not store its result.
        """
        entries, meta = self.stores()
        names = [*scopes, QALL]
        where = self.where()
        entry: bytes | None = None
        trust = self.trust(meta)
        near = NEAR.get(where, key) if key is not None else None
        if near is not None and trust is not None:
            known = trust.known(names)
            if known is not None and near.recorded == known:  # no round trip at all
                return near.snap, known
        generation = trust.begin() if trust is not None else 0
        if near is not None and key is not None:
            tokens = tokens_from(meta.get_many(names), names)
            if trust is not None:
                trust.learn(generation, tokens)
            if near.recorded == tokens:
                return near.snap, tokens
            NEAR.drop(where, key)
            entry = entries.get(key)  # another process may have stored a newer one
        elif key is not None:
            entry, values = read_together(entries, key, meta, names)
            tokens = tokens_from(values, names)
        else:
            tokens = tokens_from(meta.get_many(names), names)
        if trust is not None:
            trust.learn(generation, tokens)
        for name, token in tokens.items():
            if token is None:
                fresh = new_token()
                tokens[name] = fresh.decode("ascii") if meta.set(name, fresh, self.token_ttl) else None
        found = valid_entry(entry, tokens) if entry is not None else None
        if key is None or found is None or (found.expires_at and found.expires_at <= time.time()):
            return None, tokens
        snap = decode_snapshot(found.payload)
        NEAR.put(where, key, NearEntry(snap, dict(found.recorded), found.expires_at))
        return snap, tokens

    def save(self, key: str, snap: Snapshot, tokens: dict[str, str | None], scopes: Sequence[str]) -> bool:
        """Store ``snap`` with the tokens read before its query ran (``lookup``)."""
        entries, _ = self.stores()
        expires_at = time.time() + self.ttl if self.ttl else 0.0
        stored = entries.set(key, entry_blob(tokens, encode_snapshot(snap), expires_at), self.ttl)
        if stored:
            INDEX.add(key, scopes)
            NEAR.put(self.where(), key, NearEntry(snap, dict(tokens), expires_at))
        return stored

    def bump(self, scopes: Sequence[str]) -> bool:
        """New tokens for ``scopes``: every entry that recorded one of them is a miss from now on,
        and the ones this process stored are deleted."""
        entries, meta = self.stores()
        trust = self.trust(meta)
        if trust is not None:  # this process stops trusting them before and after the write
            trust.forget(scopes)
        done = all([meta.set(name, new_token(), self.token_ttl) for name in scopes])
        if trust is not None:
            trust.forget(scopes)
        if not done:
            log.warning(
                "query cache: could not invalidate %s; cached reads may stay stale for up to %ss",
                ", ".join(scopes),
                self.ttl,
            )
        for key in INDEX.take(scopes):
            entries.delete(key)
        return done

    def size(self) -> int:
        entries, _ = self.stores()
        return entries.size()

    def backend_name(self) -> str:
        entries, _ = self.stores()
        return entries.backend_name


class ScopeIndex:
    """Entry keys this process stored, by the scopes they recorded (bounded, oldest forgotten)."""

    def __init__(self) -> None:
        self._entries: OrderedDict[str, frozenset[str]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, key: str, scopes: Sequence[str]) -> None:
        with self._lock:
            self._entries[key] = frozenset(scopes)
            self._entries.move_to_end(key)
            while len(self._entries) > INDEX_LIMIT:
                self._entries.popitem(last=False)

    def take(self, scopes: Sequence[str]) -> list[str]:
        wanted = set(scopes)
        with self._lock:
            found = [key for key, recorded in self._entries.items() if recorded & wanted]
            for key in found:
                del self._entries[key]
        return found

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


INDEX = ScopeIndex()
runtime.on_reset(INDEX.clear)


def clear_every_query_layer() -> bool:
    """``clear_cache()``: the query results of this namespace, every database's, in the store of
    ``TINA4_DB_CACHE_BACKEND`` and in that of ``TINA4_CACHE_BACKEND`` (the same store, usually)."""
    layer = PersistentLayer(load_settings(QueryCacheSettings))
    entries, meta = layer.stores()
    INDEX.clear()
    NEAR.clear()
    trust = layer.trust(meta)
    done = meta.set(QALL, new_token(), layer.token_ttl)
    if trust is not None:
        trust.forget()
    done = entries.clear() and done
    main = runtime.sync_store("query")
    return (main is entries or main.clear()) and done
