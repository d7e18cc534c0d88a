"""The demo app as a real process: its manifest, Tina4's in-app cache stepping aside, raw bytes.

On Tina4's built-in server (``python app.py``) and under uvicorn with two workers.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

from tests.servers.demo_app import MANIFEST_PATH, DemoApp, start_demo_app
from tina4_sidecar.config.rules import parse_manifest, read_manifest

# (path, cache, ttl, source) of every route the demo registers, in registration order.
DEMO_ROUTES = [
    ("/api/products", True, 300, "middleware-string"),
    ("/api/products/{id:int}", True, 300, "middleware-string"),
    ("/api/b", True, 60, "middleware-class"),
    ("/api/c", True, 120, "cached-decorator"),
    ("/api/store/products", True, 300, "middleware-string"),
    ("/api/slow", True, 60, "middleware-string"),
    ("/api/time", False, 0, "none"),
    ("/api/binary", True, 60, "middleware-string"),
    ("/api/with-cookie", True, 60, "middleware-string"),
    ("/api/private", True, 60, "middleware-string"),
    ("/api/whoami", True, 60, "middleware-string"),
    ("/api/calls", False, 0, "none"),
    ("/api/forms/router-string", True, 45, "middleware-string"),
    ("/api/forms/decorator-string", True, 30, "middleware-string"),
    ("/api/forms/route-cached", True, 60, "route-cached"),
    ("/api/forms/statuses", True, 90, "middleware-string"),
    ("/api/forms/disabled", False, 0, "middleware-string"),
    ("/api/shadow/{name}", False, 0, "none"),
    ("/api/shadow/fixed", True, 300, "middleware-string"),
]


@dataclass
class Reply:
    status: int
    headers: Message
    body: bytes

    def json(self) -> dict[str, object]:
        data = json.loads(self.body)
        assert isinstance(data, dict)
        return data


def fetch(url: str, **headers: str) -> Reply:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return Reply(reply.status, reply.headers, reply.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, error.headers, error.read())


def app_routes(manifest: bytes) -> list[tuple[str, bool, int, str]]:
    rules = parse_manifest(manifest)
    return [(r.path, r.cache, r.ttl, r.source) for r in rules if r.path.startswith("/api/")]


def test_manifest_lists_every_route_with_its_ttl_and_source(demo_app: DemoApp) -> None:
    reply = fetch(demo_app.url + MANIFEST_PATH)
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.headers["Cache-Control"] == "no-store"
    # The core routes first, in order; the example modules imported after them add their own.
    routes = app_routes(reply.body)
    assert routes[: len(DEMO_ROUTES)] == DEMO_ROUTES
    assert ("/api/big", True, 60, "middleware-string") in routes[len(DEMO_ROUTES) :]
    manifest = read_manifest(reply.body)
    assert manifest.default_ttl == 60
    assert manifest.tina4_version
    # Tina4's own routes are listed too (uncached); the manifest route is not.
    paths = [rule.path for rule in manifest.rules]
    assert "/health" in paths
    assert MANIFEST_PATH not in paths
    statuses = manifest.rules.match("GET", "/api/forms/statuses")
    assert statuses is not None
    assert statuses.statuses == (200, 404)
    shadowed = manifest.rules.match("GET", "/api/shadow/fixed")
    assert shadowed is not None
    assert (shadowed.path, shadowed.cache) == ("/api/shadow/{name}", False)


def test_manifest_etag_and_304(demo_app: DemoApp) -> None:
    first = fetch(demo_app.url + MANIFEST_PATH)
    etag = first.headers["ETag"]
    assert etag.startswith('W/"')
    again = fetch(demo_app.url + MANIFEST_PATH, **{"If-None-Match": etag})
    assert again.status == 304
    assert again.body == b""
    assert again.headers["ETag"] == etag
    other = fetch(demo_app.url + MANIFEST_PATH, **{"If-None-Match": 'W/"something-else"'})
    assert other.status == 200
    assert other.body == first.body


def test_class_form_ttl_follows_tina4_cache_ttl(tmp_path: Path) -> None:
    app = start_demo_app(tmp_path / "app", env={"TINA4_CACHE_TTL": "7"})
    try:
        manifest = read_manifest(fetch(app.url + MANIFEST_PATH).body)
    finally:
        app.stop()
    by_path = {rule.path: rule for rule in manifest.rules}
    assert manifest.default_ttl == 7
    assert (by_path["/api/b"].ttl, by_path["/api/forms/route-cached"].ttl) == (7, 7)
    assert (by_path["/api/products"].ttl, by_path["/api/c"].ttl) == (300, 120)


def test_in_app_cache_steps_aside(demo_app: DemoApp) -> None:
    first = fetch(demo_app.url + "/api/products")
    second = fetch(demo_app.url + "/api/products")
    assert first.status == second.status == 200
    assert first.json()["generated_at"] != second.json()["generated_at"]
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == (None, None)
    assert fetch(demo_app.url + "/api/calls").json()["list_products"] == 2


def test_without_step_aside_tina4_serves_its_own_hit(tmp_path: Path) -> None:
    app = start_demo_app(tmp_path / "app", env={"DEMO_STEP_ASIDE": "false"})
    try:
        first = fetch(app.url + "/api/products")
        second = fetch(app.url + "/api/products")
        calls = fetch(app.url + "/api/calls").json()
    finally:
        app.stop()
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    assert second.body == first.body
    assert calls["list_products"] == 1


def test_json_routes_say_json_and_binary_bytes_arrive_unchanged(demo_app: DemoApp) -> None:
    for path in ("/api/products", "/api/products/2", "/api/store/products?category=Fitness", "/api/time"):
        reply = fetch(demo_app.url + path)
        assert reply.status == 200, path
        assert reply.headers["Content-Type"] == "application/json", path
    first = fetch(demo_app.url + "/api/binary")
    second = fetch(demo_app.url + "/api/binary")
    assert first.headers["Content-Type"] == "application/octet-stream"
    assert first.body[:256] == bytes(range(256))
    assert len(first.body) == int(first.headers["Content-Length"]) == 256 + 4096
    assert second.body[:256] == bytes(range(256))
    assert second.body != first.body


def test_demo_routes_behave(demo_app: DemoApp) -> None:
    assert fetch(demo_app.url + "/api/products/99").status == 404
    assert fetch(demo_app.url + "/api/products/abc").status == 404
    page = fetch(demo_app.url + "/api/store/products?category=Electronics&page=2&limit=2").json()
    assert (page["page"], page["limit"], page["total"], page["pages"]) == (2, 2, 3, 2)
    cookie = fetch(demo_app.url + "/api/with-cookie")
    assert "demo_visit=1" in cookie.headers["Set-Cookie"]
    assert fetch(demo_app.url + "/api/private").headers["Cache-Control"] == "private"
    who = fetch(demo_app.url + "/api/whoami", Cookie="session=alice", Authorization="Bearer bob").json()
    assert (who["cookie"], who["authorization"]) == ("session=alice", "Bearer bob")
    body = bytes(range(256)) * 4
    request = urllib.request.Request(demo_app.url + "/api/echo", data=body, method="POST")
    request.add_header("Content-Type", "application/octet-stream")
    with urllib.request.urlopen(request, timeout=10) as reply:
        echoed = json.loads(reply.read())
    assert echoed["length"] == len(body)


def test_restart_on_the_same_port(demo_app: DemoApp) -> None:
    port = demo_app.port
    fetch(demo_app.url + "/api/time")
    demo_app.stop()
    demo_app.start()
    assert demo_app.port == port
    assert fetch(demo_app.url + "/api/calls").json() == {}  # a new process


def test_uvicorn_workers_all_serve_the_same_manifest(demo_app: DemoApp, tmp_path: Path) -> None:
    builtin = fetch(demo_app.url + MANIFEST_PATH).body
    app = start_demo_app(tmp_path / "uvicorn", mode="uvicorn", workers=2)
    try:
        pids: set[str] = set()
        bodies: set[bytes] = set()
        with ThreadPoolExecutor(16) as pool:
            # Concurrent connections spread over the workers; sequential ones may all reach one.
            for _ in range(20):
                for reply in pool.map(lambda _: fetch(app.url + MANIFEST_PATH), range(32)):
                    assert reply.status == 200
                    pids.add(reply.headers["X-Worker-Pid"])
                    bodies.add(reply.body)
                if len(pids) >= 2:
                    break
        stepped_aside = [fetch(app.url + "/api/products").headers["X-Cache"] for _ in range(8)]
    finally:
        app.stop()
    assert len(pids) == 2
    assert bodies == {builtin}
    assert stepped_aside == [None] * 8


def test_python_app_py_served_by_uvicorn_in_process(tmp_path: Path) -> None:
    # Without TINA4_DEFAULT_WEBSERVER, run() hands the same ASGI app to uvicorn when installed.
    app = start_demo_app(tmp_path / "app", env={"TINA4_DEFAULT_WEBSERVER": "false"})
    try:
        manifest = fetch(app.url + MANIFEST_PATH)
        replies = [fetch(app.url + "/api/products") for _ in range(2)]
    finally:
        app.stop()
    assert "(uvicorn)" in app.log_text()
    assert app_routes(manifest.body)[: len(DEMO_ROUTES)] == DEMO_ROUTES
    assert [r.headers["X-Cache"] for r in replies] == [None, None]
    assert replies[0].body != replies[1].body
