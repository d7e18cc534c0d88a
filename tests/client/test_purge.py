"""Purges from app code reach running sidecars through the shared store.

A real Tina4 demo app with two real sidecars in front of it, all on one redis-server and one
namespace. The purges are called from this test process (a process of its own, like an app
worker or a script) and from the app process (``POST /api/kvstore/purge``); after each, the
next request through either sidecar is a MISS.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.client.conftest import clean_env, unique_namespace
from tests.servers.demo_app import DemoApp, start_demo_app
from tests.servers.process import ServerProcess
from tests.servers.redis import server_url
from tests.servers.sidecar import start_sidecar
from tina4_sidecar.client import (
    apurge_route,
    apurge_tag,
    purge_all,
    purge_route,
    purge_tag,
    purge_url,
    runtime,
)


@dataclass
class Stack:
    app: DemoApp
    sidecars: list[ServerProcess]
    env: dict[str, str]

    def fetch(self, path: str, sidecar: int = 0) -> str:
        """The X-Cache of ``GET path`` through one sidecar."""
        url = f"http://127.0.0.1:{self.sidecars[sidecar].port}{path}"
        with urllib.request.urlopen(url, timeout=10) as reply:
            reply.read()
            return str(reply.headers.get("X-Cache"))

    def purged(self, path: str, sidecar: int = 0) -> bool:
        """True once ``GET path`` is a MISS through one sidecar, polled within the push bound: a
        near-cache copy on Redis is dropped when the purge's pub/sub message arrives (milliseconds;
        at worst 0.5 s + TINA4_CACHE_TIMEOUT)."""
        deadline = time.monotonic() + 2.5
        while self.fetch(path, sidecar) != "MISS":
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def warm(self, *paths: str) -> None:
        """Until each path is a HIT through every sidecar (a miss stores in the background)."""
        for path in paths:
            for index in range(len(self.sidecars)):
                deadline = time.monotonic() + 5
                while self.fetch(path, index) != "HIT":
                    assert time.monotonic() < deadline, f"{path} never became a HIT"
                    time.sleep(0.02)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, client_redis: ServerProcess) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("purge")
    env = {
        "TINA4_CACHE_BACKEND": "redis",
        "TINA4_CACHE_URL": server_url(client_redis),
        "TINA4_CACHE_NAMESPACE": unique_namespace(),
    }
    app = start_demo_app(workdir / "app", env={**env, "TINA4_CACHE_DIR": str(workdir / "app-cache")})
    sidecars: list[ServerProcess] = []
    try:
        for index in range(2):
            sidecars.append(start_sidecar(app.port, workdir / f"sidecar-{index}", env=dict(env)))
        yield Stack(app, sidecars, env)
    finally:
        for sidecar in sidecars:
            sidecar.stop()
        app.stop()


@pytest.fixture
def purging(stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """This process configured like the app: the same store and namespace."""
    clean_env(monkeypatch, tmp_path / "work", {**stack.env, "TINA4_CACHE_DIR": str(tmp_path / "cache")})
    runtime.reset()
    try:
        yield stack
    finally:
        runtime.reset()


def test_purge_route_drops_every_query_variant_on_every_sidecar(purging: Stack) -> None:
    purging.warm("/api/products", "/api/products?page=2", "/api/products/1")
    assert purge_route("/api/products") is True
    assert purging.purged("/api/products", 0)
    assert purging.purged("/api/products?page=2", 1)
    assert purging.fetch("/api/products/1") == "HIT"  # another route


def test_purge_url_drops_one_url_ignoring_tracking_parameters(purging: Stack) -> None:
    purging.warm("/api/products?page=1", "/api/products?page=2", "/api/products/2")
    assert purge_url("/api/products?utm_source=mail&page=1") is True
    assert purging.purged("/api/products?page=1", 1)
    assert purging.fetch("/api/products?page=2", 1) == "HIT"
    assert purge_url("http://example.com/api/products/2") is True  # any host
    assert purging.purged("/api/products/2")


def test_purge_tag_drops_the_tagged_responses(purging: Stack) -> None:
    purging.warm("/api/kvstore/tagged", "/api/products/3")
    assert purge_tag("catalog") is True
    assert purging.purged("/api/kvstore/tagged", 1)
    assert purging.fetch("/api/products/3") == "HIT"


def test_purge_all_drops_everything(purging: Stack) -> None:
    purging.warm("/api/products", "/api/products/1", "/api/kvstore/tagged")
    assert purge_all() is True
    assert [purging.fetch(p, 1) for p in ("/api/products", "/api/products/1", "/api/kvstore/tagged")] == [
        "MISS"
    ] * 3


async def test_the_async_twins_purge_too(purging: Stack) -> None:
    purging.warm("/api/products", "/api/kvstore/tagged")
    assert await apurge_route("/api/products") is True
    assert await apurge_tag("catalog") is True
    assert purging.purged("/api/products")
    assert purging.purged("/api/kvstore/tagged")


def test_a_purge_from_the_app_process_reaches_the_sidecars(purging: Stack) -> None:
    purging.warm("/api/products")
    request = urllib.request.Request(
        purging.app.url + "/api/kvstore/purge",
        data=json.dumps({"route": "/api/products"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert json.loads(reply.read()) == {"purged": True}
    assert purging.purged("/api/products", 1)
