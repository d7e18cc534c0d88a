"""The in-process store (the default backend): an LRU per namespace and layer, bounded by entries and bytes.

Every ``MemoryStore`` of one ``(namespace, layer)`` in a process shares one :class:`Shard`
(a process-wide registry keyed by the store's prefix), so that the proxy, the client
library and a second store built from the same settings all see the same entries, while
``clear()`` empties only its own shard. Each shard keeps at most ``cache_max_entries``
entries and ``cache_max_bytes`` bytes of values, evicting the least recently used.

Entries are kept compactly (about 110 bytes beside a value instead of 280): keys as 128-bit
keyed digests (:func:`digest`, which says why a digest may stand for its key), each value with its
deadline in one ``bytes``, the order of use in a deque of digests (:class:`Shard`).

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
import os
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from hashlib import blake2b
from typing import TYPE_CHECKING

from tina4_sidecar.store.contract import Store
from tina4_sidecar.store.push import EVERYTHING, PRIVATE_PREFIX, PUSH_LAYER, TOKEN_PREFIX, Change

if TYPE_CHECKING:
    from tina4_sidecar.config import CacheSettings

DEFAULT_MAX_ENTRIES = 1000
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
_LAZY_EXPIRY_CHECKS = 2
"""Entries at the cold end of the LRU examined per write; keeps the cleanup O(1)."""
_SLACK = 64
"""Stale places in the order of use allowed beyond the entries held, before it is compacted."""


_SECRET = os.urandom(16)
"""The key of this process's key digests (never leaves the process: the shards are its own)."""
_DIGESTS: dict[str, int] = {}
"""Digests of recently used keys: the same token keys are read by every lookup, and a fill's key is
looked up, then stored, then its lock deleted."""
_DIGESTS_MAX = 2048
INLINE_MAX = 4096
"""Values up to this size are kept as one ``bytes`` with their deadline in front (copied out on a
read); larger ones as a ``(value, deadline)`` pair (what the pair costs is small beside them, and
reading them copies nothing)."""
_DEADLINE = struct.Struct("d")
_NO_DEADLINE = _DEADLINE.pack(0.0)

type _Record = bytes | tuple[bytes, float]
"""``deadline + value`` (values of up to ``INLINE_MAX`` bytes) or ``(value, deadline)``; the
deadline is a ``time.monotonic()`` time, 0.0 = no expiry."""


def digest(key: str) -> int:
    """The 128-bit keyed BLAKE2b digest of ``key`` (UTF-8, lone surrogates kept): what a shard's
    table is keyed by, 48 bytes instead of the key's string (~100 bytes for a response key).

    A digest stands for its key without a full-key check because two keys cannot be made to share
    one: BLAKE2b is a cryptographic hash, and it is keyed with a secret drawn when the process
    starts, so a client cannot search offline for two URLs of the same digest; by chance, among a
    million keys, two share one with a probability below 10^-26 (n^2 / 2^129).
    """
    found = _DIGESTS.get(key)
    if found is None:
        hashed = blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16, key=_SECRET).digest()
        found = int.from_bytes(hashed)
        if len(_DIGESTS) >= _DIGESTS_MAX:
            _DIGESTS.clear()
        _DIGESTS[key] = found
    return found


def _record(value: bytes, expires_at: float) -> _Record:
    if len(value) <= INLINE_MAX:
        return (_DEADLINE.pack(expires_at) if expires_at else _NO_DEADLINE) + value
    return (value, expires_at)


def _deadline(record: _Record) -> float:
    if isinstance(record, bytes):
        return _DEADLINE.unpack_from(record)[0]  # type: ignore[no-any-return]
    return record[1]


def _value(record: _Record) -> bytes:
    return record[_DEADLINE.size :] if isinstance(record, bytes) else record[0]


def _size(record: _Record) -> int:
    """The value's length (what ``max_bytes`` bounds)."""
    return len(record) - _DEADLINE.size if isinstance(record, bytes) else len(record[0])


class Shard:
    """The entries of one prefix, least recently used evicted first.

    Keyed by :func:`digest` of the key, each value kept with its deadline as one :data:`_Record`
    in a plain dict; the order of use is a deque of digests, oldest first (a dict slot and 8 bytes
    per entry where an ``OrderedDict`` takes about twice as much: see bench/entry_memory.py).
    A read or a removal does not look for the key's place in the deque: it appends the key again
    (a read) or leaves it, and counts in ``_stale`` the key's places that no longer stand for its
    use. Eviction takes keys from the left, skipping those places, so the entry evicted is exactly
    the least recently used one; once the deque holds twice the entries, it is compacted.
    ``nbytes`` counts the values' own lengths.
    """

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._entries: dict[int, _Record] = {}
        self._order: deque[int] = deque()
        self._stale: dict[int, int] = {}
        """Digest -> how many of its places in ``_order`` are stale (absent: none)."""
        self._lock = threading.Lock()
        self.watchers: list[tuple[Callable[[Change], None], asyncio.AbstractEventLoop]] = []

    def get(self, key: str, now: float) -> bytes | None:
        hashed = digest(key)
        with self._lock:
            record = self._entries.get(hashed)
            if record is None:
                return None
            expires_at = _deadline(record)
            if expires_at and expires_at <= now:
                self._remove(hashed)
                return None
            self._used_again(hashed)
            return _value(record)

    def set(self, key: str, value: bytes, expires_at: float, now: float) -> None:
        hashed = digest(key)
        with self._lock:
            self._put(hashed, value, expires_at, now)

    def _put(self, hashed: int, value: bytes, expires_at: float, now: float) -> None:
        self._remove(hashed)
        if len(value) > self.max_bytes:
            return  # could never fit: storing it would only evict everything else
        self._entries[hashed] = _record(value, expires_at)
        self._order.append(hashed)
        self.nbytes += len(value)
        self._drop_cold_expired(now)
        self._evict()

    def add(self, key: str, value: bytes, expires_at: float, now: float) -> bool:
        """Set ``key`` unless it holds a live entry; True when this call set it."""
        hashed = digest(key)
        with self._lock:
            record = self._entries.get(hashed)
            if record is not None and not _expired(record, now):
                return False
            self._put(hashed, value, expires_at, now)
            return True

    def delete(self, key: str, now: float) -> bool:
        """Remove ``key``; True only when it held a live entry."""
        hashed = digest(key)
        with self._lock:
            record = self._remove(hashed)
            return record is not None and not _expired(record, now)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._order.clear()
            self._stale.clear()
            self.nbytes = 0

    def __len__(self) -> int:
        """Entries held, expired ones included."""
        return len(self._entries)

    def live_size(self, now: float) -> int:
        """Drops every expired entry (O(n), n <= max_entries) and counts the rest."""
        with self._lock:
            expired = [k for k, record in self._entries.items() if _expired(record, now)]
            for hashed in expired:
                self._remove(hashed)
            return len(self._entries)

    def set_limits(self, max_entries: int, max_bytes: int) -> None:
        with self._lock:
            self.max_entries = max_entries
            self.max_bytes = max_bytes
            self._evict()

    def lru_order(self) -> list[int]:
        """The digests held, least recently used first (tests)."""
        with self._lock:
            self._compact()
            return list(self._order)

    def held_sizes(self) -> dict[str, int]:
        """Bytes the entries take, by part (``sys.getsizeof``; bench/entry_memory.py prints them)."""
        with self._lock:
            records = list(self._entries.items())
            table, order, stale = (sys.getsizeof(part) for part in (self._entries, self._order, self._stale))
        inline = [record for _, record in records if isinstance(record, bytes)]
        pairs = [record for _, record in records if not isinstance(record, bytes)]
        return {
            "key (128-bit digest int)": sum(sys.getsizeof(hashed) for hashed, _ in records),
            "value with its deadline (one bytes)": sum(sys.getsizeof(record) for record in inline),
            "value of it (len)": sum(_size(record) for record in inline),
            f"values over {INLINE_MAX} B with the (value, deadline) pair": sum(
                sys.getsizeof(record) + sys.getsizeof(record[0]) + 24 for record in pairs
            ),
            "table (dict)": table,
            "order of use (deque)": order,
            "stale places (dict)": stale,
        }

    # -- called with the lock held ----------------------------------------------------------

    def _used_again(self, hashed: int) -> None:
        self._order.append(hashed)
        self._stale[hashed] = self._stale.get(hashed, 0) + 1
        if len(self._order) > 2 * len(self._entries) + _SLACK:
            self._compact()

    def _remove(self, hashed: int) -> _Record | None:
        record = self._entries.pop(hashed, None)
        if record is not None:
            self.nbytes -= _size(record)
            self._stale[hashed] = self._stale.get(hashed, 0) + 1  # its place in the order
            if len(self._order) > 2 * len(self._entries) + _SLACK:
                self._compact()
        return record

    def _oldest(self) -> int | None:
        """The least recently used digest (the deque's stale places before it dropped)."""
        order, stale = self._order, self._stale
        while order:
            hashed = order[0]
            left = stale.get(hashed)
            if not left:
                return hashed
            order.popleft()
            if left == 1:
                del stale[hashed]
            else:
                stale[hashed] = left - 1
        return None

    def _evict(self) -> None:
        while len(self._entries) > self.max_entries or self.nbytes > self.max_bytes:
            hashed = self._oldest()
            if hashed is None:  # cannot happen while entries are held: every one has its place
                break
            self._order.popleft()
            self.nbytes -= _size(self._entries.pop(hashed))

    def _drop_cold_expired(self, now: float) -> None:
        for _ in range(_LAZY_EXPIRY_CHECKS):
            hashed = self._oldest()
            if hashed is None or not _expired(self._entries[hashed], now):
                return
            self._order.popleft()
            self.nbytes -= _size(self._entries.pop(hashed))

    def _compact(self) -> None:
        """Keep only the places that stand for a use: the order of what is held, oldest first."""
        if not self._stale:
            return
        stale, kept = self._stale, deque[int]()
        for hashed in self._order:
            left = stale.get(hashed)
            if left:
                stale[hashed] = left - 1
            else:
                kept.append(hashed)
        self._order, self._stale = kept, {}


def _expired(record: _Record, now: float) -> bool:
    expires_at = _deadline(record)
    return bool(expires_at) and expires_at <= now


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
