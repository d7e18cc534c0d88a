"""Single-flight: concurrent misses for one key reach the app once, within one sidecar and across
sidecars sharing a store; uncacheable answers are never shared with waiters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.servers.process import ServerProcess
from tests.servers.redis import redis_server, server_url, serving
from tina4_sidecar.config.rules import Rule

SLOW = Rule(method="GET", path="/slow/*", cache=True, ttl=60, source="test")


def slow_routes(calls: list[str], delay: float = 0.1) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.get("/slow/{what}")
    async def slow(request: web.Request) -> web.Response:
        calls.append(request.match_info["what"])
        number = len(calls)
        await asyncio.sleep(delay)
        what = request.match_info["what"]
        if what == "cookie":
            return web.Response(text=f"secret {number}", headers={"Set-Cookie": f"s={number}"})
        if what == "private":
            return web.Response(text=f"mine {number}", headers={"Cache-Control": "private"})
        if what == "big":
            return web.Response(body=b"x" * 5000)
        return web.Response(text=f"shared body {number}", headers={"Content-Type": "text/plain"})

    return routes


async def fetch_all(
    session: aiohttp.ClientSession, urls: list[str], host: str | None = None
) -> list[tuple[int, str, dict[str, str]]]:
    async def one(url: str) -> tuple[int, str, dict[str, str]]:
        async with session.get(url, headers={"Host": host} if host else None) as response:
            return response.status, await response.text(), dict(response.headers)

    return await asyncio.gather(*(one(url) for url in urls))


@pytest.fixture(scope="module")
def redis() -> Iterator[ServerProcess]:
    with serving(redis_server()) as server:
        yield server


async def test_200_concurrent_cold_requests_reach_the_app_once(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    calls: list[str] = []
    proxy = await make_proxy([SLOW], slow_routes(calls))
    replies = await fetch_all(client_session, [proxy.url("/slow/a")] * 200)
    assert calls == ["a"]
    assert {body for _, body, _ in replies} == {"shared body 1"}
    assert all(status == 200 for status, _, _ in replies)
    # One fetched; every other request waited for it, or came after it and was a HIT.
    fetched = [h for _, _, h in replies if "stored" in h["Cache-Status"]]
    collapsed = [h for _, _, h in replies if "collapsed" in h["Cache-Status"]]
    hits = [h for _, _, h in replies if h["X-Cache"] == "HIT"]
    assert (len(fetched), len(collapsed) + len(hits)) == (1, 199)
    assert len(collapsed) > 0
    assert all(h["X-Cache"] == "MISS" for h in collapsed)
    assert proxy.sidecar.metrics.coalesced == len(collapsed)
    assert proxy.sidecar.metrics.origin_fetches == 1


async def test_two_sidecars_on_one_redis_ask_the_app_at_most_once(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession, redis: ServerProcess
) -> None:
    calls: list[str] = []
    cache = {"cache_backend": "redis", "cache_url": server_url(redis), "cache_namespace": "tina4:coalesce"}
    first = await make_proxy([SLOW], slow_routes(calls, delay=0.3), cache=cache)
    second = await make_proxy([SLOW], upstream_of=first, cache=cache)
    urls = [first.url("/slow/b"), second.url("/slow/b")] * 100
    # Behind one load balancer both sidecars see the same Host, so the same cache key.
    replies = await fetch_all(client_session, urls, host="shop.example")
    assert calls == ["b"]
    assert {body for _, body, _ in replies} == {"shared body 1"}


@pytest.mark.parametrize("what", ["cookie", "private"])
async def test_private_answers_are_never_shared_with_waiters(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession, what: str
) -> None:
    calls: list[str] = []
    proxy = await make_proxy([SLOW], slow_routes(calls))
    replies = await fetch_all(client_session, [proxy.url(f"/slow/{what}")] * 10)
    bodies = [body for _, body, _ in replies]
    assert len(set(bodies)) == len(bodies) == 10  # each client got its own answer from the app
    assert len(calls) == 10
    if what == "cookie":
        cookies = {headers["Set-Cookie"] for _, _, headers in replies}
        assert len(cookies) == 10


async def test_an_uncacheable_answer_leaves_a_hit_for_miss_marker(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    calls: list[str] = []
    proxy = await make_proxy([SLOW], slow_routes(calls), max_object_bytes=1000)
    await fetch_all(client_session, [proxy.url("/slow/big")])
    # Later concurrent requests do not queue behind one fetch: each goes to the app at once.
    replies = await fetch_all(client_session, [proxy.url("/slow/big")] * 5)
    assert len(calls) == 6
    assert proxy.sidecar.metrics.coalesced == 0
    assert all(len(body) == 5000 for _, body, _ in replies)


async def test_the_fetch_outlives_a_leader_that_went_away(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    calls: list[str] = []
    proxy = await make_proxy([SLOW], slow_routes(calls, delay=0.3))
    leader = asyncio.create_task(fetch_all(client_session, [proxy.url("/slow/c")]))
    await asyncio.sleep(0.05)
    waiter = asyncio.create_task(fetch_all(client_session, [proxy.url("/slow/c")]))
    await asyncio.sleep(0.05)
    leader.cancel()  # the first client hangs up while the app is still working
    [(status, body, headers)] = await waiter
    assert (status, body) == (200, "shared body 1")
    assert calls == ["c"]
    [(_, again, headers)] = await fetch_all(client_session, [proxy.url("/slow/c")])
    assert again == "shared body 1"
    assert headers["X-Cache"] == "HIT"
