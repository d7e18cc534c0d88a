"""Variants (several per URL, Accept-Encoding normalised, Vary: * never stored) and conditional
requests (304 from the cache, generated ETags, revalidation of stale entries)."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from tina4_sidecar.config.rules import Rule

RULE = Rule(method="GET", path="/v/*", cache=True, ttl=60, source="test")


def variant_routes(seen: list[dict[str, str]]) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.get("/v/lang")
    async def lang(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        language = request.headers.get("Accept-Language", "en")
        return web.Response(text=f"hello in {language}", headers={"Vary": "Accept-Language"})

    @routes.get("/v/star")
    async def star(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(text="anything", headers={"Vary": "*"})

    @routes.get("/v/gzip")
    async def gzipped(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        body = b"compress me " * 200
        if request.headers.get("Accept-Encoding") == "gzip":
            return web.Response(
                body=gzip.compress(body), headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
            )
        return web.Response(body=body, headers={"Vary": "Accept-Encoding"})

    @routes.get("/v/etag")
    async def etagged(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304, headers={"ETag": '"v1"', "X-Revalidated": "yes"})
        return web.Response(text="etagged body", headers={"ETag": '"v1"'})

    @routes.get("/v/plain")
    async def plain(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(text="no validator here")

    return routes


async def get(
    session: aiohttp.ClientSession, url: str, **headers: str
) -> tuple[int, bytes, aiohttp.typedefs.LooseHeaders]:
    async with session.get(url, headers=headers) as response:
        return response.status, await response.read(), response.headers.copy()


async def test_two_accept_language_variants_coexist(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    seen: list[dict[str, str]] = []
    proxy = await make_proxy([RULE], variant_routes(seen))
    url = proxy.url("/v/lang")
    en = await get(client_session, url, **{"Accept-Language": "en"})
    de = await get(client_session, url, **{"Accept-Language": "de"})
    assert (en[1], de[1]) == (b"hello in en", b"hello in de")
    for _ in range(2):
        en_again = await get(client_session, url, **{"Accept-Language": "en"})
        de_again = await get(client_session, url, **{"Accept-Language": "de"})
        assert (en_again[1], en_again[2]["X-Cache"]) == (b"hello in en", "HIT")
        assert (de_again[1], de_again[2]["X-Cache"]) == (b"hello in de", "HIT")
    assert len(seen) == 2


async def test_vary_star_is_never_stored(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    seen: list[dict[str, str]] = []
    proxy = await make_proxy([RULE], variant_routes(seen))
    for _ in range(3):
        _status, _, headers = await get(client_session, proxy.url("/v/star"))
        assert headers["X-Cache"] == "MISS"
    assert len(seen) == 3


async def test_accept_encoding_spellings_share_one_variant(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    seen: list[dict[str, str]] = []
    proxy = await make_proxy([RULE], variant_routes(seen))
    url = proxy.url("/v/gzip")
    first = await get(client_session, url, **{"Accept-Encoding": "gzip, deflate"})
    second = await get(client_session, url, **{"Accept-Encoding": "deflate, gzip;q=0.8"})
    identity = await get(client_session, url, **{"Accept-Encoding": "identity"})
    assert first[2]["Content-Encoding"] == "gzip"
    assert second[2]["X-Cache"] == "HIT"
    assert gzip.decompress(second[1]) == b"compress me " * 200
    assert "Content-Encoding" not in identity[2]
    assert identity[1] == b"compress me " * 200
    assert [h["Accept-Encoding"] for h in seen] == ["gzip", "identity"]  # what the app was asked


async def test_if_none_match_on_a_hit_gives_304(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    seen: list[dict[str, str]] = []
    proxy = await make_proxy([RULE], variant_routes(seen))
    url = proxy.url("/v/etag")
    _, _body, headers = await get(client_session, url)
    status, body304, headers304 = await get(client_session, url, **{"If-None-Match": headers["ETag"]})
    assert (status, body304) == (304, b"")
    assert headers304["ETag"] == '"v1"'
    assert headers304["X-Cache"] == "HIT"
    assert (await get(client_session, url, **{"If-None-Match": '"other"'}))[0] == 200
    # The client's own validators never reach the app on a cacheable fetch.
    assert all("If-None-Match" not in h for h in seen)


async def test_an_etag_is_generated_when_the_app_sends_none(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    seen: list[dict[str, str]] = []
    proxy = await make_proxy([RULE], variant_routes(seen))
    url = proxy.url("/v/plain")
    await get(client_session, url)
    _, _, headers = await get(client_session, url)
    etag = headers["ETag"]
    assert etag.startswith('"')
    assert len(etag) == 34
    assert (await get(client_session, url, **{"If-None-Match": etag}))[0] == 304
    assert (await get(client_session, url, **{"If-None-Match": f"W/{etag}"}))[0] == 304  # weak comparison


async def test_a_stale_entry_is_revalidated_with_a_conditional_request(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    seen: list[dict[str, str]] = []
    rule = Rule(method="GET", path="/v/*", cache=True, ttl=1, stale_if_error=60, source="test")
    proxy = await make_proxy([rule], variant_routes(seen), early_refresh_beta=0)
    url = proxy.url("/v/etag")
    await get(client_session, url)
    await asyncio.sleep(1.1)
    status, body, headers = await get(client_session, url)
    assert (status, body) == (200, b"etagged body")
    assert seen[-1]["If-None-Match"] == '"v1"'
    assert "fwd=stale; fwd-status=304; stored" in headers["Cache-Status"]
    assert headers["X-Revalidated"] == "yes"  # the 304's headers updated the stored ones
    _, body_again, headers_again = await get(client_session, url)
    assert (body_again, headers_again["X-Cache"]) == (b"etagged body", "HIT")
    assert len(seen) == 2
