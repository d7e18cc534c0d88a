"""Mixed sidecar versions on one shared store (a rolling upgrade): entries of another format version.

A sidecar that finds an entry it cannot read (``Entry.VERSION`` differs) takes it as a miss: the
app is asked, the client gets the app's answer, and the entry is written again in this sidecar's
format, so the next request is a HIT. It is counted and logged once per version, not once per
request. Here the other version is played by rewriting the stored bytes' version field in real
Redis, on both transports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis

from tests.proxy.conftest import manifest_app
from tests.proxy.test_fast_path import RULES, Listener, app_routes, running
from tests.servers.redis import redis_server, server_url, serving
from tina4_sidecar.proxy.http.entry import MAGIC, VERSION, Entry

NAMESPACE = "tina4:upgrade"


async def get(listener: Listener, path: str) -> tuple[str, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(listener.url(path), headers={"Host": "shop.example"}) as response,
    ):
        return response.headers.get("X-Cache", ""), await response.text()


def entry_keys(client: redis.Redis) -> list[bytes]:
    keys = client.scan_iter(match=f"{NAMESPACE}:resp:*")
    return [key for key in keys if (client.get(key) or b"").startswith(MAGIC)]


def rewrite_as_version(client: redis.Redis, key: bytes, version: int) -> None:
    """What a sidecar writing format ``version`` would leave there: the same entry, another format."""
    raw = client.get(key)
    assert raw is not None
    client.set(key, raw[: len(MAGIC)] + bytes([version]) + raw[len(MAGIC) + 1 :], px=client.pttl(key))


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "aiohttp"])
async def test_an_entry_of_another_format_version_is_a_miss_then_rewritten(
    aiohttp_server: Callable[..., Any], tmp_path: Path, caplog: pytest.LogCaptureFixture, fast_path: bool
) -> None:
    calls: list[str] = []
    upstream = await aiohttp_server(manifest_app(RULES, app_routes(calls), []))
    with serving(redis_server()) as server:
        url = server_url(server)
        cache = {"cache_backend": "redis", "cache_url": url, "cache_namespace": NAMESPACE}
        client = redis.Redis.from_url(url)
        async with running(
            upstream, calls, tmp_path, cache=cache, fast_path=fast_path, near_cache_entries=0
        ) as listener:
            assert await get(listener, "/hit/a") == ("MISS", "body of a #1")
            assert await get(listener, "/hit/b") == ("MISS", "body of b #2")
            for key in entry_keys(client):
                rewrite_as_version(client, key, VERSION + 1)
            caplog.set_level(logging.WARNING, logger="tina4_sidecar.proxy")

            after = [await get(listener, "/hit/a"), await get(listener, "/hit/b")]
            unreadable = listener.sidecar.metrics.unreadable_entries
            again = [await get(listener, "/hit/a"), await get(listener, "/hit/b")]

            assert after == [("MISS", "body of a #3"), ("MISS", "body of b #4")]  # the app asked again
            assert again == [("HIT", "body of a #3"), ("HIT", "body of b #4")]  # rewritten in our format
            stored = [Entry.decode(client.get(key) or b"") for key in entry_keys(client)]
            assert sorted(entry.body for entry in stored) == [b"body of a #3", b"body of b #4"]
            assert unreadable >= 2  # every read of one counts (a miss reads twice: lookup, then lock)
            assert listener.sidecar.metrics.unreadable_entries == unreadable  # none since the rewrite
            warnings = [r.getMessage() for r in caplog.records if "unreadable cache entry" in r.getMessage()]
            assert len(warnings) == 1, warnings  # once per version, not once per entry or request
            assert f"entry format {VERSION + 1}" in warnings[0]
