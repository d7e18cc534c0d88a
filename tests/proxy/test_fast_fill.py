"""Cacheable misses filled on the fast path: one fetch for many waiters, the exact bytes stored, a
fill that outlives its client, chunked answers re-framed, failures shared with the waiters, and
the connection staying on the fast path afterwards."""

from __future__ import annotations

import asyncio
import gzip
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDict

from tests.proxy.conftest import manifest_app
from tests.proxy.test_fast_forward import connection, read_response
from tests.proxy.test_fast_path import RULES, get, running
from tests.servers.redis import redis_server, server_url, serving
from tina4_sidecar.proxy.http.entry import Entry
from tina4_sidecar.proxy.http.request_head import RequestHead
from tina4_sidecar.proxy.sidecar import Sidecar

BINARY = os.urandom(40_000)


def routes(calls: list[str], gate: asyncio.Event) -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.get("/hit/{name}")
    async def hit(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        calls.append(name)
        if name.startswith("slow"):
            await gate.wait()
        if name.startswith("vary"):
            encoded = "gzip" in request.headers.get("Accept-Encoding", "")
            headers = {"Vary": "Accept-Encoding", **({"Content-Encoding": "gzip"} if encoded else {})}
            body = gzip.compress(BINARY) if encoded else BINARY
            return web.Response(body=body, content_type="application/octet-stream", headers=headers)
        if name.startswith("chunked"):
            response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            for start in range(0, len(BINARY), 7000):
                await response.write(BINARY[start : start + 7000])
            await response.write_eof()
            return response
        return web.Response(body=BINARY, content_type="application/octet-stream", headers={"X-App": "1"})

    return table


def key_of(sidecar: Sidecar, path: str) -> str:
    """The primary key of ``get(path)``'s request (Host: shop.example)."""
    return sidecar.key_for(RequestHead("GET", "http", "shop.example", path, path, "", CIMultiDict()))


async def one(port: int, path: str) -> tuple[str, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(get(path))
        return await asyncio.wait_for(read_response(reader), 20)
    finally:
        writer.close()


async def test_a_fill_coalesces_100_requests_into_one_fetch_and_stores_the_exact_bytes(
    aiohttp_server: Callable[..., Any], tmp_path: Path
) -> None:
    calls: list[str] = []
    gate = asyncio.Event()
    upstream = await aiohttp_server(manifest_app(RULES, routes(calls, gate), []))
    async with running(upstream, calls, tmp_path) as listener:
        waiting = [asyncio.create_task(one(listener.port, "/hit/slow-1")) for _ in range(100)]
        for _ in range(1000):  # every other request waits on the one fetch
            if listener.sidecar.metrics.coalesced == 99:
                break
            await asyncio.sleep(0.01)
        gate.set()
        answers = await asyncio.gather(*waiting)

        assert calls == ["slow-1"]  # one origin call
        assert [body for _, _, body in answers] == [BINARY] * 100
        statuses = sorted(headers["cache-status"] for _, headers, _ in answers)
        assert statuses.count("tina4-sidecar; fwd=uri-miss; fwd-status=200; stored") == 1
        assert statuses.count("tina4-sidecar; fwd=uri-miss; fwd-status=200; collapsed") == 99
        stored = await listener.sidecar.store.get(key_of(listener.sidecar, "/hit/slow-1"))
        assert stored is not None
        assert Entry.decode(stored).body == BINARY


async def test_the_stored_entry_is_the_apps_bytes_and_the_connection_stays_fast(
    aiohttp_server: Callable[..., Any], tmp_path: Path
) -> None:
    calls: list[str] = []
    upstream = await aiohttp_server(manifest_app(RULES, routes(calls, asyncio.Event()), []))
    async with running(upstream, calls, tmp_path) as listener, connection(listener) as (reader, writer):
        answers = []
        for _ in range(3):
            writer.write(get("/hit/plain"))
            answers.append(await read_response(reader))
        sidecar = listener.sidecar
        stored = await sidecar.store.get(next(iter(sidecar.near._entries)))

        assert [headers["x-cache"] for _, headers, _ in answers] == ["MISS", "HIT", "HIT"]
        assert [body for _, _, body in answers] == [BINARY] * 3
        assert stored is not None
        assert Entry.decode(stored).body == BINARY
        assert sidecar.metrics.fast_hits == 2  # the HITs after the fill: still the fast path
        assert not sidecar.fast_connections or len(sidecar.fast_connections) == 1


async def test_a_varying_answer_never_reaches_the_near_cache_so_each_variant_gets_its_own(
    aiohttp_server: Callable[..., Any], tmp_path: Path
) -> None:
    calls: list[str] = []
    upstream = await aiohttp_server(manifest_app(RULES, routes(calls, asyncio.Event()), []))
    async with running(upstream, calls, tmp_path) as listener, connection(listener) as (reader, writer):
        near = listener.sidecar.near
        put, offered = near.put, []

        def recording_put(key: str, entry: Entry, generation: int | None = None) -> Any:
            offered.append(entry.vary)  # even a copy dropped a moment later could answer someone
            return put(key, entry, generation)

        near.put = recording_put  # type: ignore[method-assign]
        writer.write(get("/hit/vary-1", "Accept-Encoding: gzip"))
        gzipped = await read_response(reader)
        writer.write(get("/hit/vary-1"))
        plain = await read_response(reader)
        writer.write(get("/hit/vary-1", "Accept-Encoding: gzip"))
        again = await read_response(reader)

    assert not [vary for vary in offered if vary]
    assert gzipped[1]["content-encoding"] == "gzip"
    assert "content-encoding" not in plain[1]
    assert plain[2] == BINARY
    assert (again[1]["x-cache"], gzip.decompress(again[2])) == ("HIT", BINARY)
    assert calls == ["vary-1", "vary-1"]  # one fetch per variant


async def test_a_chunked_answer_is_stored_and_replayed_with_its_length(
    aiohttp_server: Callable[..., Any], tmp_path: Path
) -> None:
    calls: list[str] = []
    upstream = await aiohttp_server(manifest_app(RULES, routes(calls, asyncio.Event()), []))
    async with running(upstream, calls, tmp_path) as listener:
        miss = await one(listener.port, "/hit/chunked-1")
        hit = await one(listener.port, "/hit/chunked-1")

    assert miss[1]["transfer-encoding"] == "chunked"
    assert (miss[2], hit[2]) == (BINARY, BINARY)
    assert hit[1]["x-cache"] == "HIT"
    assert hit[1]["content-length"] == str(len(BINARY))
    assert calls == ["chunked-1"]


async def test_a_fill_outlives_a_client_that_leaves(
    aiohttp_server: Callable[..., Any], tmp_path: Path
) -> None:
    calls: list[str] = []
    gate = asyncio.Event()
    upstream = await aiohttp_server(manifest_app(RULES, routes(calls, gate), []))
    async with running(upstream, calls, tmp_path) as listener:
        _, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(get("/hit/slow-gone"))
        await writer.drain()
        for _ in range(500):
            if calls:
                break
            await asyncio.sleep(0.01)
        writer.close()  # the client leaves while the app is still answering
        await asyncio.sleep(0.05)
        gate.set()
        key = key_of(listener.sidecar, "/hit/slow-gone")
        for _ in range(200):
            if not listener.sidecar.flights.in_flight(key):
                break
            await asyncio.sleep(0.01)
        after = await one(listener.port, "/hit/slow-gone")

    assert after[1]["x-cache"] == "HIT"
    assert after[2] == BINARY
    assert calls == ["slow-gone"]


async def test_an_app_that_is_down_is_a_502_for_the_leader_and_its_waiters(
    aiohttp_server: Callable[..., Any], tmp_path: Path
) -> None:
    calls: list[str] = []
    upstream = await aiohttp_server(manifest_app(RULES, routes(calls, asyncio.Event()), []))
    async with running(upstream, calls, tmp_path) as listener:
        await upstream.close()
        answers = await asyncio.gather(*(one(listener.port, "/hit/gone") for _ in range(5)))

    assert {status for status, _, _ in answers} == {"HTTP/1.1 502 Bad Gateway"}


@pytest.mark.backend
async def test_a_network_store_is_written_behind_the_response(
    aiohttp_server: Callable[..., Any], tmp_path: Path
) -> None:
    calls: list[str] = []
    upstream = await aiohttp_server(manifest_app(RULES, routes(calls, asyncio.Event()), []))
    with serving(redis_server()) as redis:
        cache = {"cache_backend": "redis", "cache_url": server_url(redis), "cache_namespace": "tina4:fill"}
        async with running(upstream, calls, tmp_path, cache=cache) as listener:
            miss = await one(listener.port, "/hit/behind")
            hit = await one(listener.port, "/hit/behind")
            store = listener.sidecar.store
            for _ in range(100):
                keys = await store.size()
                if keys:
                    break
                await asyncio.sleep(0.02)

    assert (miss[1]["x-cache"], hit[1]["x-cache"]) == ("MISS", "HIT")
    assert hit[2] == BINARY
    assert calls == ["behind"]
    assert keys >= 1
