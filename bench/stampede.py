"""A cold-key stampede: N concurrent requests for one slow route, through the sidecar.

    .venv/bin/python -m bench.stampede [--requests 200] [--sidecars 1|2]

Starts the demo Tina4 app (``/api/slow`` sleeps 100 ms) and one sidecar (memory store) or two
sidecars sharing a Redis started for the run, measures the app's own latency for the route
(sequential requests straight to the app), then fires N concurrent requests for a cold URL and
prints how many reached the app and the latency distribution, side by side in one table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

from tests.servers.demo_app import start_demo_app
from tests.servers.redis import redis_server, server_url, serving
from tests.servers.sidecar import start_sidecar


def calls(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/calls", timeout=5) as reply:
        return int(json.loads(reply.read()).get("slow", 0))


async def timed(session: aiohttp.ClientSession, url: str) -> float:
    started = time.perf_counter()
    async with session.get(url, headers={"Host": "bench.local"}) as response:
        await response.read()
        assert response.status == 200, response.status
    return (time.perf_counter() - started) * 1000


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure(app_port: int, sidecar_ports: list[int], requests: int, run: str) -> list[tuple[str, ...]]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        direct = [
            await timed(session, f"http://127.0.0.1:{app_port}/api/slow?direct={i}-{run}") for i in range(20)
        ]
        # Open every connection first (a cached URL, so the app is not asked): the wave below then
        # measures the stampede, not 200 TCP handshakes in this one client process.
        warm = [
            f"http://127.0.0.1:{sidecar_ports[i % len(sidecar_ports)]}/api/products" for i in range(requests)
        ]
        await asyncio.gather(*(timed(session, url) for url in warm))
        before = calls(app_port)
        urls = [
            f"http://127.0.0.1:{sidecar_ports[i % len(sidecar_ports)]}/api/slow?cold={run}"
            for i in range(requests)
        ]
        latencies = await asyncio.gather(*(timed(session, url) for url in urls))
        origin_hits = calls(app_port) - before
    app_p50 = statistics.median(direct)
    return [
        ("app alone, sequential", "20", "-", f"{app_p50:.1f}", f"{percentile(direct, 0.99):.1f}", "-"),
        (
            f"{len(sidecar_ports)} sidecar(s), {requests} concurrent",
            str(requests),
            str(origin_hits),
            f"{statistics.median(latencies):.1f}",
            f"{percentile(latencies, 0.99):.1f}",
            f"{statistics.median(latencies) - app_p50:+.1f}",
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--sidecars", type=int, choices=(1, 2), default=1)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tina4-stampede-"))
    app = start_demo_app(work / "app")
    quiet = {"TINA4_SIDECAR_LOG_LEVEL": "warning"}
    try:
        if args.sidecars == 1:
            sidecar = start_sidecar(app.port, work / "s1", env=quiet)
            try:
                rows = asyncio.run(measure(app.port, [sidecar.port], args.requests, str(time.time())))
            finally:
                sidecar.stop()
        else:
            with serving(redis_server()) as redis:
                env: dict[str, str | None] = {
                    **quiet,
                    "TINA4_CACHE_BACKEND": "redis",
                    "TINA4_CACHE_URL": server_url(redis),
                }
                pair = [start_sidecar(app.port, work / f"s{i}", env=env) for i in (1, 2)]
                try:
                    rows = asyncio.run(
                        measure(app.port, [s.port for s in pair], args.requests, str(time.time()))
                    )
                finally:
                    for sidecar in pair:
                        sidecar.stop()
    finally:
        app.stop()
    store = "redis" if args.sidecars == 2 else "memory"
    print(f"\ncold-key stampede on /api/slow (the handler sleeps 100 ms); store: {store}")
    header = ("run", "requests", "app hits", "p50 ms", "p99 ms", "p50 vs app")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
