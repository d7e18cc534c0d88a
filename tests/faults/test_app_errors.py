"""The app turns slow, then answers 5xx, under load; then it recovers (``tests/faults/load.py``).

The demo app's fault switch (``POST /api/fault``, ``DEMO_FAULTS=true``) makes the checked routes
sleep 3 s, past the sidecar's 1 s ``TINA4_SIDECAR_UPSTREAM_TIMEOUT``, and then answer 500/503
(marked ``X-Fault``). Meanwhile: fresh HITs are still served, expired short entries are served
through stale-if-error (``Cache-Status: ...; fwd=stale``), requests that have nothing cached get
the sidecar's 504 JSON while the app is slow and the app's own 5xx while it fails, and no 5xx is
ever stored (no entry in the file store has a 5xx status, and a URL that got a 5xx is a MISS once
the app is back). Uncached routes (``/api/checked-live/``, in the load) get the same 504 and 5xx.
Once the app answers again, fresh URLs and POSTs are served and cached as before.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import struct
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.faults.load import Load, Tally, assert_clean, fetch, print_table, set_fault, wait_for
from tests.servers.demo_app import start_demo_app
from tests.servers.process import ServerProcess
from tests.servers.sidecar import start_sidecar
from tina4_sidecar.config import Backend, CacheSettings
from tina4_sidecar.proxy.http.entry import MAGIC as ENTRY_MAGIC
from tina4_sidecar.proxy.http.entry import Entry
from tina4_sidecar.store.factory import open_store
from tina4_sidecar.store.response_purge import purge_url

pytestmark = [pytest.mark.fault, pytest.mark.timeout(60)]

TASKS = 30
UPSTREAM_TIMEOUT = 1.0
SLOW_SECONDS = 3.0
PHASE = 3.5
"""Seconds each fault lasts: past the 2 s TTL of the short entries, so they are served stale."""

# The file store's layout (store/backends/file.py): header, full key, value.
_FILE_HEADER = struct.Struct(">4sBdIQI")


def stored_statuses(cache_dir: Path) -> Counter[int]:
    """The status of every response entry in the file store under ``cache_dir``."""
    statuses: Counter[int] = Counter()
    for path in cache_dir.glob("*/resp/*/*"):
        try:
            data = path.read_bytes()
        except OSError:  # replaced or swept while we looked
            continue
        if len(data) < _FILE_HEADER.size:
            continue
        key_length, value_length = _FILE_HEADER.unpack_from(data)[3:5]
        start = _FILE_HEADER.size + key_length
        value = data[start : start + value_length]
        if value.startswith(ENTRY_MAGIC):
            statuses[Entry.decode(value).status] += 1
    return statuses


def verified(headers: dict[str, str], body: bytes) -> bool:
    return headers.get("X-Body-SHA256") == hashlib.sha256(body).hexdigest()


def delta(now: Counter[str], before: Counter[str], kinds: tuple[str, ...]) -> dict[str, int]:
    return {kind: now[kind] - before[kind] for kind in kinds}


class Phase:
    """What the load saw of the hot and short routes between ``__init__`` and ``end()``."""

    KINDS = ("hot", "short")

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.ok_before = Counter(tally.ok_by_kind)
        self.failed_before = Counter(tally.failed_by_kind)
        self.stale_before = tally.stale_served

    def end(self) -> tuple[dict[str, int], dict[str, int], int]:
        """(answered 200, failed, served stale) during the phase."""
        ok = delta(self.tally.ok_by_kind, self.ok_before, self.KINDS)
        failed = delta(self.tally.failed_by_kind, self.failed_before, self.KINDS)
        return ok, failed, self.tally.stale_served - self.stale_before


def probe_slow(base: str) -> None:
    """While the app is slow: 504 JSON after the sidecar's timeout (on a cached route with nothing
    stored and on an uncached one); stale and fresh entries served."""
    for path in ("/api/checked/slow-probe", "/api/checked-live/slow-probe"):
        began = time.monotonic()
        status, headers, body = fetch(f"{base}{path}")
        took = time.monotonic() - began
        assert status == 504, (path, body)
        assert headers["Content-Type"].startswith("application/json")
        assert json.loads(body)["error"] == "upstream timed out"
        assert UPSTREAM_TIMEOUT * 0.9 < took < SLOW_SECONDS, took  # the sidecar gave up, not the app
    status, headers, body = fetch(f"{base}/api/checked-short/short0")
    assert status == 200, (status, body)
    assert "fwd=stale" in headers["Cache-Status"], headers
    assert verified(headers, body)
    status, headers, body = fetch(f"{base}/api/checked/hot0")
    assert (status, headers.get("X-Cache")) == (200, "HIT"), (status, headers)
    assert verified(headers, body)


def probe_failing(base: str, never_stored: str) -> None:
    """While the app answers 5xx: its 5xx passed on (twice: not stored; uncached: no X-Cache),
    stale served, POSTs fine."""
    for _ in range(2):
        status, headers, body = fetch(f"{base}{never_stored}")
        assert status in (500, 503), (status, body)
        assert (headers.get("X-Fault"), headers.get("X-Cache")) == ("error", "MISS"), headers
    status, headers, body = fetch(f"{base}/api/checked-live/failing-probe")
    assert status in (500, 503), (status, body)
    assert (headers.get("X-Fault"), headers.get("X-Cache")) == ("error", None), headers
    status, headers, body = fetch(f"{base}/api/checked-short/short1")
    assert status == 200, (status, body)
    assert "fwd=stale" in headers["Cache-Status"], headers  # fwd-status=5xx only on the fetch's own answer
    assert verified(headers, body)
    status, _, body = fetch(f"{base}/api/echo", b"failing")
    assert (status, json.loads(body)["length"]) == (200, 7)


def probe_recovered(base: str, never_stored: str) -> None:
    """The URL that got 5xx is a MISS (nothing was stored for it), then a HIT."""
    status, headers, body = fetch(f"{base}{never_stored}")
    assert (status, headers.get("X-Cache")) == (200, "MISS"), (status, headers)
    assert verified(headers, body)
    status, headers, _ = fetch(f"{base}{never_stored}")
    assert (status, headers.get("X-Cache")) == (200, "HIT"), (status, headers)


async def test_app_slow_then_failing_under_load(tmp_path: Path) -> None:
    app = start_demo_app(tmp_path / "app", env={"DEMO_FAULTS": "true"})
    sidecar: ServerProcess | None = None
    try:
        env: dict[str, str | None] = {
            "TINA4_CACHE_BACKEND": "file",
            "TINA4_SIDECAR_UPSTREAM_TIMEOUT": str(UPSTREAM_TIMEOUT),
            "TINA4_SIDECAR_LOG_LEVEL": "info",
        }
        sidecar = start_sidecar(app.port, tmp_path / "sidecar", env=env)
        base = f"http://127.0.0.1:{sidecar.port}"
        cache_dir = tmp_path / "sidecar" / "cache"
        store = await open_store(CacheSettings(cache_backend=Backend.FILE, cache_dir=cache_dir), "resp")
        never_stored = f"/api/checked/never-stored-{time.monotonic_ns()}"
        async with Load(base, TASKS, lambda p: purge_url(store, p), live=0.1) as load:
            tally = load.tally
            await wait_for(
                lambda: tally.ok_by_kind["short"] > 20 and tally.x_cache["HIT"] > 50, 15, "warm-up"
            )
            await asyncio.sleep(2.5)  # every short entry has been stored at least once by now

            load.app_may_time_out = True
            slow = Phase(tally)
            await asyncio.to_thread(set_fault, app.url, app="slow", slow_seconds=SLOW_SECONDS)
            await asyncio.sleep(PHASE)
            await asyncio.to_thread(probe_slow, base)
            seen_slow = slow.end()
            timeouts = tally.expected_504

            load.app_may_fail = True
            failing = Phase(tally)
            await asyncio.to_thread(set_fault, app.url, app="error")
            await asyncio.sleep(UPSTREAM_TIMEOUT + 0.5)  # fetches sent while it was slow have timed out
            load.app_may_time_out = False
            await asyncio.sleep(PHASE - UPSTREAM_TIMEOUT - 0.5)
            await asyncio.to_thread(probe_failing, base, never_stored)
            seen_failing = failing.end()
            app_errors = tally.expected_app_5xx

            await asyncio.to_thread(set_fault, app.url, app="ok")
            await asyncio.sleep(1)  # answers of the failing app already on their way
            load.app_may_fail = False
            await asyncio.to_thread(probe_recovered, base, never_stored)
            echo_ok, fresh_ok = tally.ok_by_kind["echo"], tally.ok_by_kind["fresh"]
            hits = tally.x_cache["HIT"]
            await asyncio.sleep(3)
            await load.stop()
        await store.close()
        statuses = stored_statuses(cache_dir)
        print_table("app slow, then 5xx, then back", [("app slow + 5xx + back", tally, 2)])
        print(f"slow: {seen_slow}; failing: {seen_failing}; stored entries by status: {dict(statuses)}")
        for ok, failed, stale in (seen_slow, seen_failing):
            assert min(ok.values()) > 0, ok
            assert failed == {"hot": 0, "short": 0}, (failed, tally.wrong)
            assert stale > 0
        assert timeouts > 0
        assert app_errors > 0
        assert tally.unexpected_5xx == 0, tally.wrong
        assert statuses[200] > 0
        assert max(statuses) < 500, statuses
        assert tally.ok_by_kind["echo"] > echo_ok
        assert tally.ok_by_kind["fresh"] > fresh_ok
        assert tally.x_cache["HIT"] > hits
        assert_clean(tally)
        assert tally.purges > 0
        log = sidecar.log_text()
        assert "upstream timed out" in log
        assert "Traceback" not in log
    finally:
        if sidecar is not None:
            sidecar.stop()
        app.stop()
