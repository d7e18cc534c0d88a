"""``POST purge`` removes exactly what it names (the next request for it is a MISS, the others stay
HITs), answers 400 for a body it cannot read and 503 when the store cannot be written, and
reaches every sidecar that shares the store."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.admin.helpers import TOKEN, admin_call, x_cache
from tests.servers.process import ServerProcess
from tests.servers.redis import redis_server, server_url, serving
from tina4_sidecar.config.rules import Rule

PRODUCTS = Rule(method="GET", path="/products", cache=True, ttl=300, tags=("catalog",), source="test")
ITEMS = Rule(method="GET", path="/items/{id}", cache=True, ttl=300, source="test")


def shop_routes() -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.get("/products")
    async def products(request: web.Request) -> web.Response:
        return web.Response(text=f"products {request.query_string}")

    @routes.get("/items/{id}")
    async def items(request: web.Request) -> web.Response:
        item = request.match_info["id"]
        return web.Response(text=f"item {item}", headers={"X-Cache-Tags": f"sale item-{item}"})

    return routes


@pytest.fixture(scope="module")
def redis() -> Iterator[ServerProcess]:
    with serving(redis_server()) as server:
        yield server


async def states(session: aiohttp.ClientSession, urls: list[str]) -> list[str]:
    return [await x_cache(session, url) for url in urls]


async def test_purge_by_url_route_tag_and_all(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    proxy = await make_proxy([PRODUCTS, ITEMS], shop_routes(), admin_token=TOKEN)
    base = proxy.url("").rstrip("/")
    pages = [proxy.url(p) for p in ("/products?page=1", "/products?page=2", "/items/7", "/items/8")]
    assert await states(client_session, pages) == ["MISS"] * 4
    assert await states(client_session, pages) == ["HIT"] * 4

    async def purge(order: dict[str, Any]) -> None:
        answer = await admin_call(client_session, base, "purge", token=TOKEN, method="POST", body=order)
        assert (answer.status, answer.body["purged"]) == (200, order)

    await purge({"url": "/products?page=1"})
    assert await states(client_session, pages) == ["MISS", "HIT", "HIT", "HIT"]
    await purge({"url": "http://any.example/products?page=2"})  # a full URL: any host
    assert await states(client_session, pages) == ["HIT", "MISS", "HIT", "HIT"]
    await purge({"route": "/products"})  # every query variant of the path
    assert await states(client_session, pages) == ["MISS", "MISS", "HIT", "HIT"]
    await purge({"tag": "item-7"})  # a tag from the app's header
    assert await states(client_session, pages) == ["HIT", "HIT", "MISS", "HIT"]
    await purge({"tag": "catalog"})  # a tag of the rule
    assert await states(client_session, pages) == ["MISS", "MISS", "HIT", "HIT"]
    await purge({"all": True})
    assert await states(client_session, pages) == ["MISS"] * 4
    assert await states(client_session, pages) == ["HIT"] * 4


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"{}", "name exactly one of url, route, prefix, host, tag, all"),
        (b'{"url": "/a", "tag": "b"}', "name exactly one"),
        (b'{"path": "/a"}', "unknown field 'path'"),
        (b'{"all": false}', '"all" must be true'),
        (b'{"all": "yes"}', '"all" must be true'),
        (b'{"url": ""}', '"url" must be a non-empty string'),
        (b'{"url": 7}', '"url" must be a non-empty string'),
        (b'{"url": "products"}', 'must be a path starting with "/"'),
        (b'{"url": "ftp://host/x"}', 'must be a path starting with "/"'),
        (b'{"route": "/products?page=1"}', "without a query string"),
        (b'{"route": "/items/{id}"}', 'patterns are not supported in "route"'),
        (
            b'{"url": "/p/*"}',
            "patterns are not supported in \"url\" ('/p/*'); to purge every path under a "
            'directory, use {"prefix": "/p/"}',
        ),
        (b'{"prefix": "/p"}', '"prefix" is a directory below the root ending in "/"'),
        (b'{"prefix": "/"}', 'for everything use {"all": true}'),
        (b'{"prefix": "/p/?a=1"}', "without a query string"),
        (b'{"host": "a/b"}', '"host" is one name'),
        (b'{"url": "/a", "soft": "yes"}', '"soft" must be true or false'),
        (b'{"tag": "a,b"}', '"tag" is one name'),
    ],
)
async def test_bad_purge_bodies_answer_400(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession, body: bytes, message: str
) -> None:
    proxy = await make_proxy([PRODUCTS], shop_routes(), admin_token=TOKEN)
    answer = await admin_call(
        client_session, proxy.url("").rstrip("/"), "purge", token=TOKEN, method="POST", body=body
    )
    assert answer.status == 400
    assert message in answer.body["error"]


async def test_oversized_purge_body_answers_413(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    proxy = await make_proxy([PRODUCTS], shop_routes(), admin_token=TOKEN)
    body = b'{"tag": "' + b"x" * 20_000 + b'"}'
    answer = await admin_call(
        client_session, proxy.url("").rstrip("/"), "purge", token=TOKEN, method="POST", body=body
    )
    assert answer.status == 413


async def test_a_store_that_cannot_be_written_answers_503(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = await make_proxy([PRODUCTS], shop_routes(), admin_token=TOKEN)

    async def refused(*_: Any) -> None:
        raise ConnectionError("read-only replica")

    monkeypatch.setattr(proxy.sidecar.store, "_set", refused)
    answer = await admin_call(
        client_session, proxy.url("").rstrip("/"), "purge", token=TOKEN, method="POST", body={"all": True}
    )
    assert answer.status == 503
    assert "could not be written" in answer.body["error"]


async def test_a_purge_on_one_sidecar_reaches_another_sharing_redis(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession, redis: ServerProcess
) -> None:
    cache = {"cache_backend": "redis", "cache_url": server_url(redis), "cache_namespace": uuid.uuid4().hex}
    first = await make_proxy([PRODUCTS, ITEMS], shop_routes(), cache=cache, admin_token=TOKEN)
    second = await make_proxy([PRODUCTS, ITEMS], upstream_of=first, cache=cache, admin_token=TOKEN)
    assert first.sidecar.store.backend_name == "redis"
    # Each sidecar has its own entries (the Host differs); the purge tokens are shared.
    on_first = [first.url("/products?page=1"), first.url("/items/7")]
    on_second = [second.url("/products?page=1"), second.url("/items/7")]
    for urls in (on_first, on_second):
        assert await states(client_session, urls) == ["MISS", "MISS"]
        assert await states(client_session, urls) == ["HIT", "HIT"]

    answer = await admin_call(
        client_session,
        first.url("").rstrip("/"),
        "purge",
        token=TOKEN,
        method="POST",
        body={"url": "/products?page=1"},
    )
    assert answer.status == 200
    assert await states(client_session, on_second) == ["MISS", "HIT"]
    assert await states(client_session, on_first) == ["MISS", "HIT"]

    answer = await admin_call(
        client_session, second.url("").rstrip("/"), "purge", token=TOKEN, method="POST", body={"tag": "sale"}
    )
    assert answer.status == 200
    assert await states(client_session, on_first) == ["HIT", "MISS"]
    assert await states(client_session, on_second) == ["HIT", "MISS"]
