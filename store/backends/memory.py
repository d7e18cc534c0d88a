"""The in-process store (the default backend): an LRU per namespace and layer, bounded by entries and bytes.

Every ``MemoryStore`` of one ``(namespace, layer)`` in a process shares one :class:`Shard`
(a process-wide registry keyed by the store's prefix), so that the proxy, the client
library and a second store built from the same settings all see the same entries, while
``clear()`` empties only its own shard. Each shard keeps at most ``cache_max_entries``
entries and ``cache_max_bytes`` bytes of values, evicting the least recently used.

Expiry uses the monotonic clock and is checked on every read; expired entries are also
dropped lazily from the cold end of the LRU on writes and by ``size()``. A ``threading.Lock``
guards each shard because the client library runs its own event loop in another thread.

The response layer tells in-process watchers (the sidecar's near cache, ``watch``) what changed,
as Redis announces it to other processes (``store/push.py``): a token written or deleted (a
purge), an entry deleted, the layer cleared. Entry writes are not told: the one writer of entries
is the sidecar itself, which drops its own copies.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from tina4_sidecar.store.contract import Store
from tina4_sidecar.store.push import EVERYTHING, PRIVATE_PREFIX, PUSH_LAYER, TOKEN_PREFIX, Change

if TYPE_CHECKING:
    from tina4_sidecar.config import CacheSettings

DEFAULT_MAX_ENTRIES = 1000
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
_LAZY_EXPIRY_CHECKS = 2
"""Entries at the cold end of the LRU examined per write; keeps the cleanup O(1)."""


class _Entry(NamedTuple):
    value: bytes
    expires_at: float  # time.monotonic() deadline; 0.0 = no expiry


class Shard:
    """The entries of one prefix: an ``OrderedDict`` whose first item is the least recently used."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.watchers: list[tuple[Callable[[Change], None], asyncio.AbstractEventLoop]] = []

    def get(self, key: str, now: float) -> bytes | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.expires_at and entry.expires_at <= now:
                self._remove(key)
                return None
            self._entries.move_to_end(key)
            return entry.value

    def set(self, key: str, value: bytes, expires_at: float, now: float) -> None:
        with self._lock:
            self._put(key, value, expires_at, now)

    def _put(self, key: str, value: bytes, expires_at: float, now: float) -> None:
        self._remove(key)
        if len(value) > self.max_bytes:
            return  # could never fit: storing it would only evict everything else
        self._entries[key] = _Entry(value, expires_at)
        self.nbytes += len(value)
        self._drop_cold_expired(now)
        self._evict()

    def add(self, key: str, value: bytes, expires_at: float, now: float) -> bool:
        """Set ``key`` unless it holds a live entry; True when this call set it."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and not (entry.expires_at and entry.expires_at <= now):
                return False
            self._put(key, value, expires_at, now)
            return True

    def delete(self, key: str, now: float) -> bool:
        """Remove ``key``; True only when it held a live entry."""
        with self._lock:
            entry = self._remove(key)
            return entry is not None and not (entry.expires_at and entry.expires_at <= now)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.nbytes = 0

    def __len__(self) -> int:
        """Entries held, expired ones included."""
        return len(self._entries)

    def live_size(self, now: float) -> int:
        """Drops every expired entry (O(n), n <= max_entries) and counts the rest."""
        with self._lock:
            expired = [k for k, e in self._entries.items() if e.expires_at and e.expires_at <= now]
            for key in expired:
                self._remove(key)
            return len(self._entries)

    def set_limits(self, max_entries: int, max_bytes: int) -> None:
        with self._lock:
            self.max_entries = max_entries
            self.max_bytes = max_bytes
            self._evict()

    # -- called with the lock held ----------------------------------------------------------

    def _remove(self, key: str) -> _Entry | None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.nbytes -= len(entry.value)
        return entry

    def _evict(self) -> None:
        while len(self._entries) > self.max_entries or self.nbytes > self.max_bytes:
            _, entry = self._entries.popitem(last=False)
            self.nbytes -= len(entry.value)

    def _drop_cold_expired(self, now: float) -> None:
        for _ in range(_LAZY_EXPIRY_CHECKS):
            if not self._entries:
                return
            key, entry = next(iter(self._entries.items()))
            if not (entry.expires_at and entry.expires_at <= now):
                return
            self._remove(key)


class Registry:
    """The process-wide map of prefix -> :class:`Shard`."""

    def __init__(self) -> None:
        self._shards: dict[str, Shard] = {}
        self._lock = threading.Lock()

    def shard(
        self, prefix: str, max_entries: int = DEFAULT_MAX_ENTRIES, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> Shard:
        """The shard of ``prefix``, created on first use; a later store's limits replace earlier ones."""
        with self._lock:
            found = self._shards.get(prefix)
            if found is None:
                found = self._shards[prefix] = Shard(max_entries, max_bytes)
                return found
        if (found.max_entries, found.max_bytes) != (max_entries, max_bytes):
            found.set_limits(max_entries, max_bytes)
        return found

    def drop(self, prefix: str) -> None:
        """Forget the shard of ``prefix`` entirely (tests; a shut-down application)."""
        with self._lock:
            self._shards.pop(prefix, None)


REGISTRY = Registry()


class MemoryStore(Store):
    """One namespace and layer of the process-wide in-memory cache."""

    backend_name = "memory"
    in_process = True

    def __init__(
        self,
        namespace: str,
        layer: str,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout: float = 1.0,
    ) -> None:
        super().__init__(namespace, layer, timeout)
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be >= 1")
        self.shard = REGISTRY.shard(self.prefix, max_entries, max_bytes)

    @classmethod
    def from_settings(cls, settings: CacheSettings, layer: str, url: str | None = None) -> MemoryStore:
        """``url`` is ignored: the memory store has no server."""
        return cls(
            settings.cache_namespace,
            layer,
            max_entries=settings.cache_max_entries,
            max_bytes=settings.cache_max_bytes,
            timeout=settings.cache_timeout,
        )

    async def _get(self, key: str) -> bytes | None:
        return self.shard.get(key, time.monotonic())

    async def _get_many(self, keys: list[str]) -> list[bytes | None]:
        now = time.monotonic()
        return [self.shard.get(key, now) for key in keys]

    def watch(self, callback: Callable[[Change], None]) -> Callable[[], None]:
        """Call ``callback`` (on the running loop's thread) with each change of this response layer
        that in-process copies must follow; returns the function that stops it."""
        watcher = (callback, asyncio.get_running_loop())
        self.shard.watchers.append(watcher)
        return lambda: self.shard.watchers.remove(watcher) if watcher in self.shard.watchers else None

    def _tell(self, change: Change) -> None:
        if self.layer != PUSH_LAYER:
            return
        for callback, loop in list(self.shard.watchers):
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                callback(change)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(callback, change)

    async def _set(self, key: str, value: bytes, ttl: int) -> None:
        now = time.monotonic()
        self.shard.set(key, value, now + ttl if ttl else 0.0, now)
        if key.startswith(TOKEN_PREFIX):
            self._tell(Change(scopes=frozenset({key})))

    async def _add(self, key: str, value: bytes, ttl: int) -> bool:
        now = time.monotonic()
        return self.shard.add(key, value, now + ttl if ttl else 0.0, now)

    async def _delete(self, key: str) -> bool:
        existed = self.shard.delete(key, time.monotonic())
        if key.startswith(TOKEN_PREFIX):
            self._tell(Change(scopes=frozenset({key})))
        elif not key.startswith(PRIVATE_PREFIX):
            self._tell(Change(keys=frozenset({key})))
        return existed

    async def _clear(self) -> None:
        self.shard.clear()
        self._tell(EVERYTHING)

    async def _size(self) -> int:
        return self.shard.live_size(time.monotonic())

    async def _ping(self) -> None:
        return None  # in-process: always up (the default would scan the shard via size())
