"""The storage contract that every backend implements, and its failure semantics.

A *store* is one namespace in one backend: ``Store.get("k")`` reads the key
``<namespace>:<layer>:k`` of the backend's keyspace, and ``clear()`` removes that
namespace's keys and nothing else (never FLUSHALL, FLUSHDB or flush_all).

Values are ``bytes``. What they mean (a response entry, a JSON value, a query result)
is decided above this layer; the store never unpickles anything.

Failure semantics (the contract every caller relies on):

* The public coroutines (``get``, ``get_many``, ``set``, ``delete``, ``clear``, ``size``)
  never raise for a failure of the backend. Each call is bounded by ``timeout``
  seconds; an exception or a timeout counts one error in ``stats()`` and the call
  answers as if the cache were empty: ``get`` -> None, ``get_many`` -> all None,
  ``set`` -> False, ``delete`` -> False, ``size`` -> 0. A request never fails because
  the cache did.
* ``ping()`` is the exception: it raises :class:`StoreUnavailable` so that health
  probes and fallback can tell a dead backend from a live one.
* ``ttl`` is in whole seconds; ``ttl=0`` means "no expiry" (the spec's meaning), and
  an expired entry is never returned, whether or not the backend has purged it yet.
* Subclasses implement the ``_underscored`` coroutines and may raise anything from
  them; they must not block the event loop (use the driver's asyncio API or
  ``asyncio.to_thread`` for a blocking driver).

Keys are any ``str`` (spaces, unicode, newlines, ``../``, hundreds of characters); a backend
hashes or escapes what it cannot store natively. Further promises the contract suite checks:
``delete`` of an expired entry answers False; overwriting a key replaces its TTL too; ``set``
answering True means "accepted" (a bounded store may evict the value at once). ``size()`` is
exact except where a backend says otherwise (memcached cannot count keys and keeps an
approximate counter).

One optional hook: ``changes()`` gives a subscription to the changes that every process announces
for the response layer (push invalidation, ``store/push.py``); only Redis and Valkey have one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from tina4_sidecar.config import CacheSettings
    from tina4_sidecar.store.push import Subscription

log = logging.getLogger("tina4_sidecar.store")

SIZE_TIMEOUT = 5.0
CLEAR_TIMEOUT = 30.0
"""Seconds a ``clear()`` may take (it may have many keys to remove)."""

LAYERS = ("resp", "kv", "query", "meta")
"""Sub-namespaces: HTTP responses, the key/value API, query results, and bookkeeping."""


class StoreUnavailable(Exception):
    """The backend cannot be reached or refused us (raised by ``ping`` and ``open``)."""


@dataclass
class StoreCounters:
    """Counters behind ``stats()``; reset by ``reset_stats()``."""

    hits: int = 0
    misses: int = 0
    errors: int = 0
    last_error: str | None = None
    last_error_at: float | None = None


@dataclass(frozen=True)
class StoreStats:
    """A snapshot: the spec's exact fields first, then ours."""

    hits: int
    misses: int
    size: int
    backend: str
    errors: int = 0
    fallback: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def as_spec_dict(self) -> dict[str, Any]:
        """Exactly the fields the spec names: hits, misses, size, backend."""
        return {"hits": self.hits, "misses": self.misses, "size": self.size, "backend": self.backend}

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.as_spec_dict(),
            "errors": self.errors,
            "fallback": self.fallback,
            **self.extra,
        }


class Store(ABC):
    """One namespace of one backend. See the module docstring for the failure semantics."""

    backend_name: ClassVar[str] = "?"
    in_process: ClassVar[bool] = False
    """True for stores that never wait on I/O of their own: no timeout wrapper on their calls
    (it costs more than the lookup itself on the HIT path)."""

    def __init__(self, namespace: str, layer: str, timeout: float = 1.0) -> None:
        if layer not in LAYERS:
            raise ValueError(f"unknown layer {layer!r}; expected one of {LAYERS}")
        if any(part in LAYERS for part in namespace.split(":")):
            # "a:kv" + layer "kv" + key "x" would share keys with "a" + "kv" + "kv:x".
            raise ValueError(f"namespace {namespace!r} must not contain a layer name {LAYERS} as a segment")
        self.namespace = namespace
        self.layer = layer
        self.prefix = f"{namespace}:{layer}:"
        self.timeout = timeout
        self.counters = StoreCounters()
        self.observe: Callable[[str, float], None] | None = None
        """Told the operation and seconds of every call (failed ones included) when set: the
        sidecar's store latency metric."""

    # -- the contract -------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        started = time.perf_counter()
        value = await self._guard("get", self._get(key), None)
        self._count(value is not None)
        self._timed("get", started)
        return value

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values in the order of ``keys``; one round trip where the backend allows."""
        if not keys:
            return []
        started = time.perf_counter()
        values = await self._guard("get_many", self._get_many(list(keys)), None)
        self._timed("get_many", started)
        if values is not None and len(values) != len(keys):
            self.record_error("get_many", ValueError(f"{len(values)} values for {len(keys)} keys"))
            values = None
        if values is None:
            values = [None] * len(keys)
        for value in values:
            self._count(value is not None)
        return values

    async def set(self, key: str, value: bytes | bytearray | memoryview, ttl: int) -> bool:
        """Store ``value`` for ``ttl`` seconds (0 = no expiry). False when it failed."""
        if ttl < 0:
            raise ValueError("ttl must be >= 0 (0 means no expiry)")
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"store values are bytes, not {type(value).__name__}")
        started = time.perf_counter()
        result = await self._guard("set", self._set(key, bytes(value), ttl), False)
        self._timed("set", started)
        return result is not False

    async def add(self, key: str, value: bytes, ttl: int) -> bool:
        """Store ``value`` only if ``key`` holds no live value, atomically across every process
        sharing the store (a lock). True when this call stored it; False when the key was taken
        or the store failed."""
        if ttl < 0:
            raise ValueError("ttl must be >= 0 (0 means no expiry)")
        started = time.perf_counter()
        added = bool(await self._guard("add", self._add(key, bytes(value), ttl), False))
        self._timed("add", started)
        return added

    async def delete(self, key: str) -> bool:
        """Remove ``key``; True when it existed."""
        started = time.perf_counter()
        deleted = bool(await self._guard("delete", self._delete(key), False))
        self._timed("delete", started)
        return deleted

    async def clear(self) -> bool:
        """Remove every key of this namespace and layer, and nothing else. False when it failed."""
        # A clear of a large layer (SCAN + UNLINK, DELETE of many rows) may take longer than a get.
        started = time.perf_counter()
        result = await self._guard("clear", self._clear(), False, bound=max(self.timeout, CLEAR_TIMEOUT))
        self._timed("clear", started)
        return result is not False

    async def size(self) -> int:
        """Number of live entries in this namespace and layer (may be approximate)."""
        # Counting may scan (Redis SCAN, a directory walk): more time than a get, less than a clear.
        started = time.perf_counter()
        size = int(await self._guard("size", self._size(), 0, bound=max(self.timeout, SIZE_TIMEOUT)) or 0)
        self._timed("size", started)
        return size

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the backend answers within the timeout."""
        try:
            await asyncio.wait_for(self._ping(), self.timeout)
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise StoreUnavailable(f"{self.backend_name}: {_describe(exc)}") from exc

    async def open(self) -> None:
        """Connect (pools, schema, indexes). Raises StoreUnavailable when the backend is down."""
        try:
            await asyncio.wait_for(self._open(), max(self.timeout, 5.0))
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise StoreUnavailable(f"{self.backend_name}: {_describe(exc)}") from exc

    def changes(self) -> Subscription | None:
        """A new, unopened subscription to the changes announced for this namespace and layer, or
        None (the default) where the backend announces none (see ``store/push.py``)."""
        return None

    async def close(self) -> None:
        try:
            await self._close()
        except Exception as exc:
            log.debug("closing %s failed: %s", self.backend_name, exc)

    async def stats(self) -> StoreStats:
        return StoreStats(
            hits=self.counters.hits,
            misses=self.counters.misses,
            size=await self.size(),
            backend=self.backend_name,
            errors=self.counters.errors,
        )

    def reset_stats(self) -> None:
        self.counters = StoreCounters()

    # -- what a backend implements --------------------------------------------------------

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: CacheSettings, layer: str, url: str | None = None) -> Store:
        """Build from the settings; ``url`` overrides ``settings.cache_url``. Does no I/O."""

    @abstractmethod
    async def _get(self, key: str) -> bytes | None: ...

    async def _get_many(self, keys: list[str]) -> list[bytes | None]:
        return [await self._get(key) for key in keys]

    @abstractmethod
    async def _set(self, key: str, value: bytes, ttl: int) -> None: ...

    async def _add(self, key: str, value: bytes, ttl: int) -> bool:
        raise NotImplementedError(f"{self.backend_name} has no atomic add")

    @abstractmethod
    async def _delete(self, key: str) -> bool: ...

    @abstractmethod
    async def _clear(self) -> None: ...

    @abstractmethod
    async def _size(self) -> int: ...

    async def _ping(self) -> None:
        await self._size()

    async def _open(self) -> None:
        return None

    async def _close(self) -> None:
        return None

    # -- helpers ----------------------------------------------------------------------------

    def full_key(self, key: str) -> str:
        """The key as the backend stores it: ``<namespace>:<layer>:<key>``."""
        return self.prefix + key

    @staticmethod
    def expires_at(ttl: int, now: float | None = None) -> float | None:
        """Absolute expiry (epoch seconds) for ``ttl``; None for no expiry."""
        return None if ttl == 0 else (now if now is not None else time.time()) + ttl

    def _timed(self, op: str, started: float) -> None:
        if self.observe is not None:
            self.observe(op, time.perf_counter() - started)

    def _count(self, hit: bool) -> None:
        if hit:
            self.counters.hits += 1
        else:
            self.counters.misses += 1

    async def _guard[T](self, op: str, call: Awaitable[T], failed: T, bound: float | None = None) -> T:
        try:
            if self.in_process:
                return await call
            return await asyncio.wait_for(call, bound or self.timeout)
        except Exception as exc:  # the contract: a backend failure never fails the caller
            self.record_error(op, exc)
            return failed

    def record_error(self, op: str, exc: BaseException) -> None:
        self.counters.errors += 1
        self.counters.last_error = f"{op}: {_describe(exc)}"
        now = time.time()
        quiet = self.counters.last_error_at is not None and now - self.counters.last_error_at < 5
        self.counters.last_error_at = now
        if not quiet:  # one line per burst: an outage must not flood the log
            log.warning("store %s %s failed: %s", self.backend_name, op, _describe(exc))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]
