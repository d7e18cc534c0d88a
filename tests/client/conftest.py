"""Fixtures of the client library's tests: the key/value API on real stores, set up through env.

``kv_backend`` is parametrised over memory, file, Redis (one redis-server for the session) and
the PostgreSQL ``database`` store (a fresh schema on the shared server). Each test gets its own
namespace, cache directory and working directory, every outside ``TINA4_*`` variable removed,
and the client's bridge reset before and after, so the API re-reads the environment.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.servers.postgres import postgres_url, shared_postgres  # noqa: F401  (fixtures)
from tests.servers.process import ServerProcess
from tests.servers.redis import raw_client, redis_server, server_url, serving
from tina4_sidecar.client import runtime
from tina4_sidecar.config import CacheSettings
from tina4_sidecar.store.backends.database import TABLE
from tina4_sidecar.store.backends.file import decode_entry
from tina4_sidecar.store.contract import Store
from tina4_sidecar.store.factory import open_store

BACKENDS = ["memory", "file", "redis", "database"]


def unique_namespace() -> str:
    return f"tina4:client-{uuid.uuid4().hex[:12]}"


def in_thread[T](coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a fresh loop in a fresh thread: usable from sync and async tests alike."""
    result: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(30)
    if errors:
        raise errors[0]
    return result[0]


@dataclass
class KvBackend:
    """The store the client API uses in this test, described by its environment."""

    name: str
    env: dict[str, str]
    workdir: Path
    redis: ServerProcess | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.env["TINA4_CACHE_NAMESPACE"]

    def settings(self, namespace: str | None = None) -> CacheSettings:
        values: dict[str, Any] = {
            "cache_backend": self.name,
            "cache_url": self.env.get("TINA4_CACHE_URL"),
            "cache_dir": self.env["TINA4_CACHE_DIR"],
            "cache_namespace": namespace or self.namespace,
        }
        return CacheSettings(_env_file=None, **values)  # type: ignore[call-arg]

    def with_store[T](self, layer: str, use: Any, namespace: str | None = None) -> T:
        """``await use(store)`` on a store of our own (not the client's) for ``layer``."""

        async def run() -> T:
            store: Store = await open_store(self.settings(namespace), layer)
            try:
                result: T = await use(store)
                return result
            finally:
                await store.close()

        return in_thread(run())

    def peek(self, layer: str, key: str, namespace: str | None = None) -> bytes | None:
        return self.with_store(layer, lambda store: store.get(key), namespace)

    def put(self, layer: str, key: str, value: bytes, namespace: str | None = None) -> bool:
        return self.with_store(layer, lambda store: store.set(key, value, 0), namespace)

    def raw_keys(self) -> set[str] | None:
        """Every full key the backend holds, read with its own client, not our store code
        (None for the memory store, which has no client of its own)."""
        if self.name == "redis":
            assert self.redis is not None
            return {key.decode() for key in raw_client(self.redis).keys("*")}
        if self.name == "database":
            with psycopg.connect(self.env["TINA4_CACHE_URL"]) as conn:
                return {row[0] for row in conn.execute(f"SELECT cache_key FROM {TABLE}")}
        if self.name == "file":
            files = (p for p in Path(self.env["TINA4_CACHE_DIR"]).rglob("*") if p.is_file())
            return {decode_entry(p.read_bytes()).key for p in files if _is_entry(p)}
        return None


@pytest.fixture(scope="session")
def client_redis() -> Iterator[ServerProcess]:
    """One redis-server for the client tests; each test has a namespace of its own."""
    with serving(redis_server()) as server:
        yield server


def clean_env(monkeypatch: pytest.MonkeyPatch, workdir: Path, env: dict[str, str]) -> None:
    """Only ``env`` of the ``TINA4_*`` variables, and a working directory without a ``.env``."""
    for name in list(os.environ):
        if name.startswith("TINA4_"):
            monkeypatch.delenv(name)
    workdir.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(workdir)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(params=BACKENDS)
def kv_backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[KvBackend]:
    name: str = request.param
    env = {
        "TINA4_CACHE_BACKEND": name,
        "TINA4_CACHE_NAMESPACE": unique_namespace(),
        "TINA4_CACHE_DIR": str(tmp_path / "cache"),
    }
    redis = None
    if name == "redis":
        redis = request.getfixturevalue("client_redis")
        env["TINA4_CACHE_URL"] = server_url(redis)
    elif name == "database":
        env["TINA4_CACHE_URL"] = request.getfixturevalue("postgres_url")
    clean_env(monkeypatch, tmp_path / "work", env)
    runtime.reset()
    try:
        yield KvBackend(name, env, tmp_path, redis)
    finally:
        runtime.reset()


@pytest.fixture
def memory_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KvBackend]:
    """The default store only, for tests about the API rather than the stores."""
    env = {
        "TINA4_CACHE_BACKEND": "memory",
        "TINA4_CACHE_NAMESPACE": unique_namespace(),
        "TINA4_CACHE_DIR": str(tmp_path / "cache"),
    }
    clean_env(monkeypatch, tmp_path / "work", env)
    runtime.reset()
    try:
        yield KvBackend("memory", env, tmp_path)
    finally:
        runtime.reset()


def _is_entry(path: Path) -> bool:
    """Entry files are named by a sha256 in hex; locks and temporary files are not entries."""
    name = path.name
    return ".trash" not in path.parts and len(name) == 64 and all(c in "0123456789abcdef" for c in name)
