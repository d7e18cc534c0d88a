"""The chapter's key/value patterns in a real Tina4 app process (examples/demo_app/store_routes.py).

The exercise's curl sequence (sections 12-13) with one-call invalidation, cache-aside,
event-based invalidation and write-through (sections 7-8), ``cache_get_or_set`` under concurrent
requests, and two app processes on one Redis seeing each other's writes and invalidations.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.client.conftest import unique_namespace
from tests.servers.demo_app import DemoApp, start_demo_app
from tests.servers.process import ServerProcess
from tests.servers.redis import server_url

ELECTRONICS = "/api/kvstore/products?category=Electronics&page=1"
FITNESS = "/api/kvstore/products?category=Fitness&page=1"


def call(app: DemoApp, path: str, method: str = "GET", body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(app.url + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def get(app: DemoApp, path: str) -> Any:
    status, body = call(app, path)
    assert status == 200, body
    return body


def app_env(
    tmp_path: Path, backend: str = "memory", url: str | None = None, namespace: str = ""
) -> dict[str, str]:
    env = {
        "TINA4_CACHE_BACKEND": backend,
        "TINA4_CACHE_NAMESPACE": namespace or unique_namespace(),
        "TINA4_CACHE_DIR": str(tmp_path / "cache"),
    }
    if url is not None:
        env["TINA4_CACHE_URL"] = url
    return env


@pytest.fixture
def app(tmp_path: Path) -> Iterator[DemoApp]:
    """One demo app on Tina4's built-in server with the default (memory) store."""
    started = start_demo_app(tmp_path / "app", env=app_env(tmp_path))
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def two_apps(tmp_path: Path, client_redis: ServerProcess) -> Iterator[tuple[DemoApp, DemoApp]]:
    """Two app processes sharing one Redis and one namespace, as two instances of one app."""
    env = app_env(tmp_path, "redis", server_url(client_redis))
    first = start_demo_app(tmp_path / "a", env=env)
    try:
        second = start_demo_app(tmp_path / "b", env=env)
    except BaseException:
        first.stop()
        raise
    try:
        yield first, second
    finally:
        second.stop()
        first.stop()


def test_the_exercise_curl_sequence(app: DemoApp) -> None:
    first = get(app, ELECTRONICS)
    assert first["source"] == "database"
    assert [p["name"] for p in first["products"]] == [
        "Wireless Keyboard",
        "Standing Desk",
        "Bluetooth Speaker",
    ]
    assert (first["page"], first["limit"], first["total"], first["pages"]) == (1, 20, 3, 1)

    second = get(app, ELECTRONICS)
    assert second["source"] == "cache"
    assert {**second, "source": "database"} == first  # the same payload, from the cache

    assert get(app, FITNESS)["source"] == "database"

    status, created = call(
        app,
        "/api/kvstore/products",
        "POST",
        {"name": "Smart Watch", "category": "Electronics", "price": 299.99},
    )
    assert status == 201
    assert created["cache_invalidated"] is True
    assert created["product"]["name"] == "Smart Watch"

    again = get(app, ELECTRONICS)
    assert again["source"] == "database"  # invalidated by the POST
    assert again["total"] == 4
    assert get(app, FITNESS)["source"] == "database"  # every listing, with one call

    stats = get(app, "/api/kvstore/cache-stats")
    assert stats == {"hits": 1, "misses": 4, "size": 2, "backend": "memory"}


def test_cache_aside_event_invalidation_and_write_through(app: DemoApp) -> None:
    assert get(app, "/api/kv/products/1")["source"] == "database"  # cache-aside: miss, then stored
    assert get(app, "/api/kv/products/1")["source"] == "cache"

    status, updated = call(app, "/api/kv/products/1", "PUT", {"price": 69.99})
    assert (status, updated["cache_deleted"]) == (200, True)  # event-based: write, then delete
    fresh = get(app, "/api/kv/products/1")
    assert (fresh["source"], fresh["price"]) == ("database", 69.99)

    status, _ = call(app, "/api/kv/products/1/write-through", "PUT", {"price": 59.99})
    assert status == 200
    warm = get(app, "/api/kv/products/1")
    assert (warm["source"], warm["price"]) == ("cache", 59.99)  # write-through: no miss after it
    assert get(app, "/api/kv/calls")["get_kv_product"] == 2


def test_concurrent_requests_compute_a_value_once(app: DemoApp) -> None:
    with ThreadPoolExecutor(20) as pool:
        bodies = list(pool.map(lambda _: get(app, "/api/kv/report"), range(20)))
    assert len({json.dumps(body, sort_keys=True) for body in bodies}) == 1
    assert get(app, "/api/kv/calls")["kv_report"] == 1


def test_two_app_processes_on_one_redis_share_values_and_invalidations(
    two_apps: tuple[DemoApp, DemoApp],
) -> None:
    a, b = two_apps
    assert get(a, ELECTRONICS)["source"] == "database"
    assert get(b, ELECTRONICS)["source"] == "cache"  # a's write, read by b

    status, _ = call(b, "/api/kvstore/products", "POST", {"name": "Smart Watch", "category": "Electronics"})
    assert status == 201
    assert get(a, ELECTRONICS)["source"] == "database"  # b's invalidation, seen by a

    call(a, "/api/kv/products/2/write-through", "PUT", {"price": 24.99})
    from_b = get(b, "/api/kv/products/2")
    assert (from_b["source"], from_b["price"]) == ("cache", 24.99)  # a's write-through, read by b

    call(b, "/api/kv/products/2", "PUT", {"price": 19.99})  # b deletes the cached copy
    assert get(a, "/api/kv/products/2")["source"] == "database"

    with ThreadPoolExecutor(20) as pool:
        bodies = list(pool.map(lambda i: get((a, b)[i % 2], "/api/kv/report"), range(20)))
    assert len({json.dumps(body, sort_keys=True) for body in bodies}) == 1
    assert get(a, "/api/kv/calls").get("kv_report", 0) + get(b, "/api/kv/calls").get("kv_report", 0) == 1

    stats_a, stats_b = get(a, "/api/kvstore/cache-stats"), get(b, "/api/kvstore/cache-stats")
    assert stats_a["backend"] == stats_b["backend"] == "redis"
    assert stats_a["size"] == stats_b["size"]  # one shared store; hits and misses are per process


def test_uvicorn_workers_share_the_store_and_compute_once(
    tmp_path: Path, client_redis: ServerProcess
) -> None:
    """Production mode: ``asgi:app`` under uvicorn with two worker processes on one Redis."""
    app = start_demo_app(
        tmp_path / "uvicorn",
        mode="uvicorn",
        workers=2,
        env=app_env(tmp_path, "redis", server_url(client_redis)),
    )
    try:
        first = get(app, ELECTRONICS)
        replies: list[tuple[str, str]] = []
        with ThreadPoolExecutor(16) as pool:
            for _ in range(10):  # concurrent connections spread over the workers, usually at once
                replies += pool.map(lambda _: fetch_with_pid(app, ELECTRONICS), range(32))
                if len({pid for pid, _ in replies}) == 2:
                    break
            reports = list(pool.map(lambda _: get(app, "/api/kv/report"), range(16)))
        status, _ = call(
            app, "/api/kvstore/products", "POST", {"name": "Smart Watch", "category": "Electronics"}
        )
        after = get(app, ELECTRONICS)
    finally:
        app.stop()
    assert first["source"] == "database"
    assert len({pid for pid, _ in replies}) == 2  # both workers answered ...
    assert {source for _, source in replies} == {"cache"}  # ... from the one value in Redis
    assert len({json.dumps(r, sort_keys=True) for r in reports}) == 1  # one generated_at: computed once
    assert status == 201
    assert after["source"] == "database"


def fetch_with_pid(app: DemoApp, path: str) -> tuple[str, str]:
    with urllib.request.urlopen(app.url + path, timeout=10) as reply:
        return str(reply.headers["X-Worker-Pid"]), str(json.loads(reply.read())["source"])
