"""The sidecar in front of the real Tina4 demo app: MISS turns into HIT with the spec's semantics.

Every test uses its own URLs (a ``t=`` query parameter) because the stack is shared by the module.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from tests.e2e.conftest import Stack

# Headers the sidecar sets itself; everything else must be replayed exactly on a HIT.
CACHE_HEADERS = {"x-cache", "x-cache-ttl", "age", "cache-status"}


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def x_cache(self) -> str | None:
        return self.headers.get("X-Cache")

    def json(self) -> dict[str, object]:
        data = json.loads(self.body)
        assert isinstance(data, dict)
        return data


async def fetch(http: aiohttp.ClientSession, method: str, url: str, **kwargs: object) -> Reply:
    async with http.request(method, url, **kwargs) as response:  # type: ignore[arg-type]
        return Reply(response.status, response.headers.copy(), await response.read())


async def get(http: aiohttp.ClientSession, url: str, **headers: str) -> Reply:
    return await fetch(http, "GET", url, headers=headers)


def end_to_end(reply: Reply) -> list[tuple[str, str]]:
    return [(k.lower(), v) for k, v in reply.headers.items() if k.lower() not in CACHE_HEADERS]


async def test_miss_then_hit_replays_status_headers_and_body(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    url = f"{stack.url}/api/products?t=miss-hit"
    miss = await get(http, url)
    hit = await get(http, url)
    assert (miss.status, miss.x_cache, miss.headers["X-Cache-TTL"]) == (200, "MISS", "300")
    assert miss.headers["Cache-Status"] == "tina4-sidecar; fwd=uri-miss; fwd-status=200; stored"
    assert hit.status == 200
    assert hit.x_cache == "HIT"
    assert int(hit.headers["X-Cache-TTL"]) in (299, 300)
    assert hit.headers["Cache-Status"].startswith("tina4-sidecar; hit; ttl=")
    assert int(hit.headers["Age"]) in (0, 1)
    assert hit.body == miss.body
    assert hit.headers["Content-Type"].startswith("application/json")
    assert end_to_end(hit) == end_to_end(miss)
    assert "Cache-Control" not in hit.headers  # the spec: the cache adds no Cache-Control


async def test_ttl_counts_down_then_the_entry_expires(stack: Stack, http: aiohttp.ClientSession) -> None:
    # /api/b is @middleware(ResponseCache): its TTL is the app's TINA4_CACHE_TTL, 2 s in this stack.
    url = f"{stack.url}/api/b?t=expiry"
    miss = await get(http, url)
    assert (miss.x_cache, miss.headers["X-Cache-TTL"]) == ("MISS", "2")
    first = await get(http, url)
    await asyncio.sleep(1.1)
    later = await get(http, url)
    assert (first.x_cache, later.x_cache) == ("HIT", "HIT")
    assert int(later.headers["X-Cache-TTL"]) < int(first.headers["X-Cache-TTL"])
    assert int(later.headers["Age"]) >= 1
    await asyncio.sleep(1.2)
    expired = await get(http, url)
    assert expired.x_cache == "MISS"


async def test_query_strings_are_cached_apart_and_sorted(stack: Stack, http: aiohttp.ClientSession) -> None:
    base = f"{stack.url}/api/store/products?category=Electronics&t=pages"
    page1 = await get(http, base + "&page=1&limit=2")
    page2 = await get(http, base + "&page=2&limit=2")
    assert (page1.x_cache, page2.x_cache) == ("MISS", "MISS")
    assert page1.json()["page"] == 1
    assert page2.json()["page"] == 2
    again = await get(http, f"{stack.url}/api/store/products?limit=2&page=1&t=pages&category=Electronics")
    assert again.x_cache == "HIT"
    assert again.body == page1.body


async def test_post_is_never_cached_and_its_body_reaches_the_app(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    payload = {"name": "Smart Watch", "category": "Electronics", "price": 299.99}
    first = await fetch(http, "POST", f"{stack.url}/api/store/products", json=payload)
    second = await fetch(http, "POST", f"{stack.url}/api/store/products", json=payload)
    assert first.status == second.status == 201
    assert first.x_cache is None
    assert second.x_cache is None
    assert first.body != second.body  # the handler ran twice (new ids)
    body = bytes(range(256)) * 1000
    echo = await fetch(http, "POST", f"{stack.url}/api/echo", data=body)
    assert echo.status == 200
    assert echo.json()["sha256"] == hashlib.sha256(body).hexdigest()
    assert echo.json()["length"] == len(body)


async def test_uncached_route_never_carries_cache_headers(stack: Stack, http: aiohttp.ClientSession) -> None:
    for _ in range(2):
        reply = await get(http, f"{stack.url}/api/time")
        assert reply.status == 200
        assert reply.x_cache is None
        assert "Cache-Status" not in reply.headers


async def test_credentials_bypass_and_never_get_another_users_entry(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    url = f"{stack.url}/api/whoami?t=users"
    anonymous = await get(http, url)
    assert anonymous.x_cache == "MISS"
    assert (await get(http, url)).x_cache == "HIT"
    alice = await get(http, url, Cookie="session=alice")
    bob = await get(http, url, Cookie="session=bob")
    carol = await get(http, url, Authorization="Bearer carol-token")
    alice_again = await get(http, url, Cookie="session=alice")
    for reply, secret in ((alice, b"alice"), (bob, b"bob"), (carol, b"carol-token"), (alice_again, b"alice")):
        assert secret in reply.body
        assert reply.x_cache == "MISS"
        assert "fwd=bypass" in reply.headers["Cache-Status"]
    assert b"bob" not in alice_again.body
    after = await get(http, url)
    assert after.x_cache == "HIT"
    assert after.body == anonymous.body


async def test_set_cookie_and_private_responses_are_never_stored(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    for path in ("/api/with-cookie?t=never", "/api/private?t=never"):
        replies = [await get(http, f"{stack.url}{path}") for _ in range(2)]
        for reply in replies:
            assert reply.status == 200
            assert reply.x_cache == "MISS"
            assert "X-Cache-TTL" not in reply.headers
            assert "stored" not in reply.headers["Cache-Status"]
    cookie_reply = await get(http, f"{stack.url}/api/with-cookie?t=never")
    assert "Set-Cookie" in cookie_reply.headers  # passed through to its own client


async def test_binary_bodies_round_trip_byte_for_byte(stack: Stack, http: aiohttp.ClientSession) -> None:
    url = f"{stack.url}/api/binary?t=bytes"
    miss = await get(http, url)
    hit = await get(http, url)
    assert (miss.x_cache, hit.x_cache) == ("MISS", "HIT")
    assert miss.body[:256] == bytes(range(256))
    assert hit.body == miss.body
    assert hit.headers["Content-Type"] == miss.headers["Content-Type"] == "application/octet-stream"
    assert int(hit.headers["Content-Length"]) == len(miss.body)


async def test_head_is_answered_from_the_get_entry(stack: Stack, http: aiohttp.ClientSession) -> None:
    url = f"{stack.url}/api/products?t=head"
    got = await get(http, url)
    head = await fetch(http, "HEAD", url)
    assert (got.x_cache, head.x_cache) == ("MISS", "HIT")
    assert head.body == b""
    assert int(head.headers["Content-Length"]) == len(got.body)
    cold = f"{stack.url}/api/products?t=head-first"
    assert (await fetch(http, "HEAD", cold)).x_cache == "MISS"
    assert (await get(http, cold)).x_cache == "HIT"


async def test_path_parameters_and_trailing_slash(stack: Stack, http: aiohttp.ClientSession) -> None:
    one = await get(http, f"{stack.url}/api/products/1")
    two = await get(http, f"{stack.url}/api/products/2")
    assert (one.x_cache, two.x_cache) == ("MISS", "MISS")
    assert (await get(http, f"{stack.url}/api/products/1")).x_cache == "HIT"
    assert (await get(http, f"{stack.url}/api/products/?t=slash")).x_cache == "MISS"
    assert (await get(http, f"{stack.url}/api/products/abc")).x_cache is None  # {id:int} does not match
