"""GETs that no cached rule covers, forwarded by the fast path on raw pooled connections.

Against a real aiohttp app (header rules) and a scripted raw-socket app (framings and failures
aiohttp would never produce): the slow path's header rewriting both ways, chunked and
close-delimited bodies, a reused connection that the app had closed, 502/504 answers, a body
that breaks off, a slow reader holding the app back, a client that leaves mid-body, and
pipelining across forwarded and cached requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.proxy.conftest import MANIFEST_PATH, manifest_app
from tests.proxy.test_fast_path import RULES, Listener, app_routes, get, raw_exchange, running
from tests.servers.process import free_port
from tina4_sidecar.config.rules import dump_manifest

Script = Callable[[str, int, asyncio.StreamWriter], Awaitable[bool]]
"""Answers one request: (path, request number on this connection, writer) -> keep the connection."""


class RawApp:
    """An app on a raw socket: the manifest from ``RULES``, everything else from ``script``."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.paths: list[str] = []
        self.server: asyncio.Server | None = None

    def make_url(self, path: str) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}{path}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode()
                if path == MANIFEST_PATH:
                    body = dump_manifest(RULES)
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                    continue
                number += 1
                self.paths.append(path)
                if not await self.script(path, number, writer):
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def raw_app_sidecar(script: Script, tmp: Path, **extra: Any) -> AsyncIterator[tuple[RawApp, Listener]]:
    app = RawApp(script)
    app.server = await asyncio.start_server(app.serve, "127.0.0.1", free_port())
    try:
        async with running(app, [], tmp, **extra) as listener:  # type: ignore[arg-type]
            yield app, listener
    finally:
        app.server.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    """One response, framed by Content-Length or chunked (the sidecar's two framings)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    headers = {n.strip().lower(): v.strip() for n, v in (line.split(":", 1) for line in lines)}
    if "content-length" in headers:
        return status, headers, await reader.readexactly(int(headers["content-length"]))
    assert headers.get("transfer-encoding") == "chunked", headers
    body = b""
    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
        body += await reader.readexactly(size)
        assert await reader.readexactly(2) == b"\r\n"
    assert await reader.readexactly(2) == b"\r\n"
    return status, headers, body


@contextlib.asynccontextmanager
async def connection(listener: Listener) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    try:
        yield reader, writer
    finally:
        writer.close()


async def test_headers_follow_the_slow_paths_rules_both_ways(
    aiohttp_server: Callable[..., Any], tmp_path: Path
) -> None:
    routes = app_routes([])

    @routes.get("/plain")
    async def plain(request: web.Request) -> web.Response:
        return web.json_response(dict(request.headers), headers={"X-App": "1"})

    upstream = await aiohttp_server(manifest_app(RULES, routes, []))
    async with running(upstream, [], tmp_path) as listener, connection(listener) as (reader, writer):
        writer.write(
            get(
                "/plain?a=1&b=%20",
                "Connection: keep-alive, X-Drop",
                "X-Drop: secret",
                "Keep-Alive: timeout=5",
                "X-Forwarded-For: 10.0.0.9",
                "X-Forwarded-Host: evil.example",
                "X-Forwarded-Proto: https",
                "X-Custom: kept",
            )
        )
        status, headers, body = await read_response(reader)
        assert listener.sidecar.origin is not None
        assert listener.sidecar.origin.idle == 1  # answered on the fast path's own pool
    seen = json.loads(body)
    assert status == "HTTP/1.1 200 OK"
    assert headers["x-app"] == "1"
    assert seen["X-Forwarded-For"] == "10.0.0.9, 127.0.0.1"
    assert seen["X-Forwarded-Host"] == "shop.example"
    assert seen["Host"] == "shop.example"
    assert seen["X-Forwarded-Proto"] == "http"
    assert seen["X-Custom"] == "kept"
    assert "X-Drop" not in seen
    assert "Keep-Alive" not in seen
    assert listener.sidecar.metrics.stats()["pass"] == 1


async def hop_by_hop_chunked_and_close_delimited(
    path: str, number: int, writer: asyncio.StreamWriter
) -> bool:
    if path == "/chunked":
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: X-Hop\r\nX-Hop: no\r\n"
            b"Keep-Alive: timeout=1\r\nX-End: yes\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        return True
    if path == "/until-close":
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it, ")
        await writer.drain()
        writer.write(b"until the close")
        return False
    writer.write(b"HTTP/1.1 204 No Content\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\n")
    return True


async def test_chunked_close_delimited_and_empty_bodies_relay_whole(tmp_path: Path) -> None:
    async with (
        raw_app_sidecar(hop_by_hop_chunked_and_close_delimited, tmp_path) as (app, listener),
        connection(listener) as (reader, writer),
    ):
        writer.write(get("/chunked") + get("/until-close") + get("/empty") + get("/chunked"))
        chunked = await read_response(reader)
        until_close = await read_response(reader)
        empty_head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        again = await read_response(reader)
    assert chunked[2] == again[2] == b"hello world"
    assert chunked[1]["x-end"] == "yes"
    assert "x-hop" not in chunked[1]
    assert "keep-alive" not in chunked[1]
    assert "date" in chunked[1]  # added: the app sent none
    assert until_close[2] == b"all of it, until the close"
    assert until_close[1]["transfer-encoding"] == "chunked"  # the client's connection stays open
    assert "connection" not in until_close[1]
    assert empty_head.startswith(b"HTTP/1.1 204 No Content\r\n")
    assert b"Thu, 01 Jan 2026" in empty_head
    assert b"Transfer-Encoding" not in empty_head
    assert app.paths == ["/chunked", "/until-close", "/empty", "/chunked"]


async def close_on_second_request(path: str, number: int, writer: asyncio.StreamWriter) -> bool:
    if number > 1:
        return False  # as an app closing an idle keep-alive connection just as it is reused
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(path), path.encode()))
    return True


async def test_a_reused_connection_the_app_closed_is_retried_once(tmp_path: Path) -> None:
    async with raw_app_sidecar(close_on_second_request, tmp_path) as (app, listener):
        answers = await raw_exchange(listener.port, get("/one") + get("/two") + get("/three"), 3)
    assert [body for _, _, body in answers] == [b"/one", b"/two", b"/three"]
    assert app.paths == ["/one", "/two", "/two", "/three", "/three"]


async def silent(path: str, number: int, writer: asyncio.StreamWriter) -> bool:
    if path == "/silent":
        await asyncio.sleep(5)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    return True


async def test_a_silent_app_gives_504_and_the_connection_goes_on(tmp_path: Path) -> None:
    async with (
        raw_app_sidecar(silent, tmp_path, upstream_timeout=0.5) as (_, listener),
        connection(listener) as (reader, writer),
    ):
        writer.write(get("/silent") + get("/fine"))
        timed_out = await read_response(reader)
        fine = await read_response(reader)
    assert timed_out[0] == "HTTP/1.1 504 Gateway Timeout"
    assert timed_out[1]["content-type"].startswith("application/json")
    assert json.loads(timed_out[2])["error"] == "upstream timed out"
    assert fine[2] == b"ok"
    assert listener.sidecar.metrics.stats()["errors"] == 1


async def test_an_app_that_is_down_gives_502_json(aiohttp_server: Callable[..., Any], tmp_path: Path) -> None:
    upstream = await aiohttp_server(manifest_app(RULES, app_routes([]), []))
    async with running(upstream, [], tmp_path) as listener:
        await upstream.close()
        [(status, _, body)] = await raw_exchange(listener.port, get("/gone"), 1)
    assert status == b"HTTP/1.1 502 Bad Gateway"
    assert json.loads(body) == {"error": "upstream unavailable", "status": 502}  # no address of the app


async def break_off(path: str, number: int, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly ten b")
    return False


async def test_a_body_that_breaks_off_closes_the_clients_connection(tmp_path: Path) -> None:
    async with (
        raw_app_sidecar(break_off, tmp_path) as (_, listener),
        connection(listener) as (reader, writer),
    ):
        writer.write(get("/partial"))
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        rest = await asyncio.wait_for(reader.read(), 10)  # returns at the close
    assert rest == b"only ten b"


BIG = 32 * 1024 * 1024


class Firehose:
    """Writes BIG bytes as fast as the sidecar takes them, counting what it took."""

    def __init__(self) -> None:
        self.written = 0
        self.closed = asyncio.Event()

    async def __call__(self, path: str, number: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG)
        block = b"x" * 65536
        try:
            while self.written < BIG:
                writer.write(block)
                await writer.drain()
                self.written += len(block)
        except ConnectionError:
            self.closed.set()
            return False
        return True


async def test_a_slow_reader_holds_the_app_back(tmp_path: Path) -> None:
    firehose = Firehose()
    async with raw_app_sidecar(firehose, tmp_path) as (_, listener):
        async with connection(listener) as (reader, writer):
            writer.write(get("/big"))
            await asyncio.sleep(1.5)  # not reading: the sidecar must stop reading from the app
            held_back = firehose.written
            _, headers, body = await read_response(reader)
        assert held_back < BIG // 2, held_back
        assert len(body) == BIG
        assert headers["content-length"] == str(BIG)

        # A client that leaves mid-body: the app's connection is closed, not pooled.
        firehose.written = 0
        async with connection(listener) as (reader, writer):
            writer.write(get("/big"))
            await reader.readexactly(100_000)
        await asyncio.wait_for(firehose.closed.wait(), 10)
        assert listener.sidecar.origin is not None
        assert listener.sidecar.origin.idle == 0  # the one connection was closed, not pooled again


async def test_forwarded_and_cached_requests_pipeline_in_order(
    aiohttp_server: Callable[..., Any], tmp_path: Path
) -> None:
    calls: list[str] = []
    routes = app_routes(calls)

    @routes.get("/plain/{n}")
    async def plain(request: web.Request) -> web.Response:
        return web.Response(text=f"plain {request.match_info['n']}")

    upstream = await aiohttp_server(manifest_app(RULES, routes, []))
    async with running(upstream, calls, tmp_path) as listener:
        async with (
            aiohttp.ClientSession() as session,
            session.get(listener.url("/hit/a"), headers={"Host": "shop.example"}) as response,
        ):
            assert response.headers["X-Cache"] == "MISS"
        payload = get("/plain/1") + get("/hit/a") + get("/plain/2") + get("/hit/a") + get("/plain/3")
        answers = await raw_exchange(listener.port, payload, 5)
    assert [body for _, _, body in answers] == [
        b"plain 1",
        b"body of a #1",
        b"plain 2",
        b"body of a #1",
        b"plain 3",
    ]
    assert [headers.get("x-cache") for _, headers, _ in answers] == [None, "HIT", None, "HIT", None]
    assert listener.sidecar.metrics.fast_hits == 2


@pytest.mark.parametrize(
    "header", ["Content-Length: 3", "Transfer-Encoding: chunked", "Upgrade: h2c", "Expect: 100-continue"]
)
async def test_requests_that_need_aiohttp_still_get_there(
    aiohttp_server: Callable[..., Any], tmp_path: Path, header: str
) -> None:
    routes = app_routes([])

    @routes.get("/plain")
    async def plain(request: web.Request) -> web.Response:
        return web.Response(text="plain")

    upstream = await aiohttp_server(manifest_app(RULES, routes, []))
    async with running(upstream, [], tmp_path) as listener:
        body = (
            b"abc"
            if header.startswith("Content")
            else b"3\r\nabc\r\n0\r\n\r\n"
            if "chunked" in header
            else b""
        )
        answers = await raw_exchange(listener.port, get("/plain", header) + body, 1)
        assert listener.sidecar.origin is not None
        assert listener.sidecar.origin.idle == 0  # aiohttp's client forwarded it
    assert answers[0][2] == b"plain"


async def early_hints_first(path: str, number: int, writer: asyncio.StreamWriter) -> bool:
    writer.write(
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Final: %d\r\n\r\nok" % number
    )
    return True


async def test_interim_responses_are_not_relayed_and_the_final_one_is_whole(tmp_path: Path) -> None:
    async with (
        raw_app_sidecar(early_hints_first, tmp_path) as (_, listener),
        connection(listener) as (reader, writer),
    ):
        writer.write(get("/hinted") + get("/hinted"))
        first = await read_response(reader)
        second = await read_response(reader)
    assert first[0] == second[0] == "HTTP/1.1 200 OK"
    assert (first[1]["x-final"], second[1]["x-final"]) == ("1", "2")
    assert "link" not in first[1]  # the interim response's headers never mix into the final one
    assert first[2] == second[2] == b"ok"
