"""A bounded soak: steady mixed load on a real sidecar, its memory and file descriptors sampled.

The sidecar runs on the memory store bounded by ``TINA4_CACHE_MAX_ENTRIES=2000``. A warm-up
fills the store past its bound (so eviction is steady from then on) and lets the allocator and
connection pools settle; then ~20 s of load (``TINA4_SOAK_SECONDS`` for longer runs) while
VmRSS (``/proc/<pid>/status``) and the open fd count (``/proc/<pid>/fd``) are sampled every
second. RSS at the end must stay within ``RSS_GROWTH_MB`` of the level after warm-up, and the fd
count must come back to the warm-up level once the load stops. ``pytest -s`` prints the curve.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import aiohttp
import pytest

from tests.faults.load import Load, print_table
from tests.servers.demo_app import start_demo_app
from tests.servers.sidecar import start_sidecar

SOAK_SECONDS = float(os.environ.get("TINA4_SOAK_SECONDS", "20"))
MAX_ENTRIES = 2000
RSS_GROWTH_MB = 24.0
"""Allowed RSS growth after warm-up. Legitimate growth is small: the store is already full
(2000 entries of ~1 KB with headers, ~3 MB in all) before the baseline is taken, so what
remains is allocator fragmentation and buffer reuse under 30 connections, a few MB (measured:
+2.9 MB, flat from ~25 s on in a 60 s run). A leak of
about 2 KB per request shows up at the CI length (~10k requests in 20 s); longer soaks keep the
same absolute bound, so they are stricter per request."""
FD_SLACK = 8
"""Connections still closing when the load stops (client sockets in the sidecar)."""

pytestmark = [pytest.mark.fault, pytest.mark.timeout(SOAK_SECONDS + 60)]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def prefill(base: str, count: int) -> None:
    """``count`` distinct cached URLs, so the store is at its bound before the baseline."""
    connector = aiohttp.TCPConnector(limit=30)
    async with aiohttp.ClientSession(connector=connector) as http:
        names = iter(range(count))

        async def worker() -> None:
            for index in names:
                async with http.get(f"{base}/api/checked/fill{index}") as reply:
                    await reply.read()
                    assert reply.status == 200

        await asyncio.gather(*(worker() for _ in range(30)))


async def test_soak_memory_and_fds_stay_bounded(tmp_path: Path) -> None:
    app = start_demo_app(tmp_path / "app")
    try:
        env: dict[str, str | None] = {
            "TINA4_CACHE_BACKEND": "memory",
            "TINA4_CACHE_MAX_ENTRIES": str(MAX_ENTRIES),
            "TINA4_SIDECAR_LOG_LEVEL": "warning",
        }
        sidecar = start_sidecar(app.port, tmp_path / "sidecar", env=env)
        try:
            assert sidecar.proc is not None
            pid = sidecar.proc.pid
            base = f"http://127.0.0.1:{sidecar.port}"
            start_rss = rss_kb(pid)
            async with Load(base, tasks=30, seed=7) as load:
                await prefill(base, int(MAX_ENTRIES * 1.25))
                await asyncio.sleep(3)
                warm_rss, warm_fds = rss_kb(pid), fd_count(pid)
                curve: list[tuple[float, int, int]] = []
                began = time.monotonic()
                while time.monotonic() - began < SOAK_SECONDS:
                    await asyncio.sleep(1)
                    curve.append((time.monotonic() - began, rss_kb(pid), fd_count(pid)))
                await load.stop()
            await asyncio.sleep(1.5)
            end_rss, end_fds = rss_kb(pid), fd_count(pid)
            tally = load.tally
        finally:
            sidecar.stop()
    finally:
        app.stop()

    peak_rss = max(rss for _, rss, _ in curve)
    peak_fds = max(fds for _, _, fds in curve)
    print(f"\nsoak {SOAK_SECONDS:.0f} s, {tally.sent} requests, store bound {MAX_ENTRIES} entries")
    print(f"RSS MB: start {start_rss / 1024:.1f}, after warm-up {warm_rss / 1024:.1f}, ", end="")
    print(f"peak {peak_rss / 1024:.1f}, end {end_rss / 1024:.1f}")
    print(f"fds: after warm-up {warm_fds}, peak {peak_fds}, end (idle) {end_fds}")
    print("curve (s, RSS MB, fds): " + ", ".join(f"{t:.0f}:{r / 1024:.1f}/{f}" for t, r, f in curve[::5]))
    print_table("soak", [("soak", tally, 0)])

    assert (end_rss - warm_rss) / 1024 <= RSS_GROWTH_MB, (warm_rss, end_rss, curve)
    assert end_fds <= warm_fds + FD_SLACK, (warm_fds, end_fds, curve)
    assert tally.five_xx == 0, tally.wrong
    assert tally.wrong_bodies == 0, tally.wrong
    assert tally.transport_errors == 0, tally.wrong
    assert tally.sent > SOAK_SECONDS * 50  # the load really ran
