"""The sync key/value path on real network stores (Redis, memcached, PostgreSQL): it runs the driver
in the caller's thread on a connection that thread keeps, never on the bridge loop, reads what the
async twins (the sidecar's format) wrote and the reverse, and never returns a value that a tag
invalidation, a clear or an overwrite elsewhere made stale, whichever thread's connection reads."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.client.conftest import clean_env
from tests.servers import memcached as mc_servers
from tests.servers import redis as redis_servers
from tests.servers.process import ServerProcess
from tests.store.contract_suite import unique_namespace
from tina4_sidecar.client import (
    Database,
    acache_clear,
    acache_get,
    acache_set,
    ainvalidate_tag,
    cache_get,
    cache_set,
    cache_stats,
    invalidate_tag,
    kv_sync,
    runtime,
)
from tina4_sidecar.store.sync.contract import SyncStore
from tina4_sidecar.store.sync.fallback import SyncFallbackStore
from tina4_sidecar.store.sync.per_thread import PerThread

NETWORK = ["redis", "memcached", "database"]


@pytest.fixture(scope="module")
def kv_memcached() -> Iterator[ServerProcess]:
    with mc_servers.serving(mc_servers.memcached_server()) as (server,):
        yield server


def use_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, backend: str, url: str) -> None:
    env = {
        "TINA4_CACHE_BACKEND": backend,
        "TINA4_CACHE_URL": url,
        "TINA4_CACHE_NAMESPACE": unique_namespace(),
        "TINA4_CACHE_DIR": str(tmp_path / "cache"),
    }
    clean_env(monkeypatch, tmp_path / "work", env)
    runtime.reset()


@pytest.fixture(params=NETWORK)
def network(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name: str = request.param
    if name == "redis":
        url = redis_servers.server_url(request.getfixturevalue("client_redis"))
    elif name == "memcached":
        url = mc_servers.server_url(request.getfixturevalue("kv_memcached"))
    else:
        url = request.getfixturevalue("postgres_url")
    use_store(monkeypatch, tmp_path, name, url)
    try:
        yield name
    finally:
        runtime.reset()


def no_bridge(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, any use of the bridge loop (run_sync, run_async, store_for) fails the test."""

    def refuse() -> None:
        raise AssertionError("a sync call used the bridge event loop")

    monkeypatch.setattr(runtime, "_current", refuse)


def kept_connections(store: SyncStore) -> PerThread[Any]:
    primary = store.primary if isinstance(store, SyncFallbackStore) else store
    conns = getattr(primary, "_conns", None)
    if conns is None:  # the database store keeps them in its SQL engine
        conns = getattr(getattr(primary, "sql", None), "_conns", None)
    assert isinstance(conns, PerThread), f"{type(primary).__name__} keeps no per-thread connections"
    return conns


def in_thread[T](work: Callable[[], T]) -> T:
    found: list[T] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            found.append(work())
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return found[0]


def test_sync_calls_run_without_the_bridge_loop(network: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cache_set("warm", 1)  # opens the stores
    no_bridge(monkeypatch)
    assert cache_set("plain", {"a": 1}, ttl=60)
    assert cache_set("tagged", [1, 2], ttl=60, tags=["t"])
    assert cache_get("plain") == {"a": 1}
    assert cache_get("tagged") == [1, 2]
    assert invalidate_tag("t")
    assert cache_get("tagged") is None
    assert cache_get("missing") is None
    assert in_thread(lambda: cache_get("plain")) == {"a": 1}
    assert cache_stats()["backend"] == network  # the network store served, not the file fallback


def test_each_calling_thread_reads_on_a_connection_of_its_own(network: str) -> None:
    assert cache_set("k", "v", ttl=60)
    conns = kept_connections(kv_sync.stores().values)
    assert cache_get("k") == "v"
    mine = conns.get()
    theirs = in_thread(lambda: (cache_get("k"), conns.get()))
    assert theirs[0] == "v"
    assert mine is not None
    assert theirs[1] is not None
    assert theirs[1] is not mine


def test_values_written_by_the_async_twins_read_back_and_the_reverse(network: str) -> None:
    assert runtime.run_sync(acache_set("from-async", {"n": 1}, 60))
    assert cache_get("from-async") == {"n": 1}
    assert cache_set("from-sync", {"n": 2}, ttl=60)
    assert runtime.run_sync(acache_get("from-sync")) == {"n": 2}
    assert runtime.run_sync(acache_set("from-sync", {"n": 3}, 60))  # overwritten elsewhere
    assert cache_get("from-sync") == {"n": 3}
    assert in_thread(lambda: cache_get("from-sync")) == {"n": 3}


def test_an_invalidation_made_elsewhere_is_seen_by_every_threads_connection(network: str) -> None:
    assert cache_set("tagged", "old", ttl=60, tags=["prices"])
    assert cache_get("tagged") == "old"
    assert in_thread(lambda: cache_get("tagged")) == "old"  # a second kept connection, warmed
    assert runtime.run_sync(ainvalidate_tag("prices"))  # another connection, the async driver
    assert cache_get("tagged") is None
    assert in_thread(lambda: cache_get("tagged")) is None


def test_a_clear_made_elsewhere_is_seen_at_once(network: str) -> None:
    assert cache_set("a", 1, ttl=60)
    assert cache_get("a") == 1
    assert in_thread(lambda: cache_get("a")) == 1
    assert runtime.run_sync(acache_clear())
    assert cache_get("a") is None
    assert in_thread(lambda: cache_get("a")) is None


def test_a_query_cache_hit_on_redis_runs_without_the_bridge_and_a_write_invalidates_it(
    client_redis: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_store(monkeypatch, tmp_path, "memory", "")
    for name, value in {
        "TINA4_AUTO_CACHING": "false",
        "TINA4_DB_CACHE": "true",
        "TINA4_DB_CACHE_BACKEND": "redis",
        "TINA4_DB_CACHE_URL": redis_servers.server_url(client_redis),
    }.items():
        monkeypatch.setenv(name, value)
    runtime.reset()
    try:
        db = Database(f"sqlite:///{tmp_path / 'q.db'}")
        db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("INSERT INTO items (id, name) VALUES (1, 'one')")
        db.commit()
        query = "SELECT id, name FROM items ORDER BY id"
        assert db.fetch_all(query) == [{"id": 1, "name": "one"}]
        no_bridge(monkeypatch)
        assert db.fetch_all(query) == [{"id": 1, "name": "one"}]  # a HIT
        other = Database(f"sqlite:///{tmp_path / 'q.db'}")  # another connection writes
        other.execute("UPDATE items SET name = 'uno' WHERE id = 1")
        other.commit()
        assert db.fetch_all(query) == [{"id": 1, "name": "uno"}]
        assert in_thread(lambda: db.fetch_all(query)) == [{"id": 1, "name": "uno"}]
    finally:
        runtime.reset()


@pytest.mark.parametrize("backend", ["redis", "memcached"])
def test_a_kept_connection_reconnects_after_a_server_restart(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend == "redis":
        server: ServerProcess = redis_servers.redis_server()
        url_of: Callable[[], str] = lambda: redis_servers.server_url(server)  # noqa: E731
    else:
        server = mc_servers.memcached_server()
        url_of = lambda: mc_servers.server_url(server)  # noqa: E731
    server.start()
    try:
        use_store(monkeypatch, tmp_path, backend, url_of())
        assert cache_set("k", "before", ttl=60)
        assert cache_get("k") == "before"
        server.stop()
        server.start()  # same port, empty: its old connections are dead sockets
        assert cache_get("k") is None  # the memory of the old server is gone: never "before"
        assert cache_set("k", "after", ttl=60)
        assert cache_get("k") == "after"
        assert cache_stats()["backend"] == backend  # reconnected, no switch to the file store
    finally:
        runtime.reset()
        server.stop()


def test_a_lost_memcached_generation_never_brings_an_old_value_back(
    kv_memcached: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_store(monkeypatch, tmp_path, "memcached", mc_servers.server_url(kv_memcached))
    try:
        assert cache_set("k", "old", ttl=60)
        assert cache_get("k") == "old"  # this process now holds the generation it saw
        raw = mc_servers.raw_client(kv_memcached)
        gen_key = f"{runtime.settings().cache_namespace}:kv:gen"
        assert raw.delete(gen_key)  # evicted, as memcached may at any time
        assert cache_get("k") is None
        assert in_thread(lambda: cache_get("k")) is None
        raw.close()
    finally:
        runtime.reset()
