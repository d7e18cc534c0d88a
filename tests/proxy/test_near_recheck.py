"""The near cache in front of a store without push (memcached): a short L1 TTL.

With the default ``TINA4_SIDECAR_NEAR_CACHE_RECHECK`` (1 s), repeated HITs are answered without a
round trip to memcached (counted by memcached itself), and a purge made by another process is
seen within the bound; with 0, every HIT asks the store.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tina4_sidecar.config import CacheSettings
from tina4_sidecar.store.factory import open_store
from tina4_sidecar.store.response_purge import purge_route

from tests.proxy.conftest import manifest_app
from tests.proxy.test_fast_path import RULES, app_routes, get, raw_exchange, running, warm
from tests.servers import memcached

HITS = 50


def gets(server: Any) -> int:
    """Retrievals memcached has served since it started (its own ``cmd_get`` counter)."""
    client = memcached.raw_client(server)
    try:
        return int(client.stats()[b"cmd_get"])
    finally:
        client.close()


async def test_a_short_l1_ttl_saves_the_round_trip_and_bounds_another_processs_purge(
    aiohttp_server: Callable[..., Any], tmp_path: Path
) -> None:
    calls: list[str] = []
    upstream = await aiohttp_server(manifest_app(RULES, app_routes(calls), []))
    with memcached.serving(memcached.memcached_server()) as (server,):
        cache = {
            "cache_backend": "memcached",
            "cache_url": memcached.server_url(server),
            "cache_namespace": f"tina4:l1{uuid.uuid4().hex[:8]}",
        }
        async with running(upstream, calls, tmp_path, cache=cache) as listener:
            assert listener.sidecar.settings.near_cache_recheck == 1.0  # the default
            await warm(listener, "/hit/l1")
            before = gets(server)
            answers = await raw_exchange(listener.port, get("/hit/l1") * HITS, HITS)
            assert [headers["x-cache"] for _, headers, _ in answers] == ["HIT"] * HITS
            # One store lookup reads a handful of keys (entry, tokens, generation): at most one or two
            # lookups here, where asking on every HIT reads hundreds (the test below).
            assert gets(server) - before <= 12

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
    aiohttp_server: Callable[..., Any], tmp_path: Path
) -> None:
    calls: list[str] = []
    upstream = await aiohttp_server(manifest_app(RULES, app_routes(calls), []))
    with memcached.serving(memcached.memcached_server()) as (server,):
        cache = {
            "cache_backend": "memcached",
            "cache_url": memcached.server_url(server),
            "cache_namespace": f"tina4:l1{uuid.uuid4().hex[:8]}",
        }
        async with running(upstream, calls, tmp_path, cache=cache, near_cache_recheck=0) as listener:
            await warm(listener, "/hit/zero")
            before = gets(server)
            answers = await raw_exchange(listener.port, get("/hit/zero") * HITS, HITS)
            assert [headers["x-cache"] for _, headers, _ in answers] == ["HIT"] * HITS
            assert gets(server) - before >= 3 * HITS
