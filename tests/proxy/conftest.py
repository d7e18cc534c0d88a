"""An in-process sidecar in front of a real aiohttp upstream on loopback, for forwarding details.

``make_proxy`` listens the way ``tina4-sidecar serve`` does (``server.listen``: the fast path in
front of aiohttp's server), so every test runs through the default transport; a test that is
about the aiohttp path alone passes ``fast_path=False``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.servers.process import free_port
from tina4_sidecar.config import CacheSettings, SidecarSettings
from tina4_sidecar.config.rules import Rule, dump_manifest
from tina4_sidecar.proxy.server import Listening, listen, start_sidecar, stop_sidecar
from tina4_sidecar.proxy.sidecar import Sidecar

MANIFEST_PATH = "/__tina4/cache-manifest"


@dataclass
class Proxied:
    sidecar: Sidecar
    upstream: TestServer
    port: int
    seen: list[web.Request]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def manifest_app(rules: list[Rule], routes: web.RouteTableDef, seen: list[web.Request]) -> web.Application:
    @web.middleware
    async def record(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        if request.path != MANIFEST_PATH:
            seen.append(request)
        response: web.StreamResponse = await handler(request)
        return response

    async def manifest(_: web.Request) -> web.Response:
        return web.Response(body=dump_manifest(rules), content_type="application/json")

    app = web.Application(middlewares=[record], client_max_size=64 * 1024 * 1024)
    app.router.add_get(MANIFEST_PATH, manifest)
    app.add_routes(routes)
    return app


@pytest.fixture
async def make_proxy(aiohttp_server: Callable[..., Any], tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[tuple[Sidecar, Listening]] = []

    async def make(
        rules: list[Rule],
        routes: web.RouteTableDef | None = None,
        *,
        upstream_of: Proxied | None = None,
        cache: dict[str, Any] | None = None,
        **settings: Any,
    ) -> Proxied:
        """A sidecar in front of a new app serving ``routes``, or in front of ``upstream_of``'s app."""
        if upstream_of is not None:
            upstream, seen = upstream_of.upstream, upstream_of.seen
        else:
            seen = []
            upstream = await aiohttp_server(manifest_app(rules, routes or web.RouteTableDef(), seen))
        port = free_port()
        sidecar_settings = SidecarSettings(
            upstream=str(upstream.make_url("")).rstrip("/"),
            listen=f"127.0.0.1:{port}",
            manifest_refresh=60,
            **settings,
        )
        cache_settings = CacheSettings(cache_dir=tmp_path / "cache", **(cache or {}))
        sidecar = await start_sidecar(sidecar_settings, cache_settings)
        listening = await listen(sidecar)
        started.append((sidecar, listening))
        return Proxied(sidecar, upstream, port, seen)

    yield make
    for sidecar, listening in started:
        await listening.close()
        await stop_sidecar(sidecar)


@pytest.fixture
async def client_session() -> AsyncIterator[Any]:
    import aiohttp

    async with aiohttp.ClientSession(
        auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(), connector=aiohttp.TCPConnector(limit=0)
    ) as session:
        yield session
