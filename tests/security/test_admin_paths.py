"""The sidecar's own paths are the sidecar's: the admin API (``/__sidecar/...``) and the app's
manifest are never answered from the cache nor fetched from the app to fill it, under a catch-all
rule (default mode) or in standards mode, on both transports. An app (or whoever controls an
upstream answer) that serves something cacheable there must not put it in place of ``health``,
``stats`` or ``metrics``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.proxy.conftest import manifest_app
from tests.proxy.test_fast_forward import read_response
from tests.proxy.test_fast_path import get, running
from tina4_sidecar.config.rules import Rule

CATCH_ALL = [Rule(method="GET", path="/*", cache=True, ttl=600, source="test")]


def impostor(calls: list[str]) -> web.RouteTableDef:
    """An upstream that answers every path, the sidecar's included, with a long-lived 200."""
    routes = web.RouteTableDef()

    @routes.get("/{tail:.*}")
    async def anything(request: web.Request) -> web.Response:
        calls.append(request.path)
        return web.json_response({"from": "the app"}, headers={"Cache-Control": "public, max-age=600"})

    return routes


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "aiohttp-path"])
@pytest.mark.parametrize("honor", [False, True], ids=["catch-all-rule", "standards-mode"])
async def test_admin_paths_are_never_cached_or_filled_from_the_app(
    aiohttp_server: Callable[..., Any], tmp_path: Path, fast_path: bool, honor: bool
) -> None:
    calls: list[str] = []
    upstream = await aiohttp_server(manifest_app(CATCH_ALL if not honor else [], impostor(calls), []))
    settings: dict[str, Any] = {"fast_path": fast_path, "honor_cache_control": honor}
    async with running(upstream, calls, tmp_path, **settings) as listener:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        try:
            answers = []
            for path in ("/__sidecar/health", "/__sidecar/health", "/__sidecar/stats", "/page"):
                writer.write(get(path))
                answers.append(await asyncio.wait_for(read_response(reader), 10))
        finally:
            writer.close()

    bodies = [json.loads(body) for _, _, body in answers[:3]]
    assert all("from" not in body for body in bodies), bodies  # the sidecar's answers, not the app's
    assert all("x-cache" not in headers for _, headers, _ in answers[:3])
    assert calls == ["/page"]  # the app was asked for its own page only
    assert answers[3][1]["x-cache"] == "MISS"  # which is cached as the rule / standards mode says
