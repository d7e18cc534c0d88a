"""The near cache in front of a store without push (memcached): a short L1 TTL.

With the default ``TINA4_SIDECAR_NEAR_CACHE_RECHECK`` (1 s), repeated HITs are answered without a
round trip to memcached (counted by memcached itself), and a purge made by another process is
seen within the bound; with 0, every HIT asks the store.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.proxy.conftest import manifest_app
from tests.proxy.test_fast_path import RULES, Listener, app_routes, get, raw_exchange, running, warm
from tests.servers import memcached
from tests.servers.process import ServerProcess
from tina4_sidecar.config import CacheSettings
from tina4_sidecar.store.factory import open_store
from tina4_sidecar.store.response_purge import purge_route

HITS = 50


def gets(server: Any) -> int:
    """Retrievals memcached has served since it started (its own ``cmd_get`` counter)."""
    client = memcached.raw_client(server)
    try:
        return int(client.stats()[b"cmd_get"])
    finally:
        client.close()


@pytest.fixture
def memcached_server() -> Iterator[ServerProcess]:
    with memcached.serving(memcached.memcached_server()) as (server,):
        yield server


@pytest.fixture
def cache(memcached_server: ServerProcess) -> dict[str, str]:
    """The sidecar's store settings: memcached, a namespace of this test's own."""
    return {
        "cache_backend": "memcached",
        "cache_url": memcached.server_url(memcached_server),
        "cache_namespace": f"tina4:l1{uuid.uuid4().hex[:8]}",
    }


async def hits_cost(listener: Listener, server: ServerProcess, path: str) -> int:
    """memcached retrievals while ``path``, warm, is a HIT HITS times in a row."""
    await warm(listener, path)
    before = gets(server)
    answers = await raw_exchange(listener.port, get(path) * HITS, HITS)
    assert [headers["x-cache"] for _, headers, _ in answers] == ["HIT"] * HITS
    return gets(server) - before


async def test_a_short_l1_ttl_saves_the_round_trip_and_bounds_another_processs_purge(
    aiohttp_server: Callable[..., Any], tmp_path: Path, memcached_server: ServerProcess, cache: dict[str, str]
) -> None:
    upstream = await aiohttp_server(manifest_app(RULES, app_routes([]), []))
    async with running(upstream, [], tmp_path, cache=cache) as listener:
        assert listener.sidecar.settings.near_cache_recheck == 1.0  # the default
        # One store lookup reads a handful of keys (entry, tokens, generation): at most one or two
        # lookups here, where asking on every HIT reads hundreds (the test below).
        assert await hits_cost(listener, memcached_server, "/hit/l1") <= 12

        other = await open_store(CacheSettings(**cache, cache_dir=tmp_path / "other"), "resp")
        try:
            assert await purge_route(other, "/hit/l1")  # another process, through the store
        finally:
            await other.close()
        purged = time.monotonic()
        while (await raw_exchange(listener.port, get("/hit/l1"), 1))[0][1]["x-cache"] != "MISS":
            assert time.monotonic() - purged < 1.0 + 0.5, "served past the recheck bound"
            await asyncio.sleep(0.02)


async def test_recheck_zero_asks_the_store_on_every_hit(
    aiohttp_server: Callable[..., Any], tmp_path: Path, memcached_server: ServerProcess, cache: dict[str, str]
) -> None:
    upstream = await aiohttp_server(manifest_app(RULES, app_routes([]), []))
    async with running(upstream, [], tmp_path, cache=cache, near_cache_recheck=0) as listener:
        assert await hits_cost(listener, memcached_server, "/hit/zero") >= 3 * HITS
