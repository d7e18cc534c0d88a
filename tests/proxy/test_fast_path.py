"""The HIT fast path, through a real listener: exact replays, pipelining, hand-off to aiohttp in
the middle of a connection, malformed and smuggling-shaped input, and purges seen by the near cache."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.proxy.conftest import manifest_app
from tests.servers.process import free_port
from tests.servers.redis import redis_server, server_url, serving
from tina4_sidecar.config import CacheSettings, SidecarSettings
from tina4_sidecar.config.rules import Rule
from tina4_sidecar.proxy.server import listen, start_sidecar, stop_sidecar
from tina4_sidecar.proxy.sidecar import Sidecar
from tina4_sidecar.store.factory import open_store
from tina4_sidecar.store.response_purge import purge_route

RULES = [Rule(method="GET", path="/hit/*", cache=True, ttl=60, source="test")]


def app_routes(calls: list[str]) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.get("/hit/{name}")
    async def hit(request: web.Request) -> web.Response:
        calls.append(request.match_info["name"])
        return web.Response(
            text=f"body of {request.match_info['name']} #{len(calls)}",
            headers={"X-App": "yes", "Set-Thing": "a"},
        )

    @routes.post("/echo")
    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=b"echo:" + await request.read())

    return routes


@dataclass
class Listener:
    port: int
    calls: list[str]
    sidecar: Sidecar

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextlib.asynccontextmanager
async def running(upstream: TestServer, calls: list[str], tmp: Path, **extra: Any) -> AsyncIterator[Listener]:
    """The sidecar's own listener (``listen``, as ``serve`` uses it) on a free port."""
    port = free_port()
    cache = {"cache_namespace": f"tina4:fast{uuid.uuid4().hex[:8]}", **extra.pop("cache", {})}
    settings = SidecarSettings(
        upstream=str(upstream.make_url("")).rstrip("/"),
        listen=f"127.0.0.1:{port}",
        manifest_refresh=60,
        **extra,
    )
    sidecar = await start_sidecar(settings, CacheSettings(cache_dir=tmp / "cache", **cache))
    listening = await listen(sidecar)
    try:
        yield Listener(port, calls, sidecar)
    finally:
        await listening.close()
        await stop_sidecar(sidecar)


@pytest.fixture
async def fast(aiohttp_server: Callable[..., Any], tmp_path: Path) -> AsyncIterator[Listener]:
    calls: list[str] = []
    upstream = await aiohttp_server(manifest_app(RULES, app_routes(calls), []))
    async with running(upstream, calls, tmp_path) as listener:
        yield listener


async def raw_exchange(
    port: int, payload: bytes, responses: int
) -> list[tuple[bytes, dict[str, str], bytes]]:
    """Send ``payload`` in one write; read ``responses`` HTTP responses (Content-Length framed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    out = []
    try:
        for _ in range(responses):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            status, *lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            body = b""
            if "content-length" in headers and not payload_is_head(payload, len(out)):
                body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 5)
            out.append((status.encode(), headers, body))
    finally:
        writer.close()
    return out


def payload_is_head(payload: bytes, index: int) -> bool:
    requests = [part for part in payload.split(b"\r\n\r\n") if part.startswith((b"GET", b"HEAD", b"POST"))]
    return index < len(requests) and requests[index].startswith(b"HEAD")


def get(path: str, *extra: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: shop.example", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def warm(listener: Listener, path: str) -> None:
    headers = {"Host": "shop.example"}  # the raw requests' Host: the same cache key
    async with (
        aiohttp.ClientSession() as session,
        session.get(listener.url(path), headers=headers) as response,
    ):
        assert response.headers["X-Cache"] == "MISS"
        await response.read()


async def test_hits_come_from_the_fast_path_with_exact_headers_and_body(fast: Listener) -> None:
    [miss] = await raw_exchange(fast.port, get("/hit/a"), 1)
    [hit] = await raw_exchange(fast.port, get("/hit/a"), 1)
    assert miss[1]["x-cache"] == "MISS"
    assert hit[1]["x-cache"] == "HIT"
    assert hit[2] == miss[2] == b"body of a #1"
    assert fast.sidecar.metrics.fast_hits == 1
    for name in ("x-app", "set-thing", "content-type"):
        assert hit[1][name] == miss[1][name]
    assert hit[1]["etag"].startswith('"')  # generated from the body when it was stored
    assert hit[1]["cache-status"].startswith("tina4-sidecar; hit; ttl=")
    assert int(hit[1]["x-cache-ttl"]) in (59, 60)
    assert fast.calls == ["a"]


async def test_pipelined_hits_are_answered_in_order(fast: Listener) -> None:
    for name in ("p1", "p2", "p3"):
        await warm(fast, f"/hit/{name}")
    replies = await raw_exchange(fast.port, get("/hit/p1") + get("/hit/p2") + get("/hit/p3"), 3)
    assert [body for _, _, body in replies] == [b"body of p1 #1", b"body of p2 #2", b"body of p3 #3"]
    assert all(headers["x-cache"] == "HIT" for _, headers, _ in replies)
    assert fast.sidecar.metrics.fast_hits == 3


async def test_a_request_with_a_body_hands_the_connection_over_mid_pipeline(fast: Listener) -> None:
    await warm(fast, "/hit/h")
    post = b"POST /echo HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 5\r\n\r\nhello"
    replies = await raw_exchange(fast.port, get("/hit/h") + post + get("/hit/h") + get("/hit/other"), 4)
    assert [body for _, _, body in replies] == [
        b"body of h #1",
        b"echo:hello",
        b"body of h #1",
        b"body of other #2",
    ]
    assert [h.get("x-cache") for _, h, _ in replies] == ["HIT", None, "HIT", "MISS"]
    assert fast.sidecar.metrics.fast_hits == 1  # the first; aiohttp answered everything after the POST


async def test_head_is_answered_with_headers_only(fast: Listener) -> None:
    await warm(fast, "/hit/head")
    payload = b"HEAD /hit/head HTTP/1.1\r\nHost: shop.example\r\n\r\n" + get("/hit/head")
    head, full = await raw_exchange(fast.port, payload, 2)
    assert head[1]["x-cache"] == "HIT"
    assert head[2] == b""
    assert int(head[1]["content-length"]) == len(full[2]) == len(b"body of head #1")
    assert fast.sidecar.metrics.fast_hits == 2


@pytest.mark.parametrize(
    "payload",
    [
        # Content-Length and Transfer-Encoding together (request smuggling): aiohttp refuses it.
        b"GET /hit/s HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /hit/s HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy",
        b"GET /hit/s HTTP/1.1\r\nHost : a\r\n\r\n",
        b"GET /hit/s\x00 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GARBAGE\r\n\r\n",
        b"GET /hit/" + b"x" * 20000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
    ],
)
async def test_malformed_and_smuggling_input_gets_a_clean_4xx(fast: Listener, payload: bytes) -> None:
    await warm(fast, "/hit/s")
    [(status, _, _)] = await raw_exchange(fast.port, payload, 1)
    assert status.split()[1].startswith(b"4"), status


async def test_requests_with_credentials_or_validators_take_the_slow_path(fast: Listener) -> None:
    await warm(fast, "/hit/c")
    with_cookie, with_validator = await raw_exchange(
        fast.port, get("/hit/c", "Cookie: s=1") + get("/hit/c", 'If-None-Match: "nope"'), 2
    )
    assert with_cookie[1]["x-cache"] == "MISS"
    assert "fwd=bypass" in with_cookie[1]["cache-status"]
    assert with_validator[1]["x-cache"] == "HIT"
    assert fast.sidecar.metrics.fast_hits == 0


async def test_a_purge_through_the_admin_api_empties_the_near_cache(
    aiohttp_server: Callable[..., Any], tmp_path: Path
) -> None:
    calls: list[str] = []
    upstream = await aiohttp_server(manifest_app(RULES, app_routes(calls), []))
    token = "t" * 24
    async with running(upstream, calls, tmp_path, admin_token=token) as listener:
        await warm(listener, "/hit/purge")
        [hit] = await raw_exchange(listener.port, get("/hit/purge"), 1)
        assert hit[1]["x-cache"] == "HIT"
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                listener.url("/__sidecar/purge"),
                json={"route": "/hit/purge"},
                headers={"Authorization": f"Bearer {token}"},
            ) as response,
        ):
            assert response.status == 200
        [after] = await raw_exchange(listener.port, get("/hit/purge"), 1)
        assert after[1]["x-cache"] == "MISS"


@pytest.mark.parametrize("recheck", [0.0, 0.3])
async def test_another_processs_purge_is_seen_within_the_recheck_bound(
    aiohttp_server: Callable[..., Any], tmp_path: Path, recheck: float
) -> None:
    """Within the recheck bound, or the pub/sub delivery time when sooner (push is on with Redis)."""
    calls: list[str] = []
    upstream = await aiohttp_server(manifest_app(RULES, app_routes(calls), []))
    with serving(redis_server()) as redis:
        cache = {"cache_backend": "redis", "cache_url": server_url(redis), "cache_namespace": "tina4:fast"}
        async with running(upstream, calls, tmp_path, cache=cache, near_cache_recheck=recheck) as listener:
            await warm(listener, "/hit/r")
            assert (await raw_exchange(listener.port, get("/hit/r"), 1))[0][1]["x-cache"] == "HIT"
            # The app (another process, here another store object) purges through the shared store.
            other = await open_store(CacheSettings(**cache, cache_dir=tmp_path / "other"), "resp")
            try:
                assert await purge_route(other, "/hit/r")
            finally:
                await other.close()
            # With push (Redis's default) the purge arrives by pub/sub: milliseconds, bounded below.
            bound = min(recheck, 0.5 + listener.sidecar.cache_settings.cache_timeout) + 0.5
            deadline = time.monotonic() + bound
            while (await raw_exchange(listener.port, get("/hit/r"), 1))[0][1]["x-cache"] != "MISS":
                assert time.monotonic() < deadline, f"still a HIT {bound}s after the purge"
                await asyncio.sleep(0.01)
