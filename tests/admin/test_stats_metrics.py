"""``stats`` (JSON) and ``metrics`` (Prometheus text) count what real requests through the
sidecar did: MISS then HIT, pass-through, origin fetches, coalesced waiters, store errors."""

from __future__ import annotations

import asyncio
import platform
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

import tina4_sidecar
from tests.admin.helpers import TOKEN, admin_call, x_cache
from tina4_sidecar.config.rules import Rule
from tina4_sidecar.proxy.build_info import build_info
from tina4_sidecar.proxy.metrics import Metrics

PRODUCTS = Rule(method="GET", path="/products", cache=True, ttl=300, source="test")
ITEMS = Rule(method="GET", path="/items/{id}", cache=True, ttl=300, source="test")


def shop_routes(gate: asyncio.Event | None = None) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.get("/products")
    async def products(_: web.Request) -> web.Response:
        return web.Response(text="products")

    @routes.get("/items/{id}")
    async def items(request: web.Request) -> web.Response:
        if gate is not None:
            await gate.wait()
        return web.Response(text=f"item {request.match_info['id']}")

    @routes.get("/about")
    async def about(_: web.Request) -> web.Response:
        return web.Response(text="not cached")

    return routes


def families(text: str) -> dict[str, Metric]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(family: Metric, suffix: str = "", **labels: str) -> float:
    """The value of the one sample named ``family.name + suffix`` with exactly these labels."""
    found = [s.value for s in family.samples if s.name == family.name + suffix and s.labels == labels]
    assert len(found) == 1, (family.name + suffix, labels, family.samples)
    return found[0]


async def test_stats_after_a_miss_and_a_hit(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    proxy = await make_proxy([PRODUCTS, ITEMS], shop_routes(), admin_token=TOKEN)
    base = proxy.url("").rstrip("/")
    assert await x_cache(client_session, proxy.url("/products")) == "MISS"
    assert await x_cache(client_session, proxy.url("/products")) == "HIT"
    assert await x_cache(client_session, proxy.url("/about")) == "-"

    stats = (await admin_call(client_session, base, "stats", token=TOKEN)).body
    counts = {name: stats[name] for name in ("hits", "misses", "stale", "bypass", "pass", "errors")}
    assert counts == {"hits": 1, "misses": 1, "stale": 0, "bypass": 0, "pass": 1, "errors": 0}
    assert stats["hit_rate"] == 0.5
    assert stats["origin_fetches"] == 1
    assert stats["coalesced"] == 0
    assert stats["size"] >= 1
    assert (stats["backend"], stats["fallback"]) == ("memory", False)
    assert stats["store"]["backend"] == "memory"
    assert stats["store"]["errors"] == 0
    assert stats["routes"] == {
        "/products": {
            "hits": 1,
            "stale": 0,
            "misses": 1,
            "bypass": 0,
            "errors": 0,
            "hit_rate": 0.5,
            "origin_fetches": 1,
            "coalesced": 0,
        }
    }
    manifest = stats["manifest"]
    assert (manifest["rules"], manifest["last_error"]) == (2, None)
    assert manifest["loaded_at"] > 0
    assert stats["uptime_seconds"] > 0


async def test_metrics_families_and_counts(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    gate = asyncio.Event()
    proxy = await make_proxy([PRODUCTS, ITEMS], shop_routes(gate), admin_token=TOKEN)
    base = proxy.url("").rstrip("/")
    assert await x_cache(client_session, proxy.url("/products")) == "MISS"
    assert await x_cache(client_session, proxy.url("/products")) == "HIT"
    assert await x_cache(client_session, proxy.url("/products")) == "HIT"
    assert await x_cache(client_session, proxy.url("/about")) == "-"
    # Three concurrent misses of one key: one fetch, two coalesced waiters.
    waiting = [asyncio.create_task(x_cache(client_session, proxy.url("/items/7"))) for _ in range(3)]
    for _ in range(500):
        if proxy.sidecar.metrics.coalesced == 2:
            break
        await asyncio.sleep(0.01)
    gate.set()
    assert sorted(await asyncio.gather(*waiting)) == ["MISS"] * 3

    answer = await admin_call(client_session, base, "metrics", token=TOKEN)
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    found = families(answer.body)

    requests = found["tina4_sidecar_requests"]
    assert requests.type == "counter"
    assert sample(requests, "_total", outcome="hit", route="/products") == 2
    assert sample(requests, "_total", outcome="miss", route="/products") == 1
    assert sample(requests, "_total", outcome="miss", route="/items/{id}") == 3  # the pattern, not the URL
    assert sample(requests, "_total", outcome="pass", route="none") == 1

    durations = found["tina4_sidecar_request_duration_seconds"]
    assert durations.type == "histogram"
    assert sample(durations, "_count", outcome="hit") == 2
    assert sample(durations, "_count", outcome="miss") == 4
    assert sample(durations, "_bucket", outcome="hit", le="+Inf") == 2
    assert sample(durations, "_count", outcome="stale") == 0  # every outcome is present

    assert sample(found["tina4_sidecar_origin_fetches"], "_total", status="200") == 2
    assert sample(found["tina4_sidecar_origin_duration_seconds"], "_count") == 2
    assert sample(found["tina4_sidecar_coalesced_waiters"], "_total") == 2
    assert sample(found["tina4_sidecar_store_errors"], "_total") == 0
    assert sample(found["tina4_sidecar_store_fallback"]) == 0
    assert sample(found["tina4_sidecar_cache_entries"]) >= 2
    assert sample(found["tina4_sidecar_manifest_rules"]) == 2
    assert sample(found["tina4_sidecar_manifest_ok"]) == 1
    assert sample(found["tina4_sidecar_unreadable_entries"], "_total") == 0
    info = build_info()
    assert sample(found["tina4_sidecar_build_info"], **info) == 1
    assert info["version"] == tina4_sidecar.__version__
    assert info["python"] == platform.python_version()

    openmetrics = await admin_call(
        client_session, base, "metrics", token=TOKEN, headers={"Accept": "application/openmetrics-text"}
    )
    assert openmetrics.headers["Content-Type"].startswith("application/openmetrics-text")
    assert openmetrics.body.endswith("# EOF\n")


async def test_store_errors_are_counted_and_requests_go_on(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = await make_proxy([PRODUCTS], shop_routes(), admin_token=TOKEN)
    base = proxy.url("").rstrip("/")

    async def broken(*_: Any) -> Any:
        raise ConnectionError("store down")

    monkeypatch.setattr(proxy.sidecar.store, "_get_many", broken)
    assert await x_cache(client_session, proxy.url("/products")) == "MISS"
    stats = (await admin_call(client_session, base, "stats", token=TOKEN)).body
    assert stats["store"]["errors"] >= 1
    assert "store down" in stats["store"]["last_error"]
    metrics = families((await admin_call(client_session, base, "metrics", token=TOKEN)).body)
    assert sample(metrics["tina4_sidecar_store_errors"], "_total") == stats["store"]["errors"]


async def test_each_sidecar_has_its_own_registry(
    make_proxy: Callable[..., Any], client_session: aiohttp.ClientSession
) -> None:
    busy = await make_proxy([PRODUCTS], shop_routes(), admin_token=TOKEN)
    idle = await make_proxy([PRODUCTS], shop_routes(), admin_token=TOKEN)
    assert await x_cache(client_session, busy.url("/products")) == "MISS"
    idle_text = (await admin_call(client_session, idle.url("").rstrip("/"), "metrics", token=TOKEN)).body
    assert families(idle_text)["tina4_sidecar_requests"].samples == []
    idle_stats = (await admin_call(client_session, idle.url("").rstrip("/"), "stats", token=TOKEN)).body
    assert (idle_stats["misses"], idle_stats["hit_rate"], idle_stats["routes"]) == (0, 0, {})
    busy_text = (await admin_call(client_session, busy.url("").rstrip("/"), "metrics", token=TOKEN)).body
    assert (
        sample(families(busy_text)["tina4_sidecar_requests"], "_total", outcome="miss", route="/products")
        == 1
    )


def test_durations_fall_into_le_buckets() -> None:
    metrics = Metrics()
    for seconds in (0.0005, 0.0006, 0.2, 100.0):
        metrics.request("hit", "/p", seconds)
    buckets = dict(metrics._durations["hit"].cumulative())
    assert (buckets["0.0005"], buckets["0.001"], buckets["0.25"], buckets["30.0"], buckets["+Inf"]) == (
        1,
        2,
        3,
        3,
        4,
    )
    assert metrics.stats()["routes"]["/p"]["hits"] == 4
