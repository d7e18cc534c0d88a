"""RFC 5861 through the sidecar: stale-while-revalidate and stale-if-error, per rule and per response."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from tina4_sidecar.config.rules import Rule


class App:
    """A real aiohttp app whose answers the test switches: a version counter and a failure mode."""

    def __init__(self, delay: float = 0.0) -> None:
        self.version = 1
        self.calls = 0
        self.failing: int | None = None  # answer this status instead
        self.routes = web.RouteTableDef()

        @self.routes.get("/page/{name}")
        async def page(request: web.Request) -> web.Response:
            self.calls += 1
            await asyncio.sleep(delay)
            if self.failing is not None:
                return web.Response(status=self.failing, text="broken")
            cache_control = request.query.get("cc")
            headers = {"Cache-Control": cache_control} if cache_control else {}
            return web.Response(text=f"v{self.version}", headers=headers)


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str, str, str]:
    async with session.get(url) as response:
        return (
            response.status,
            await response.text(),
            response.headers.get("X-Cache", ""),
            response.headers.get("Cache-Status", ""),
        )


async def test_stale_while_revalidate_serves_at_once_and_refreshes_once(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    app = App()
    rule = Rule(method="GET", path="/page/*", cache=True, ttl=1, stale_while_revalidate=30, source="test")
    proxy = await make_proxy([rule], app.routes, early_refresh_beta=0)
    url = proxy.url("/page/swr")
    assert (await get(client_session, url))[1:3] == ("v1", "MISS")
    app.version = 2
    await asyncio.sleep(1.2)
    replies = await asyncio.gather(*(get(client_session, url) for _ in range(20)))
    assert {body for _, body, _, _ in replies} == {"v1"}  # served stale, immediately
    assert all(x_cache == "STALE" for _, _, x_cache, _ in replies)  # an expired entry is never a HIT
    assert all("; hit; ttl=-" in status for _, _, _, status in replies)
    await asyncio.sleep(0.2)
    assert app.calls == 2  # exactly one background refresh for 20 stale hits
    assert (await get(client_session, url))[1:3] == ("v2", "HIT")


async def test_stale_if_error_when_the_app_fails_then_recovers(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    app = App()
    rule = Rule(method="GET", path="/page/*", cache=True, ttl=1, stale_if_error=2, source="test")
    proxy = await make_proxy([rule], app.routes, early_refresh_beta=0)
    url = proxy.url("/page/sie")
    assert (await get(client_session, url))[1] == "v1"
    await asyncio.sleep(1.1)
    app.failing = 503
    status, body, x_cache, cache_status = await get(client_session, url)
    assert (status, body, x_cache) == (200, "v1", "STALE")
    assert "fwd=stale; fwd-status=503; ttl=-" in cache_status
    await asyncio.sleep(2.1)  # past the stale-if-error window
    assert (await get(client_session, url))[0] == 503  # the app's own error passes through
    app.failing = None
    app.version = 2
    assert (await get(client_session, url))[1:3] == ("v2", "MISS")


async def test_waiters_on_a_failed_fetch_report_the_apps_status_like_the_fetcher(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    app = App(delay=0.5)  # the failing fetch is slow: the other requests queue behind it
    rule = Rule(method="GET", path="/page/*", cache=True, ttl=1, stale_if_error=30, source="test")
    proxy = await make_proxy([rule], app.routes, early_refresh_beta=0)
    url = proxy.url("/page/coalesced")
    assert (await get(client_session, url))[1] == "v1"
    await asyncio.sleep(1.1)
    app.failing = 500
    replies = await asyncio.gather(*(get(client_session, url) for _ in range(10)))
    assert app.calls == 2  # one fetch for the ten requests
    assert proxy.sidecar.metrics.coalesced == 9
    assert {reply[:3] for reply in replies} == {(200, "v1", "STALE")}
    for _, _, _, cache_status in replies:
        assert "fwd=stale; fwd-status=500; ttl=-" in cache_status, cache_status


async def test_stale_if_error_when_the_app_is_unreachable(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    app = App()
    rule = Rule(method="GET", path="/page/*", cache=True, ttl=1, source="test")
    proxy = await make_proxy([rule], app.routes, early_refresh_beta=0, stale_if_error=30)
    cached, uncached = proxy.url("/page/down"), proxy.url("/elsewhere")
    assert (await get(client_session, cached))[1] == "v1"
    await proxy.upstream.close()  # the app goes away
    await asyncio.sleep(1.1)
    status, body, x_cache, cache_status = await get(client_session, cached)
    assert (status, body, x_cache) == (200, "v1", "STALE")
    assert "fwd=stale" in cache_status
    assert (await get(client_session, uncached))[0] == 502
    assert (await get(client_session, proxy.url("/page/never-cached")))[0] == 502


async def test_the_responses_own_directives_set_the_windows(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    app = App()
    rule = Rule(method="GET", path="/page/*", cache=True, ttl=1, source="test")
    proxy = await make_proxy([rule], app.routes, early_refresh_beta=0, stale_if_error=0)
    url = proxy.url("/page/cc?cc=max-age%3D1%2C%20stale-while-revalidate%3D30")
    await get(client_session, url)
    await asyncio.sleep(1.1)
    assert (await get(client_session, url))[2] == "STALE"  # from the response's own directive


async def test_early_refresh_renews_a_hot_entry_before_it_expires(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    app = App(delay=0.5)
    rule = Rule(method="GET", path="/page/*", cache=True, ttl=2, source="test")
    # A 0.5 s fetch and beta 100 put the XFetch threshold far beyond the TTL: the draw fires on
    # a HIT with probability above 0.96 each time, so five HITs practically always refresh.
    proxy = await make_proxy([rule], app.routes, early_refresh_beta=100)
    url = proxy.url("/page/hot")
    await get(client_session, url)
    app.version = 2
    key = next(iter(proxy.sidecar.metrics.routes))
    assert key == "/page/*"
    for _ in range(5):
        assert (await get(client_session, url))[2] == "HIT"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.7)  # the background refresh takes the app's 0.5 s
    assert app.calls >= 2  # refreshed in the background while every client got a HIT
    assert (await get(client_session, url))[1] == "v2"
