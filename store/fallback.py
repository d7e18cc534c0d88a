"""Graceful fallback: the file store stands in for a network store while that store is down.

The spec's rule: a backend whose driver is missing, or whose server or credentials are
unreachable, logs a warning and the cache goes on in the file backend. This store goes further:

* ``open()`` never raises. When the primary cannot be opened, one warning names the failure
  and the file store under ``TINA4_CACHE_DIR`` serves from then on.
* At run time, an error of the primary starts a ping on the primary's own health connection;
  when the ping fails too (a server killed or hung mid-run), the file store takes over. Errors
  while the server answers PING (a slow command, a refused write) do not switch: the file store
  would not be better, and the next probe would switch straight back.
* While degraded, a background task probes the primary every ``cache_probe_interval`` seconds
  and switches back when it answers. A missing driver is not probed: installing it needs a
  restart anyway.
* Each switch is logged once; hits, misses and errors are counted across switches.

Correctness across switches: the primary does not see what happens while the file store
serves, so keys written or deleted and clears during the outage are logged (bounded) and
replayed on the primary as deletes (or one clear) before it serves again. The replay must
outpace the writes that go on meanwhile (the log is replayed until it is empty), so a primary
that deletes many keys in one round trip (``DeletesMany``) is given them in bulk. The file
store's layer is emptied on every switch to it, so that a later outage never serves what an
earlier one left there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from tina4_sidecar.store.contract import CLEAR_TIMEOUT, Store, StoreStats, StoreUnavailable
from tina4_sidecar.store.warn_once import recovered, warn_once

if TYPE_CHECKING:
    from tina4_sidecar.config import CacheSettings

log = logging.getLogger("tina4_sidecar.store")

CHECK_SPACING = 1.0
"""Seconds between two pings that errors of a healthy-looking primary may start."""

REPLAY_LIMIT = 10_000
"""Keys remembered during an outage; beyond this the primary's whole layer is cleared instead."""

REPLAY_TIMEOUT = 30.0
"""Seconds the replay on a recovered primary may take before it is retried at the next probe."""

REPLAY_BATCH = 64
"""Deletes sent to the primary concurrently during a replay."""

REPLAY_BULK = 1000
"""Keys per call of a primary that deletes many at once."""


@runtime_checkable
class DeletesMany(Protocol):
    """A store that deletes many keys in one round trip; like ``Store._delete``, it raises on failure."""

    async def _delete_many(self, keys: list[str]) -> None: ...


@dataclass
class OutageLog:
    """What the primary missed: keys written or deleted elsewhere, or a clear of the layer."""

    limit: int = REPLAY_LIMIT
    keys: set[str] = field(default_factory=set)
    cleared: bool = False

    def __bool__(self) -> bool:
        return self.cleared or bool(self.keys)

    def touch(self, key: str) -> None:
        if self.cleared:
            return  # the clear that will be replayed removes this key too
        self.keys.add(key)
        if len(self.keys) > self.limit:
            self.clear()

    def clear(self) -> None:
        self.cleared = True
        self.keys.clear()

    def take(self) -> OutageLog:
        """This log's content, leaving it empty."""
        taken = OutageLog(self.limit, self.keys, self.cleared)
        self.keys, self.cleared = set(), False
        return taken

    def merge(self, other: OutageLog) -> None:
        if other.cleared:
            self.clear()
        for key in other.keys:
            self.touch(key)


class FallbackStore(Store):
    """A primary network store with the file store standing in while the primary is down."""

    def __init__(
        self,
        settings: CacheSettings,
        layer: str,
        primary: Store | None,
        *,
        primary_name: str | None = None,
        driver_error: ImportError | None = None,
        replay_limit: int = REPLAY_LIMIT,
    ) -> None:
        """``primary`` is None when its driver could not be imported (``driver_error`` says why).

        ``replay_limit``: keys remembered during an outage before a clear is replayed instead.
        """
        if primary is None and (primary_name is None or driver_error is None):
            raise ValueError("without a primary store, name it and give the ImportError")
        super().__init__(settings.cache_namespace, layer, settings.cache_timeout)
        self.settings = settings
        self.primary = primary
        self.primary_name = primary.backend_name if primary is not None else str(primary_name)
        self.driver_error = driver_error
        self.probe_interval = settings.cache_probe_interval
        self.outage = OutageLog(replay_limit)
        self._fallback: Store | None = None
        self._active: Store = primary if primary is not None else self._fallback_store()
        self._primary_opened = False
        self._last_check = float("-inf")
        self._switching = asyncio.Lock()
        self._probe: asyncio.Task[None] | None = None
        self._check: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: CacheSettings, layer: str, url: str | None = None) -> FallbackStore:
        """The settings' backend behind a fallback, unopened (see ``factory.open_store``)."""
        from tina4_sidecar.store.factory import with_fallback  # the factory imports this module

        return with_fallback(settings, layer, settings.cache_backend, url)

    @property
    def backend_name(self) -> str:  # type: ignore[override]  # the store that serves now
        return self._active.backend_name

    @property
    def where(self) -> str:
        """The primary and its address, as the sync fallback names it (one warning for both)."""
        if self.primary is None:
            return self.primary_name
        location = getattr(self.primary, "location", None) or getattr(self.primary, "url", "")
        return f"{self.primary_name} at {location}" if location else self.primary_name

    @property
    def degraded(self) -> bool:
        """True while the file store serves instead of the primary."""
        return self._active is not self.primary

    # -- lifecycle --------------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the primary, or fall back to the file store. Never raises."""
        if self.primary is None:
            assert self.driver_error is not None
            self._remember_error("import", self.driver_error)
            await self._open_fallback()
            warn_once(
                self.primary_name,
                f"cache backend {self.primary_name} is unavailable: its driver is missing "
                f"({self.driver_error}); caching in the file store under {self.settings.cache_dir} "
                f"instead (install the driver and restart to use {self.primary_name})",
            )
            return
        try:
            await self.primary.open()
        except StoreUnavailable as exc:
            self._remember_error("open", exc)
            await self._switch_to_fallback(str(exc))
        else:
            self._primary_opened = True

    async def close(self) -> None:
        tasks = [task for task in (self._probe, self._check) if task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for store in (self.primary, self._fallback):
            if store is not None:
                await store.close()

    async def ping(self) -> None:
        await self._active.ping()

    async def stats(self) -> StoreStats:
        size = await self.size()
        return StoreStats(
            hits=self.counters.hits,
            misses=self.counters.misses,
            size=size,
            backend=self.backend_name,
            errors=self.counters.errors,
            fallback=self.degraded,
            extra={"primary": self.primary_name, "last_error": self.counters.last_error},
        )

    # -- the contract, served by the active store --------------------------------------------------

    async def _get(self, key: str) -> bytes | None:
        return await self._run(lambda store: store._get(key))

    async def _get_many(self, keys: list[str]) -> list[bytes | None]:
        return await self._run(lambda store: store._get_many(keys))

    async def _set(self, key: str, value: bytes, ttl: int) -> None:
        await self._run(lambda store: store._set(key, value, ttl), touches=key)

    async def _add(self, key: str, value: bytes, ttl: int) -> bool:
        return await self._run(lambda store: store._add(key, value, ttl), touches=key)

    async def _delete(self, key: str) -> bool:
        return await self._run(lambda store: store._delete(key), touches=key)

    async def _clear(self) -> None:
        await self._run(lambda store: store._clear(), clears=True, bound=max(self.timeout, CLEAR_TIMEOUT))

    async def _size(self) -> int:
        return await self._run(lambda store: store._size())

    async def _guard[T](self, op: str, call: Awaitable[T], failed: T, bound: float | None = None) -> T:
        # No timeout here: _run applies it to the active store's call, where it is known which
        # store timed out (a timeout of the primary is one of its failures).
        try:
            return await call
        except Exception as exc:
            self.record_error(op, exc)
            return failed

    async def _run[T](
        self,
        call: Callable[[Store], Awaitable[T]],
        touches: str | None = None,
        clears: bool = False,
        bound: float | None = None,
    ) -> T:
        store = self._active
        on_primary = store is self.primary
        if not on_primary:
            # Noted before the first await, so that a switch back (which replays the log and
            # then flips ``_active`` without awaiting in between) cannot miss this change.
            self._note_missed(touches, clears)
        try:
            pending = call(store)
            result = await (pending if store.in_process else asyncio.wait_for(pending, bound or self.timeout))
        except Exception:
            if on_primary:
                self._note_missed(touches, clears)  # the primary may or may not have applied it
                self._primary_failed()
            raise
        return result

    # -- switching -----------------------------------------------------------------------------------

    def _note_missed(self, touches: str | None, clears: bool) -> None:
        if self.primary is None:
            return
        if clears:
            self.outage.clear()
        elif touches is not None:
            self.outage.touch(touches)

    def _primary_failed(self) -> None:
        now = time.monotonic()
        if (self._check is not None and not self._check.done()) or now - self._last_check < CHECK_SPACING:
            return
        self._last_check = now
        self._check = asyncio.create_task(self._check_primary(), name="tina4-store-check")

    async def _check_primary(self) -> None:
        """After an error: a primary that does not answer a ping is down, not just slow."""
        assert self.primary is not None
        try:
            await self.primary.ping()
        except StoreUnavailable as exc:
            await self._switch_to_fallback(str(exc))
            return
        if self.outage and not self.degraded:
            async with self._switching:
                await self._replay_all()

    async def _switch_to_fallback(self, reason: str) -> None:
        async with self._switching:
            if self.degraded:
                return
            fallback = await self._open_fallback()
            self._active = fallback
            warn_once(  # one line per store and reason, whichever layers and paths meet it
                self.where,
                f"cache store {self.where} is unavailable ({reason}); caching in the file store under "
                f"{self.settings.cache_dir} and probing {self.primary_name} every {self.probe_interval:g}s",
            )
            if self._probe is None or self._probe.done():
                self._probe = asyncio.create_task(self._probe_primary(), name="tina4-store-probe")

    async def _probe_primary(self) -> None:
        assert self.primary is not None
        while self.degraded:
            await asyncio.sleep(self.probe_interval)
            try:
                if self._primary_opened:
                    await self.primary.ping()
                else:
                    await self.primary.open()
                    self._primary_opened = True
            except Exception as exc:  # StoreUnavailable by the contract; nothing may end the probing
                self.counters.last_error = f"probe: {_text(exc)}"
                continue
            await self._switch_to_primary()

    async def _switch_to_primary(self) -> None:
        primary = self.primary
        assert primary is not None
        async with self._switching:
            if not self.degraded or not await self._replay_all():
                return
            # no await since _replay_all() found the log empty: nothing can slip in between
            self._active = primary
            self._last_check = float("-inf")  # the next error is checked at once
        if recovered(self.where):
            log.info("cache store %s answers again; switched back from the file store", self.where)

    async def _replay_all(self) -> bool:
        """Apply the outage log to the primary until it is empty; False when the primary failed.

        A delete or purge during an outage must not be undone by the recovery: without the
        replay, the primary would serve again the entries that were purged while it was away
        (and, for a key written during the outage, the value from before the write).
        """
        assert self.primary is not None
        while self.outage:
            missed = self.outage.take()
            try:
                await asyncio.wait_for(self._replay(self.primary, missed), REPLAY_TIMEOUT)
            except Exception as exc:
                self.outage.merge(missed)
                self.counters.last_error = f"replay: {_text(exc)}"
                log.debug("replaying the outage on %s failed: %s", self.primary_name, exc)
                return False
        return True

    @staticmethod
    async def _replay(primary: Store, missed: OutageLog) -> None:
        if missed.cleared:
            await primary._clear()
            return
        keys = sorted(missed.keys)
        if isinstance(primary, DeletesMany):
            # One delete per key, even 64 at a time, can take seconds for a few hundred keys on a
            # busy event loop: longer than the load takes to write as many again during the replay.
            for start in range(0, len(keys), REPLAY_BULK):
                await primary._delete_many(keys[start : start + REPLAY_BULK])
            return
        for start in range(0, len(keys), REPLAY_BATCH):
            await asyncio.gather(*(primary._delete(key) for key in keys[start : start + REPLAY_BATCH]))

    def _fallback_store(self) -> Store:
        if self._fallback is None:
            from tina4_sidecar.store.backends.file import FileStore  # only built when needed

            self._fallback = FileStore.from_settings(self.settings, self.layer)
        return self._fallback

    async def _open_fallback(self) -> Store:
        """The file store, opened and emptied; a broken one still serves (its calls count errors)."""
        fallback = self._fallback_store()
        try:
            await fallback.open()
        except StoreUnavailable as exc:
            self._remember_error("open file store", exc)
            log.error("the fallback file store under %s cannot be used: %s", self.settings.cache_dir, exc)
        # Entries left by an earlier outage may have been purged or rewritten on the primary since.
        await fallback.clear()
        return fallback

    def _remember_error(self, op: str, exc: BaseException) -> None:
        """``last_error`` for stats: not a failed call (``errors``) and not logged here (the caller logs)."""
        self.counters.last_error = f"{op}: {_text(exc)}"


def _text(exc: BaseException) -> str:
    return "timed out" if isinstance(exc, TimeoutError) else (str(exc) or type(exc).__name__)
