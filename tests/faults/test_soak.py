"""A bounded soak: steady mixed load on a real sidecar, its memory and file descriptors sampled.

The sidecar runs on the memory store bounded by ``TINA4_CACHE_MAX_ENTRIES=2000``. A warm-up
fills the store past its bound (so eviction is steady from then on) and lets the allocator and
connection pools settle; then ~20 s of load (``TINA4_SOAK_SECONDS`` for longer runs) while
VmRSS (``/proc/<pid>/status``) and the open fd count (``/proc/<pid>/fd``) are sampled every
second. RSS at the end must stay within ``RSS_GROWTH_MB`` of the level after warm-up, and the fd
count must come back to the warm-up level once the load stops. ``pytest -s`` prints the curve:
RSS and fds at the start, after warm-up, at the peak and at the end, about 20 samples in between,
and the error counts. A long soak: ``TINA4_SOAK_SECONDS=600 .venv/bin/python -m pytest
tests/faults/test_soak.py -s``.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.faults.load import Load, Tally, print_table
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
CURVE_POINTS = 20
"""Rows of the printed curve, whatever the length of the soak (the last row is after the load)."""

pytestmark = [pytest.mark.fault, pytest.mark.timeout(SOAK_SECONDS + 60)]


@dataclass(frozen=True, slots=True)
class Sample:
    """The sidecar's resident memory and open file descriptors, ``seconds`` into the soak."""

    seconds: float
    rss_kb: int
    fds: int


def print_soak(start: Sample, warm: Sample, curve: list[Sample], end: Sample, tally: Tally) -> None:
    """The memory curve and the error counts (shown with ``pytest -s``)."""
    peak = max(curve, key=lambda sample: sample.rss_kb)
    rate = tally.sent / SOAK_SECONDS
    print(f"\nsoak {SOAK_SECONDS:.0f} s: {tally.sent} requests ({rate:.0f}/s), ", end="")
    print(f"store bound {MAX_ENTRIES} entries")
    print(
        f"RSS MB: start {mb(start)}, after warm-up {mb(warm)}, peak {mb(peak)} (at {peak.seconds:.0f} s), "
        f"end {mb(end)}; growth after warm-up {(end.rss_kb - warm.rss_kb) / 1024:+.1f} "
        f"(allowed {RSS_GROWTH_MB:.0f})"
    )
    print(
        f"fds: start {start.fds}, after warm-up {warm.fds}, peak {max(s.fds for s in curve)}, "
        f"end (idle) {end.fds} (allowed {warm.fds + FD_SLACK})"
    )
    print(
        f"errors: 5xx {tally.five_xx} (unexpected {tally.unexpected_5xx}), "
        f"wrong bodies {tally.wrong_bodies}, foreign bodies {tally.foreign_bodies}, "
        f"transport errors {tally.transport_errors}"
    )
    step = max(1, len(curve) // CURVE_POINTS)
    print(f"{'s':>6}{'RSS MB':>9}{'fds':>6}")
    for sample in [*curve[step - 1 :: step], end]:
        print(f"{sample.seconds:>6.0f}{mb(sample):>9}{sample.fds:>6}")
    print_table("soak", [("soak", tally, 0)])


def mb(sample: Sample) -> str:
    return f"{sample.rss_kb / 1024:.1f}"


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
            start = Sample(0.0, rss_kb(pid), fd_count(pid))
            async with Load(base, tasks=30, seed=7) as load:
                await prefill(base, int(MAX_ENTRIES * 1.25))
                await asyncio.sleep(3)
                warm = Sample(0.0, rss_kb(pid), fd_count(pid))
                curve: list[Sample] = []
                began = time.monotonic()
                while time.monotonic() - began < SOAK_SECONDS:
                    await asyncio.sleep(1)
                    curve.append(Sample(time.monotonic() - began, rss_kb(pid), fd_count(pid)))
                await load.stop()
            await asyncio.sleep(1.5)
            end = Sample(time.monotonic() - began, rss_kb(pid), fd_count(pid))
            tally = load.tally
        finally:
            sidecar.stop()
    finally:
        app.stop()

    print_soak(start, warm, curve, end, tally)

    assert (end.rss_kb - warm.rss_kb) / 1024 <= RSS_GROWTH_MB, (warm, end, curve)
    assert end.fds <= warm.fds + FD_SLACK, (warm, end, curve)
    assert tally.five_xx == 0, tally.wrong
    assert tally.wrong_bodies == 0, tally.wrong
    assert tally.transport_errors == 0, tally.wrong
    assert tally.sent > SOAK_SECONDS * 50  # the load really ran
