"""Two real sidecar processes sharing a real 3-node Redis Cluster in front of the demo Tina4 app.

A response cached through sidecar A is a HIT through sidecar B (same Host header: the key holds
the host), and a purge made by app code on a store opened on the same cluster URL and namespace
makes the next request through both sidecars a MISS.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
import uuid
from pathlib import Path

from tests.servers.demo_app import start_demo_app
from tests.servers.process import ServerProcess
from tests.servers.redis_cluster import cluster_url, node_client, redis_cluster
from tests.servers.sidecar import start_sidecar
from tina4_sidecar.config import CacheSettings
from tina4_sidecar.store.factory import open_store
from tina4_sidecar.store.fallback import FallbackStore
from tina4_sidecar.store.response_purge import purge_route

HOST = "shop.example.test"


def fetch(sidecar: ServerProcess, path: str) -> tuple[str | None, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{sidecar.port}{path}", headers={"Host": HOST})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return reply.headers.get("X-Cache"), reply.read()


def purged(sidecar: ServerProcess, path: str) -> bool:
    """True once ``path`` is a MISS through ``sidecar``: a near-cache copy is dropped when the
    purge's pub/sub message arrives (milliseconds; at worst 0.5 s + TINA4_CACHE_TIMEOUT)."""
    deadline = time.monotonic() + 2.5
    while fetch(sidecar, path)[0] != "MISS":
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


async def purge(url: str, namespace: str, workdir: Path, path: str) -> None:
    """What app code does: open the shared store and purge a route."""
    settings = CacheSettings(  # type: ignore[call-arg]
        _env_file=None,
        cache_backend="redis",
        cache_url=url,
        cache_namespace=namespace,
        cache_dir=workdir / "purger-cache",
    )
    store = await open_store(settings, "resp")
    try:
        assert not (isinstance(store, FallbackStore) and store.degraded), "the purger fell back"
        assert await purge_route(store, path)
    finally:
        await store.close()


def test_two_sidecars_share_a_cluster_and_a_purge(tmp_path: Path) -> None:
    namespace = f"e2e{uuid.uuid4().hex[:8]}"
    with redis_cluster() as cluster:
        url = cluster_url(cluster)
        env: dict[str, str | None] = {
            "TINA4_CACHE_BACKEND": "redis",
            "TINA4_CACHE_URL": url,
            "TINA4_CACHE_NAMESPACE": namespace,
        }
        app = start_demo_app(tmp_path / "app")
        try:
            a = start_sidecar(app.port, tmp_path / "a", env=env)
            try:
                b = start_sidecar(app.port, tmp_path / "b", env=env)
                try:
                    # One query variant cached through each sidecar, each then a HIT through the other.
                    first, second = "/api/products?cluster=a", "/api/products?cluster=b"
                    miss_a = fetch(a, first)
                    assert miss_a[0] == "MISS"
                    assert fetch(b, first) == ("HIT", miss_a[1])
                    miss_b = fetch(b, second)
                    assert miss_b[0] == "MISS"
                    assert fetch(a, second) == ("HIT", miss_b[1])
                    for sidecar in (a, b):
                        assert "(store: redis" in sidecar.log_text()  # no fallback to the file store
                    keys = sum(
                        len(list(node_client(p).scan_iter(match=f"{namespace}:*"))) for p in cluster.ports
                    )
                    assert keys > 0

                    # The app purges the route (every query variant): the next request through each is a MISS.
                    asyncio.run(purge(url, namespace, tmp_path, "/api/products"))
                    assert purged(a, second)
                    assert purged(b, first)
                    assert fetch(a, first)[0] == "HIT"  # cached again, shared again
                finally:
                    b.stop()
            finally:
                a.stop()
        finally:
            app.stop()
