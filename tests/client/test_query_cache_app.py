"""The query cache in a real Tina4 app process (examples/demo_app/catalog_routes.py).

The chapter's section 11 example answers, and the request-scoped layer, hooked by ``install()``,
de-duplicates within one request and starts empty at the next, on Tina4's built-in server and
under uvicorn with two workers, also while another request writes in the middle of one.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.client.conftest import unique_namespace
from tests.servers.demo_app import DemoApp, start_demo_app

PROBE = {"first": 40, "again": 40, "first_was_a_miss": True, "again_was_a_hit": True, "mode": "request"}


def call(app: DemoApp, path: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(app.url + path, data=data, method="POST" if data else "GET")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=15) as reply:
        assert reply.status in (200, 201)
        return json.loads(reply.read())


@pytest.fixture(params=["builtin", "uvicorn"])
def catalog_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DemoApp]:
    env = {  # the file store: the key/value layer is shared by the uvicorn workers
        "TINA4_CACHE_BACKEND": "file",
        "TINA4_CACHE_NAMESPACE": unique_namespace(),
        "TINA4_CACHE_DIR": str(tmp_path / "cache"),
    }
    if request.param == "builtin":
        app = start_demo_app(tmp_path / "app", env=env)
    else:
        app = start_demo_app(tmp_path / "app", mode="uvicorn", workers=2, env=env)
    try:
        yield app
    finally:
        app.stop()


def test_the_chapters_combined_layers_example_answers(catalog_app: DemoApp) -> None:
    first = call(catalog_app, "/api/catalog")
    assert (first["cache"], first["page"], first["total"], first["pages"]) == ("none", 1, 40, 2)
    assert len(first["products"]) == 20
    newest = first["products"][0]
    assert newest["category_name"] in {"Electronics", "Fitness", "Kitchen"}
    assert newest["active"] == 1
    assert [p["created_at"] for p in first["products"]] == sorted(
        (p["created_at"] for p in first["products"]), reverse=True
    )
    second = call(catalog_app, "/api/catalog")
    assert second == {**first, "cache": "kv"}  # the key/value layer (the sidecar caches responses)
    page_two = call(catalog_app, "/api/catalog?page=2")
    assert (page_two["page"], len(page_two["products"])) == (2, 20)
    assert not {p["id"] for p in page_two["products"]} & {p["id"] for p in first["products"]}


def test_the_request_scope_dedupes_within_a_request_and_starts_empty_at_the_next(
    catalog_app: DemoApp,
) -> None:
    # Three requests on ONE keep-alive connection: Tina4's built-in server serves them in one task
    # (one context), so only the reset at each request's start keeps them apart.
    connection = http.client.HTTPConnection("127.0.0.1", catalog_app.port, timeout=15)
    try:
        for _ in range(3):
            connection.request("GET", "/api/catalog/request-cache")
            reply = connection.getresponse()
            assert reply.status == 200
            assert reply.getheader("Connection", "").lower() != "close"
            assert json.loads(reply.read()) == PROBE
    finally:
        connection.close()
    assert call(catalog_app, "/api/catalog/request-cache") == PROBE

    results: dict[str, Any] = {}
    slow = threading.Thread(
        target=lambda: results.update(slow=call(catalog_app, "/api/catalog/request-cache?pause=1.0"))
    )
    slow.start()
    time.sleep(0.3)  # the slow request has read once and is sleeping
    call(catalog_app, "/api/catalog/products", {"name": "Smart Watch", "category_id": 1})
    after = call(catalog_app, "/api/catalog/request-cache")
    slow.join(15)
    # The write of another request neither reaches the slow request's scope nor is served from it.
    assert results["slow"] == PROBE
    assert after == {**PROBE, "first": 41, "again": 41}
