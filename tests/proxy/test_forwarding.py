"""Forwarding through the sidecar against a real aiohttp app: nothing changed, nothing lost."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from tina4_sidecar.config.rules import Rule

CACHED = Rule(method="GET", path="/cached/*", cache=True, ttl=60, source="test")


async def test_request_body_and_headers_reach_the_app_unchanged(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    routes = web.RouteTableDef()

    @routes.route("*", "/echo")
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "sha256": hashlib.sha256(body).hexdigest(),
                "headers": {k: v for k, v in request.headers.items()},
            }
        )

    proxy = await make_proxy([CACHED], routes)
    body = os.urandom(3 * 1024 * 1024)
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        async with client_session.request(
            method,
            proxy.url("/echo?x=1"),
            data=body,
            headers={"X-Custom": "kept", "Connection": "keep-alive, X-Hop", "X-Hop": "dropped"},
        ) as response:
            data = await response.json()
        assert data["method"] == method
        assert data["sha256"] == hashlib.sha256(body).hexdigest()
        assert data["headers"]["X-Custom"] == "kept"
        assert "X-Hop" not in data["headers"]
        assert data["headers"]["X-Forwarded-For"] == "127.0.0.1"
        assert data["headers"]["X-Forwarded-Proto"] == "http"
        assert data["headers"]["X-Forwarded-Host"] == f"127.0.0.1:{proxy.port}"
        assert data["headers"]["Content-Length"] == str(len(body))


async def test_chunked_request_bodies_are_streamed(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    routes = web.RouteTableDef()

    @routes.post("/upload")
    async def upload(request: web.Request) -> web.Response:
        return web.Response(text=hashlib.sha256(await request.read()).hexdigest())

    proxy = await make_proxy([], routes)
    parts = [os.urandom(100_000) for _ in range(20)]

    async def produce() -> Any:
        for part in parts:
            yield part

    async with client_session.post(proxy.url("/upload"), data=produce()) as response:
        assert await response.text() == hashlib.sha256(b"".join(parts)).hexdigest()


async def test_large_response_streams_and_response_headers_pass(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    payload = os.urandom(5 * 1024 * 1024)
    routes = web.RouteTableDef()

    @routes.get("/big")
    async def big(_: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"X-App": "1", "Set-Cookie": "a=1", "Keep-Alive": "timeout=9"})
        response.headers.add("Set-Cookie", "b=2")
        await response.prepare(_)
        for start in range(0, len(payload), 100_000):
            await response.write(payload[start : start + 100_000])
        await response.write_eof()
        return response

    proxy = await make_proxy([], routes)
    async with client_session.get(proxy.url("/big")) as response:
        assert await response.read() == payload
        assert response.headers["X-App"] == "1"
        assert response.headers.getall("Set-Cookie") == ["a=1", "b=2"]
        assert "Keep-Alive" not in response.headers


async def test_compressed_bodies_pass_untouched_and_vary_by_encoding(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    routes = web.RouteTableDef()
    plain = b'{"hello": "world"}' * 100

    @routes.get("/cached/data")
    async def data(request: web.Request) -> web.Response:
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            return web.Response(body=gzip.compress(plain), headers={"Content-Encoding": "gzip"})
        return web.Response(body=plain)

    proxy = await make_proxy([CACHED], routes)
    url = proxy.url("/cached/data")
    async with client_session.get(url, headers={"Accept-Encoding": "gzip"}) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(await response.read()) == plain
    async with client_session.get(url, headers={"Accept-Encoding": "identity"}) as response:
        # The app sent no Vary, but a gzip body must never reach a client that did not ask for it.
        assert "Content-Encoding" not in response.headers
        assert await response.read() == plain


async def test_the_apps_own_cache_headers_are_replaced_on_cached_routes(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    routes = web.RouteTableDef()

    @routes.get("/cached/own")
    async def own(_: web.Request) -> web.Response:
        return web.Response(
            text="x", headers={"X-Cache": "HIT", "X-Cache-TTL": "5", "Cache-Status": "inner; hit"}
        )

    proxy = await make_proxy([CACHED], routes)
    async with client_session.get(proxy.url("/cached/own")) as response:
        assert response.headers.getall("X-Cache") == ["MISS"]
        assert response.headers["X-Cache-TTL"] == "60"
        assert response.headers["Cache-Status"].startswith("inner; hit, tina4-sidecar; fwd=uri-miss")
    async with client_session.get(proxy.url("/cached/own")) as response:
        assert response.headers.getall("X-Cache") == ["HIT"]
        assert response.headers["Cache-Status"].startswith("inner; hit, tina4-sidecar; hit")


async def test_unsafe_request_invalidates_the_cached_url(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    routes = web.RouteTableDef()
    version = {"n": 0}

    @routes.get("/cached/item")
    async def read(_: web.Request) -> web.Response:
        return web.Response(text=f"v{version['n']}")

    @routes.put("/cached/item")
    async def write(_: web.Request) -> web.Response:
        version["n"] += 1
        return web.Response(status=204)

    proxy = await make_proxy([CACHED], routes)
    url = proxy.url("/cached/item")
    for _ in range(2):
        async with client_session.get(url) as response:
            assert await response.text() == "v0"
    async with client_session.put(url) as response:
        assert response.status == 204
    async with client_session.get(url) as response:
        assert (response.headers["X-Cache"], await response.text()) == ("MISS", "v1")


async def test_timeout_gives_504_and_oversized_responses_are_not_stored(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    routes = web.RouteTableDef()

    @routes.get("/cached/slow")
    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(3)
        return web.Response(text="late")

    @routes.get("/cached/huge")
    async def huge(_: web.Request) -> web.Response:
        return web.Response(body=b"x" * 2048)

    proxy = await make_proxy([CACHED], routes, upstream_timeout=0.5, max_object_bytes=1024)
    async with client_session.get(proxy.url("/cached/slow")) as response:
        assert response.status == 504
        assert (await response.json())["error"] == "upstream timed out"
    for _ in range(2):
        async with client_session.get(proxy.url("/cached/huge")) as response:
            assert len(await response.read()) == 2048
            assert response.headers["X-Cache"] == "MISS"
            assert "stored" not in response.headers["Cache-Status"]


async def test_a_body_that_breaks_off_is_not_stored_or_completed(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    routes = web.RouteTableDef()

    @routes.get("/cached/broken")
    async def broken(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "100000"})
        await response.prepare(request)
        await response.write(b"x" * 1000)
        assert request.transport is not None
        request.transport.close()
        return response

    proxy = await make_proxy([CACHED], routes)
    for _ in range(2):
        try:
            async with client_session.get(proxy.url("/cached/broken")) as response:
                assert response.headers["X-Cache"] == "MISS"
                await response.read()
            raise AssertionError("a truncated body was delivered as complete")
        except aiohttp.ClientPayloadError:
            pass
    assert sum(1 for r in proxy.seen if r.path == "/cached/broken") == 2


async def test_websocket_frames_are_relayed(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    routes = web.RouteTableDef()

    @routes.get("/ws")
    async def ws_echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("chat",))
        await ws.prepare(request)
        await ws.send_str(f"hello {request.headers.get('X-User', '?')}")
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str(message.data.upper())
            elif message.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(message.data[::-1])
        return ws

    proxy = await make_proxy([], routes)
    async with client_session.ws_connect(
        proxy.url("/ws"), protocols=("chat",), headers={"X-User": "ann"}
    ) as ws:
        assert ws.protocol == "chat"
        assert await ws.receive_str() == "hello ann"
        await ws.send_str("shout")
        assert await ws.receive_str() == "SHOUT"
        await ws.send_bytes(b"\x00\x01\x02")
        assert await ws.receive_bytes() == b"\x02\x01\x00"
