"""Issue 5 against the real Tina4 demo app and real sidecar processes: one app request for a
stampede (also across two sidecars on one Redis), stale answers while the app is down, and a
20 MB body above the object limit streamed through without being held in memory."""

from __future__ import annotations

import asyncio
import json
import random
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.test_sidecar_e2e import get
from tests.servers.demo_app import start_demo_app
from tests.servers.process import ServerProcess
from tests.servers.redis import redis_server, server_url, serving
from tests.servers.sidecar import start_sidecar


def app_calls(app_port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{app_port}/api/calls", timeout=5) as reply:
        calls: dict[str, int] = json.loads(reply.read())
        return calls


@contextmanager
def started(server: ServerProcess) -> Iterator[ServerProcess]:
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def stack_of(
    workdir: Path, sidecar_env: dict[str, str | None] | None = None, app_env: dict[str, str] | None = None
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """The demo app and a sidecar in front of it, both stopped afterwards whatever happens."""
    with (
        started(start_demo_app(workdir / "app", env=app_env)) as app,
        started(start_sidecar(app.port, workdir / "sidecar", env=sidecar_env)) as sidecar,
    ):
        yield app, sidecar


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


async def stampede(urls: list[str], host: str) -> list[bytes]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(url: str) -> bytes:
            async with http.get(url, headers={"Host": host}) as response:
                assert response.status == 200
                return await response.read()

        return await asyncio.gather(*(one(url) for url in urls))


@pytest.fixture
def redis() -> Iterator[ServerProcess]:
    with serving(redis_server()) as server:
        yield server


async def test_a_200_request_stampede_reaches_the_app_once(tmp_path: Path) -> None:
    with stack_of(tmp_path) as (app, sidecar):
        before = app_calls(app.port).get("slow", 0)
        bodies = await stampede([f"http://127.0.0.1:{sidecar.port}/api/slow?t=stampede"] * 200, "demo.local")
        assert app_calls(app.port).get("slow", 0) - before == 1
        assert len(set(bodies)) == 1


async def test_two_sidecars_on_one_redis_send_one_request_to_the_app(
    tmp_path: Path, redis: ServerProcess
) -> None:
    env: dict[str, str | None] = {"TINA4_CACHE_BACKEND": "redis", "TINA4_CACHE_URL": server_url(redis)}
    with (
        stack_of(tmp_path / "one", env) as (app, first),
        started(start_sidecar(app.port, tmp_path / "two", env=env)) as second,
    ):
        before = app_calls(app.port).get("slow", 0)
        urls = [f"http://127.0.0.1:{s.port}/api/slow?t=cluster" for s in (first, second)] * 100
        bodies = await stampede(urls, "demo.local")
        assert app_calls(app.port).get("slow", 0) - before <= 1
        assert len(set(bodies)) == 1


async def test_stale_if_error_while_the_app_is_down(tmp_path: Path) -> None:
    app = start_demo_app(tmp_path / "app", env={"TINA4_CACHE_TTL": "1"})  # /api/b: TTL 1 s
    sidecar = start_sidecar(app.port, tmp_path, env={"TINA4_SIDECAR_STALE_IF_ERROR": "30"})
    url = f"http://127.0.0.1:{sidecar.port}"
    try:
        async with aiohttp.ClientSession() as http:
            warm = await get(http, f"{url}/api/b?t=down")
            assert warm.x_cache == "MISS"
            app.stop()
            await asyncio.sleep(1.2)
            stale = await get(http, f"{url}/api/b?t=down")
            assert (stale.status, stale.x_cache, stale.body) == (200, "STALE", warm.body)
            assert "fwd=stale" in stale.headers["Cache-Status"]
            assert "ttl=-" in stale.headers["Cache-Status"]
            assert (await get(http, f"{url}/api/time")).status == 502
            app.start()
            fresh = await get(http, f"{url}/api/b?t=down")
            assert (fresh.status, fresh.x_cache) == (200, "MISS")
            assert fresh.body != warm.body  # a new generated_at: the handler ran again
    finally:
        sidecar.stop()
        app.stop()


async def test_a_20_mb_body_above_the_limit_streams_through_unstored(tmp_path: Path) -> None:
    app = start_demo_app(tmp_path / "app")
    sidecar = start_sidecar(
        app.port,
        tmp_path,
        env={"TINA4_SIDECAR_MAX_OBJECT_BYTES": str(1024 * 1024), "TINA4_SIDECAR_LOG_LEVEL": "info"},
    )
    assert sidecar.proc is not None
    expected = random.Random(7).randbytes(20 * 1024 * 1024)
    try:
        rss_before = rss_kib(sidecar.proc.pid, "VmRSS")
        async with aiohttp.ClientSession() as http:
            for _ in range(3):
                async with http.get(f"http://127.0.0.1:{sidecar.port}/api/big?mb=20&seed=7") as response:
                    assert response.headers["X-Cache"] == "MISS"
                    assert "stored" not in response.headers["Cache-Status"]
                    received = 0
                    async for chunk in response.content.iter_chunked(1 << 20):
                        assert chunk == expected[received : received + len(chunk)]
                        received += len(chunk)
                    assert received == len(expected)
        peak = rss_kib(sidecar.proc.pid, "VmHWM")
        # Holding one 20 MB body (let alone three) would raise the peak by 20 MB or more.
        assert peak - rss_before < 12 * 1024, f"peak RSS grew by {(peak - rss_before) // 1024} MiB"
    finally:
        sidecar.stop()
        app.stop()
