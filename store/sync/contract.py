"""``SyncStore``: the store contract of ``store/contract.py`` for callers without an event loop.

Same keys (``<namespace>:<layer>:<key>``), same bytes, same failure semantics: ``get``,
``get_many``, ``set``, ``add``, ``delete``, ``clear`` and ``size`` never raise for a failure of
the backend (the call counts an error, logs one line per burst, and answers as an empty cache
would); ``ping`` and ``open`` raise :class:`StoreUnavailable`. Each call is bounded by the
driver's socket timeout (``TINA4_CACHE_TIMEOUT``), not by an event loop's ``wait_for``.

A sync store wraps the async store of the same backend (its ``spec``), built from the same
settings: key layout, URL parsing, credentials and value encoding are that store's, so a value
written by one is read by the other, and by the sidecar.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from tina4_sidecar.store.contract import Store, StoreCounters, StoreStats, StoreUnavailable, _describe, log


class SyncStore(ABC):
    """One namespace and layer of one backend, for synchronous callers."""

    in_process: bool = False

    def __init__(self, spec: Store) -> None:
        self.spec = spec
        self.namespace = spec.namespace
        self.layer = spec.layer
        self.prefix = spec.prefix
        self.timeout = spec.timeout
        self.counters = StoreCounters()

    @property
    def backend_name(self) -> str:
        return str(self.spec.backend_name)

    def full_key(self, key: str) -> str:
        return self.prefix + key

    # -- the contract -----------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        value: bytes | None = self._guard("get", self._get, None, key)
        self._count(value is not None)
        return value

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        values: list[bytes | None] | None = self._guard("get_many", self._get_many, None, list(keys))
        if values is None or len(values) != len(keys):
            values = [None] * len(keys)
        for value in values:
            self._count(value is not None)
        return values

    def set(self, key: str, value: bytes, ttl: int) -> bool:
        if ttl < 0:
            raise ValueError("ttl must be >= 0 (0 means no expiry)")
        return self._guard("set", self._set, False, key, bytes(value), ttl) is not False

    def add(self, key: str, value: bytes, ttl: int) -> bool:
        if ttl < 0:
            raise ValueError("ttl must be >= 0 (0 means no expiry)")
        return bool(self._guard("add", self._add, False, key, bytes(value), ttl))

    def delete(self, key: str) -> bool:
        return bool(self._guard("delete", self._delete, False, key))

    def clear(self) -> bool:
        return self._guard("clear", self._clear, False) is not False

    def size(self) -> int:
        return int(self._guard("size", self._size, 0) or 0)

    def ping(self) -> None:
        try:
            self._ping()
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise StoreUnavailable(f"{self.backend_name}: {_describe(exc)}") from exc

    def open(self) -> None:
        try:
            self._open()
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise StoreUnavailable(f"{self.backend_name}: {_describe(exc)}") from exc

    def close(self) -> None:
        try:
            self._close()
        except Exception as exc:
            log.debug("closing the sync %s store failed: %s", self.backend_name, exc)

    def sweep(self) -> int:
        """Remove expired entries where the backend keeps them (memory, file, SQL); how many went."""
        return int(self._guard("sweep", self._sweep, 0) or 0)

    def stats(self) -> StoreStats:
        return StoreStats(self.counters.hits, self.counters.misses, self.size(), self.backend_name)

    def reset_stats(self) -> None:
        self.counters = StoreCounters()

    # -- what a backend implements ------------------------------------------------------------

    @abstractmethod
    def _get(self, key: str) -> bytes | None: ...

    def _get_many(self, keys: list[str]) -> list[bytes | None]:
        return [self._get(key) for key in keys]

    @abstractmethod
    def _set(self, key: str, value: bytes, ttl: int) -> None: ...

    @abstractmethod
    def _add(self, key: str, value: bytes, ttl: int) -> bool: ...

    @abstractmethod
    def _delete(self, key: str) -> bool: ...

    @abstractmethod
    def _clear(self) -> None: ...

    @abstractmethod
    def _size(self) -> int: ...

    def _sweep(self) -> int:
        return 0

    def _ping(self) -> None:
        self._size()

    def _open(self) -> None:
        self._ping()

    def _close(self) -> None:
        return None

    # -- helpers --------------------------------------------------------------------------------

    def _count(self, hit: bool) -> None:
        if hit:
            self.counters.hits += 1
        else:
            self.counters.misses += 1

    def _guard(self, op: str, call: Callable[..., Any], failed: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except Exception as exc:  # the contract: a backend failure never fails the caller
            self.record_error(op, exc)
            return failed

    def record_error(self, op: str, exc: BaseException) -> None:
        self.counters.errors += 1
        self.counters.last_error = f"{op}: {_describe(exc)}"
        now = time.time()
        quiet = self.counters.last_error_at is not None and now - self.counters.last_error_at < 5
        self.counters.last_error_at = now
        if not quiet:
            log.warning("store %s %s failed: %s", self.backend_name, op, _describe(exc))
