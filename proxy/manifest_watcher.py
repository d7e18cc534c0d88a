"""Keeps the rules in force: the app's manifest, fetched at start and refreshed periodically.

Refreshes are conditional GETs (If-None-Match). When the app is down or answers garbage the
last good manifest stays in force; until the first good one arrives, only the static rules
apply (everything else is forwarded uncached) and retries come quickly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from tina4_sidecar.config.rules import ManifestError, RuleSet, parse_manifest
from tina4_sidecar.proxy.origin.upstream import Upstream, UpstreamTimeout, UpstreamUnavailable

if TYPE_CHECKING:
    from tina4_sidecar.proxy.control import Announcer

log = logging.getLogger("tina4_sidecar.manifest")

MAX_MANIFEST_BYTES = 1024 * 1024
_FIRST_RETRY = 0.5


class ManifestWatcher:
    def __init__(
        self,
        upstream: Upstream,
        path: str,
        interval: float,
        static: RuleSet | None = None,
        announcer: Announcer | None = None,
    ) -> None:
        self._upstream = upstream
        self._path = path
        self._interval = interval
        self._static = static
        self._from_app: RuleSet | None = None
        self._etag: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._announcer = announcer
        self.rules: RuleSet = static if static is not None else RuleSet([])
        self.loaded_at: float | None = None
        self.last_error: str | None = None

    async def refresh(self) -> bool:
        """Fetch the manifest once; True when the rules in force are from a good manifest."""
        headers = {"Accept": "application/json"}
        if self._etag:
            headers["If-None-Match"] = self._etag
        if self._announcer is not None:  # proxy/control.py: how the app reaches this sidecar
            headers.update(await self._announcer.headers())
        try:
            async with self._upstream.request("GET", self._path, headers, fresh=True) as response:
                if self._announcer is not None:
                    self._announcer.answered(response.headers.get("X-Tina4-Store"))
                if response.status == 304 and self._from_app is not None:
                    self._ok()
                    return True
                if response.status != 200:
                    return self._failed(f"the app answered {response.status} for {self._path}")
                body = await response.content.read(MAX_MANIFEST_BYTES + 1)
                etag = response.headers.get("ETag")
        except (UpstreamUnavailable, UpstreamTimeout) as exc:
            return self._failed(f"app unreachable: {exc}")
        except Exception as exc:  # a broken connection mid-body must not kill the watcher
            return self._failed(f"{type(exc).__name__}: {exc}")
        if len(body) > MAX_MANIFEST_BYTES:
            return self._failed(f"manifest larger than {MAX_MANIFEST_BYTES} bytes")
        try:
            rules = parse_manifest(body)
        except ManifestError as exc:
            return self._failed(f"bad manifest: {exc}")
        self._install(rules, etag)
        return True

    def _install(self, rules: RuleSet, etag: str | None) -> None:
        changed = self._from_app is None or rules.rules != self._from_app.rules
        self._from_app = rules
        self._etag = etag
        self.rules = RuleSet.merged(self._static, rules) if self._static is not None else rules
        self._ok()
        if changed:
            cached = sum(1 for rule in rules if rule.cache and rule.ttl > 0)
            log.info(
                "manifest loaded from %s%s: %d routes, %d cached",
                self._upstream.base_url,
                self._path,
                len(rules),
                cached,
            )

    def reconfigure(self, static: RuleSet | None, interval: float) -> None:
        """SIGHUP: new static rules (the rules file read again) and refresh interval."""
        self._static = static
        self._interval = interval
        base = self._from_app if self._from_app is not None else RuleSet([])
        self.rules = RuleSet.merged(static, base) if static is not None else base

    @property
    def rules_loaded(self) -> bool:
        """Rules came from the app at least once, or from a rules file: the sidecar can serve."""
        return self._from_app is not None or self._static is not None

    def _ok(self) -> None:
        if self.last_error is not None:
            log.info("manifest available again")
        self.last_error = None
        self.loaded_at = time.time()

    def _failed(self, reason: str) -> bool:
        if reason != self.last_error:  # one line per new problem, not one per refresh
            kept = "keeping the last good manifest" if self._from_app is not None else "caching nothing yet"
            log.warning("manifest refresh failed (%s); %s", reason, kept)
        self.last_error = reason
        return False

    async def run(self) -> None:
        delay = _FIRST_RETRY
        while True:
            ok = await self.refresh()
            delay = self._interval if ok or self._from_app is not None else min(self._interval, delay * 2)
            await asyncio.sleep(delay)

    async def start(self) -> None:
        """First fetch now (so a healthy app is cached from the first request), then in the background."""
        await self.refresh()
        self._task = asyncio.create_task(self._run_after_first())

    async def _run_after_first(self) -> None:
        await asyncio.sleep(self._interval if self._from_app is not None else _FIRST_RETRY)
        await self.run()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
