"""The demo app behind a real sidecar process gives MISS then HIT on every store, each a real server."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests.servers import memcached, mongodb, redis
from tests.servers.demo_app import start_demo_app
from tests.servers.postgres import SharedPostgres
from tests.servers.sidecar import start_sidecar


@contextmanager
def store_env(backend: str, workdir: Path) -> Iterator[dict[str, str | None]]:
    """The sidecar's environment for ``backend``, with its server started for the test."""
    with ExitStack() as stack:
        env: dict[str, str | None] = {"TINA4_CACHE_BACKEND": backend.split("-")[0]}
        if backend == "redis":
            env["TINA4_CACHE_URL"] = redis.server_url(
                stack.enter_context(redis.serving(redis.redis_server()))
            )
        elif backend == "valkey":
            server = stack.enter_context(redis.serving(redis.valkey_server()))
            env["TINA4_CACHE_URL"] = redis.server_url(server, scheme="valkey")
        elif backend == "memcached":
            (server,) = stack.enter_context(memcached.serving(memcached.memcached_server()))
            env["TINA4_CACHE_URL"] = memcached.server_url(server)
        elif backend == "mongodb":
            env["TINA4_CACHE_URL"] = mongodb.server_url(
                stack.enter_context(mongodb.serving(mongodb.mongodb_server()))
            )
        elif backend == "database-postgres":
            postgres = SharedPostgres()
            stack.callback(postgres.drop_all)
            env["TINA4_CACHE_URL"] = postgres.fresh_schema_url()
        elif backend == "database-sqlite":
            env["TINA4_CACHE_URL"] = None  # the embedded default under TINA4_CACHE_DIR
        yield env


def get(url: str) -> tuple[str | None, bytes, str | None]:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.headers.get("X-Cache"), reply.read(), reply.headers.get("Content-Type")


@pytest.mark.parametrize(
    "backend",
    ["memory", "file", "redis", "valkey", "memcached", "mongodb", "database-postgres", "database-sqlite"],
)
def test_miss_then_hit(tmp_path: Path, backend: str) -> None:
    with store_env(backend, tmp_path) as env:
        app = start_demo_app(tmp_path / "app")
        try:
            sidecar = start_sidecar(app.port, tmp_path / "sidecar", env=env)
            try:
                url = f"http://127.0.0.1:{sidecar.port}/api/products?t={backend}"
                miss = get(url)
                hit = get(url)
                assert miss[0] == "MISS"
                assert hit[0] == "HIT"
                assert hit[1:] == miss[1:]
                assert f"(store: {env['TINA4_CACHE_BACKEND']}" in sidecar.log_text()  # no fallback
            finally:
                sidecar.stop()
        finally:
            app.stop()
