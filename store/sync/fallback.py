"""The spec's graceful fallback for sync callers: the file store stands in while a network store is down.

As ``store/fallback.py`` does for the async stores, without a background task: a primary that
cannot be opened, or that fails a call and then a ping, hands over to the file store under
``TINA4_CACHE_DIR``; a later call, at most every ``TINA4_CACHE_PROBE_INTERVAL`` seconds, pings it
again, replays on it the keys written or deleted meanwhile (as deletes, or one clear: an outage
must never resurrect a purged entry), and switches back. One warning per primary and reason in
the whole process (the kv, meta, query and resp layers share it), one line on recovery.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

from tina4_sidecar.store.contract import StoreUnavailable
from tina4_sidecar.store.fallback import OutageLog
from tina4_sidecar.store.sync.contract import SyncStore
from tina4_sidecar.store.warn_once import recovered, warn_once

log = logging.getLogger("tina4_sidecar.store")


class SyncFallbackStore(SyncStore):
    """``primary`` (None: its driver is missing) with ``fallback`` (the file store) standing in."""

    def __init__(
        self, primary: SyncStore, fallback: SyncStore, cache_dir: str, probe_interval: float, where: str
    ) -> None:
        super().__init__(primary.spec)
        self.primary = primary
        self.fallback = fallback
        self.cache_dir = cache_dir
        self.probe_interval = probe_interval
        self.where = where
        self.outage = OutageLog()
        self.degraded = False
        self._next_probe = 0.0
        self._lock = threading.Lock()

    @property
    def backend_name(self) -> str:
        return self.fallback.backend_name if self.degraded else self.primary.backend_name

    def open(self) -> None:
        try:
            self.primary.open()
        except StoreUnavailable as exc:
            self._switch_to_fallback(str(exc))

    def close(self) -> None:
        self.primary.close()
        self.fallback.close()

    def ping(self) -> None:
        (self.fallback if self.degraded else self.primary).ping()

    # -- the contract, on whichever store serves now ----------------------------------------------

    def _get(self, key: str) -> bytes | None:
        if not self.degraded:  # the hot path: straight to the primary, _call's rules on failure
            try:
                return self.primary._get(key)
            except Exception as exc:
                self._failed(exc, None, False)
        return self._call(lambda s: s._get(key))  # type: ignore[no-any-return]

    def _get_many(self, keys: list[str]) -> list[bytes | None]:
        if not self.degraded:
            try:
                return self.primary._get_many(keys)
            except Exception as exc:
                self._failed(exc, None, False)
        return self._call(lambda s: s._get_many(keys))  # type: ignore[no-any-return]

    def _set(self, key: str, value: bytes, ttl: int) -> None:
        self._call(lambda s: s._set(key, value, ttl), touches=key)

    def _add(self, key: str, value: bytes, ttl: int) -> bool:
        return bool(self._call(lambda s: s._add(key, value, ttl), touches=key))

    def _delete(self, key: str) -> bool:
        return bool(self._call(lambda s: s._delete(key), touches=key))

    def _clear(self) -> None:
        self._call(lambda s: s._clear(), clears=True)

    def _size(self) -> int:
        return int(self._call(lambda s: s._size()))

    def _sweep(self) -> int:
        return int(self._call(lambda s: s._sweep()))

    def _call(
        self, work: Callable[[SyncStore], Any], touches: str | None = None, clears: bool = False
    ) -> Any:
        if self.degraded and time.monotonic() >= self._next_probe:
            self._probe()
        if self.degraded:
            self._note(touches, clears)
            return work(self.fallback)
        try:
            return work(self.primary)
        except Exception as exc:
            self._failed(exc, touches, clears)

    def _failed(self, exc: Exception, touches: str | None, clears: bool) -> NoReturn:
        """After the primary failed a call: note what it touched, switch to the fallback if the
        primary does not answer a ping either, and raise ``exc`` for the contract's guard."""
        self._note(touches, clears)  # the primary may or may not have applied it
        try:
            self.primary.ping()
        except StoreUnavailable as down:
            self._switch_to_fallback(str(down))
        raise exc

    # -- switching ------------------------------------------------------------------------------------

    def _note(self, touches: str | None, clears: bool) -> None:
        with self._lock:
            if clears:
                self.outage.clear()
            elif touches is not None:
                self.outage.touch(touches)

    def _switch_to_fallback(self, reason: str) -> None:
        with self._lock:
            if self.degraded:
                return
            self.fallback.open()
            self.fallback._clear()  # an earlier outage's leftovers may have been purged since
            self.degraded = True
            self._next_probe = time.monotonic() + self.probe_interval
        warn_once(
            self.where,
            f"cache store {self.where} is unavailable ({reason}); caching in the file store under "
            f"{self.cache_dir} and probing {self.where.split(' at ')[0]} every {self.probe_interval:g}s",
        )

    def _probe(self) -> None:
        with self._lock:
            if not self.degraded or time.monotonic() < self._next_probe:
                return
            self._next_probe = time.monotonic() + self.probe_interval
            try:
                self.primary.ping()
                missed = self.outage.take()
                if missed.cleared:
                    self.primary._clear()
                for key in sorted(missed.keys):
                    self.primary._delete(key)
            except Exception as exc:
                if "missed" in locals():
                    self.outage.merge(missed)
                self.counters.last_error = f"probe: {exc}"
                return
            self.degraded = False
        if recovered(self.where):
            log.info("cache store %s answers again; switched back from the file store", self.where)
