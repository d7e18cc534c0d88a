"""Purges by URL, route path, tag and all: O(1) token writes that every later lookup honours."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from tina4_sidecar.config.rules import Rule
from tina4_sidecar.store.response_purge import purge_all, purge_route, purge_tag, purge_url

PRODUCTS = Rule(method="GET", path="/products", cache=True, ttl=300, tags=("catalog",), source="test")
ITEMS = Rule(method="GET", path="/items/{id}", cache=True, ttl=300, source="test")


def counting_routes(
    counter: dict[str, int], gate: asyncio.Event | None = None, entered: asyncio.Event | None = None
) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.get("/products")
    async def products(request: web.Request) -> web.Response:
        counter["products"] = counter.get("products", 0) + 1
        return web.Response(text=f"products {request.query_string} #{counter['products']}")

    @routes.get("/items/{id}")
    async def items(request: web.Request) -> web.Response:
        counter["items"] = counter.get("items", 0) + 1
        if gate is not None and request.query.get("slow"):
            if entered is not None:
                entered.set()
            await gate.wait()
        tags = "sale item-" + request.match_info["id"]
        return web.Response(
            text=f"item {request.match_info['id']} #{counter['items']}", headers={"X-Cache-Tags": tags}
        )

    return routes


async def status(session: aiohttp.ClientSession, url: str) -> tuple[str, str]:
    async with session.get(url) as response:
        return response.headers["X-Cache"], await response.text()


async def test_purge_url_route_tag_and_all(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    counter: dict[str, int] = {}
    proxy = await make_proxy([PRODUCTS, ITEMS], counting_routes(counter))
    store, url = proxy.sidecar.store, proxy.url
    pages = [url("/products?page=1"), url("/products?page=2"), url("/items/7"), url("/items/8")]
    for page in pages:
        assert (await status(client_session, page))[0] == "MISS"
        assert (await status(client_session, page))[0] == "HIT"

    assert await purge_url(store, "/products?page=1")
    assert [(await status(client_session, p))[0] for p in pages] == ["MISS", "HIT", "HIT", "HIT"]

    assert await purge_route(store, "/products")  # every query variant of the path
    assert [(await status(client_session, p))[0] for p in pages] == ["MISS", "MISS", "HIT", "HIT"]

    assert await purge_tag(store, "item-7")  # a tag the app set in its header
    assert [(await status(client_session, p))[0] for p in pages] == ["HIT", "HIT", "MISS", "HIT"]

    assert await purge_tag(store, "catalog")  # a tag of the rule
    assert [(await status(client_session, p))[0] for p in pages] == ["MISS", "MISS", "HIT", "HIT"]

    assert await purge_all(store)
    assert [(await status(client_session, p))[0] for p in pages] == ["MISS"] * 4
    assert [(await status(client_session, p))[0] for p in pages] == ["HIT"] * 4


async def test_the_tag_header_never_reaches_the_client(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    proxy = await make_proxy([ITEMS], counting_routes({}))
    for _ in range(2):
        async with client_session.get(proxy.url("/items/1")) as response:
            assert "X-Cache-Tags" not in response.headers


async def test_a_purge_during_the_fetch_is_not_undone_by_storing_the_old_body(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    counter: dict[str, int] = {}
    gate, entered = asyncio.Event(), asyncio.Event()
    proxy = await make_proxy([ITEMS], counting_routes(counter, gate, entered))
    url = proxy.url("/items/9?slow=1")
    slow = asyncio.create_task(status(client_session, url))
    await entered.wait()  # the app is computing the old body now
    assert await purge_tag(proxy.sidecar.store, "item-9")
    gate.set()
    assert (await slow) == ("MISS", "item 9 #1")
    # The body computed before the purge must not be served after it.
    assert (await status(client_session, url)) == ("MISS", "item 9 #2")
    assert (await status(client_session, url)) == ("HIT", "item 9 #2")


async def test_a_route_purge_during_the_fetch_leaves_no_servable_entry(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    counter: dict[str, int] = {}
    gate, entered = asyncio.Event(), asyncio.Event()
    proxy = await make_proxy([ITEMS], counting_routes(counter, gate, entered))
    url = proxy.url("/items/5?slow=1")
    slow = asyncio.create_task(status(client_session, url))
    await entered.wait()
    assert await purge_route(proxy.sidecar.store, "/items/5")
    gate.set()
    assert (await slow)[0] == "MISS"
    assert (await status(client_session, url)) == ("MISS", "item 5 #2")
