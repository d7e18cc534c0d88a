"""The app's cache manifest disappears, fails and turns to garbage under load (``tests/faults/load.py``).

The demo app's fault switch (``POST /api/fault``, ``DEMO_FAULTS=true``) makes
``GET /__tina4/cache-manifest`` answer 404, then 500, then 200 with bodies that are not a
manifest (cut-off JSON, HTML, an unknown version, binary, a route without a path), while the
sidecar refreshes it every 0.25 s and the rest of the app keeps working. Throughout, the last good
rules stay in force: cached routes keep answering HITs and fresh URLs there are MISSes that get
stored, the uncached route (``/api/checked-live/``, in the load) never carries ``X-Cache``, and
there is no 5xx at all. The sidecar's log shows that it saw each fault, and that the manifest was
available again once the app serves it again; after that everything goes on as before.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.faults.load import Load, Tally, assert_clean, logged, print_table, set_fault, wait_for
from tests.servers.demo_app import start_demo_app
from tests.servers.process import ServerProcess
from tests.servers.sidecar import start_sidecar
from tina4_sidecar.config import Backend, CacheSettings
from tina4_sidecar.store.factory import open_store
from tina4_sidecar.store.response_purge import purge_url

pytestmark = [pytest.mark.fault, pytest.mark.timeout(60)]

TASKS = 30
REFRESH = 0.25
HOLD = 1.5
"""Seconds each fault stays after the sidecar has logged it: several refreshes."""

# What the sidecar logs for each fault (proxy/manifest_watcher.py).
FAULTS = {
    "404": "manifest refresh failed (the app answered 404",
    "500": "manifest refresh failed (the app answered 500",
    "garbage": "manifest refresh failed (bad manifest",
}
GARBAGE_KINDS = 5
BACK = "manifest available again"


class Seen:
    """What the load saw between ``__init__`` and ``end()``: HITs, fresh MISSes, uncached answers."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.before = self._now()

    def _now(self) -> tuple[int, int, int]:
        return self.tally.x_cache["HIT"], self.tally.ok_by_kind["fresh"], self.tally.ok_by_kind["live"]

    def end(self) -> tuple[int, int, int]:
        (hits, fresh, live), (hits0, fresh0, live0) = self._now(), self.before
        return hits - hits0, fresh - fresh0, live - live0


async def test_manifest_gone_then_garbage_under_load(tmp_path: Path) -> None:
    app = start_demo_app(tmp_path / "app", env={"DEMO_FAULTS": "true"})
    sidecar: ServerProcess | None = None
    try:
        env: dict[str, str | None] = {
            "TINA4_CACHE_BACKEND": "file",
            "TINA4_SIDECAR_MANIFEST_REFRESH": str(REFRESH),
            "TINA4_SIDECAR_LOG_LEVEL": "info",
        }
        sidecar = start_sidecar(app.port, tmp_path / "sidecar", env=env)
        base = f"http://127.0.0.1:{sidecar.port}"
        log_path = sidecar.log_path
        cache_dir = tmp_path / "sidecar" / "cache"
        store = await open_store(CacheSettings(cache_backend=Backend.FILE, cache_dir=cache_dir), "resp")
        seen: dict[str, tuple[int, int, int]] = {}
        async with Load(base, TASKS, lambda p: purge_url(store, p), live=0.1) as load:
            tally = load.tally
            await wait_for(lambda: tally.x_cache["HIT"] > 50, 15, "warm-up")
            assert not logged(log_path, BACK)()
            for mode, message in FAULTS.items():
                phase = Seen(tally)
                await asyncio.to_thread(set_fault, app.url, manifest=mode)
                times = GARBAGE_KINDS if mode == "garbage" else 1  # one line per new reason
                await wait_for(logged(log_path, message, times), 10, f"manifest {mode}")
                await asyncio.sleep(HOLD)
                seen[mode] = phase.end()
            phase = Seen(tally)
            await asyncio.to_thread(set_fault, app.url, manifest="ok")
            await wait_for(logged(log_path, BACK), 5, "the manifest back")
            await asyncio.sleep(2)
            seen["back"] = phase.end()
            await load.stop()
        await store.close()
        print_table("manifest 404, 500, garbage, back", [("manifest 404 + 500 + garbage", tally, 3)])
        print(f"(HITs, fresh MISSes, uncached answers) per phase: {seen}")
        for mode, (hits, fresh, live) in seen.items():
            assert hits > 0, (mode, seen)
            assert fresh > 0, (mode, seen)
            assert live > 0, (mode, seen)
        assert tally.five_xx == 0, tally.wrong
        assert_clean(tally)  # wrong_rules == 0: cached routes carried X-Cache, the uncached one never
        assert tally.purges > 0
        assert "Traceback" not in sidecar.log_text()
    finally:
        if sidecar is not None:
            sidecar.stop()
        app.stop()
