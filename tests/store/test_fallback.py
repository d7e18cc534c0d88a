"""The graceful fallback on real servers: unreachable, refused, killed, hung, restarted, missing driver.

Servers are stopped and started for real (``ServerProcess``); the probe interval is 0.2 s so that
a recovery takes a fraction of a second. The contract suite runs twice over a FallbackStore: on a
healthy Redis, and degraded onto the file store.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.servers import memcached
from tests.servers.process import ServerProcess, free_port
from tests.servers.redis import raw_client, redis_server, server_url, serving, stop_with_snapshot
from tests.store.contract_suite import (
    AddSuite,
    ContractSuite,
    ForeignExists,
    ForeignWrite,
    StoreMaker,
    StoreSpec,
    store_factory,
    unique_namespace,
)
from tests.store.test_file import foreign_paths
from tests.store.test_memcached import stored_keys
from tina4_sidecar.config import Backend, CacheSettings
from tina4_sidecar.store.backends.file import FileStore, encode_entry
from tina4_sidecar.store.backends.redis import RedisStore
from tina4_sidecar.store.contract import Store
from tina4_sidecar.store.factory import open_store, with_fallback
from tina4_sidecar.store.fallback import DeletesMany, FallbackStore

pytestmark = pytest.mark.backend

PROBE = 0.2
SWITCH_MESSAGE = "caching in the file store"
RECOVERY_MESSAGE = "answers again"


def make_settings(
    url: str, tmp_path: Path, namespace: str | None = None, **overrides: object
) -> CacheSettings:
    values: dict[str, object] = {
        "cache_backend": "redis",
        "cache_url": url,
        "cache_dir": tmp_path / "cache",
        "cache_namespace": namespace or unique_namespace(),
        "cache_probe_interval": PROBE,
        "cache_timeout": 0.5,
        **overrides,
    }
    return CacheSettings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


def closed_port_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


async def file_view(settings: CacheSettings, layer: str = "kv") -> FileStore:
    """The file store that a FallbackStore of ``settings`` falls back to, opened on its own."""
    store = FileStore.from_settings(settings, layer)
    await store.open()
    return store


async def wait_until(condition: Callable[[], bool], within: float) -> float:
    """Seconds until ``condition()`` held; fails the test after ``within`` seconds."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            pytest.fail(f"condition not met within {within}s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    """A server of this test's own, free to stop and restart."""
    with serving(redis_server()) as running:
        yield running


@pytest.fixture(scope="module")
def shared_server() -> Iterator[ServerProcess]:
    with serving(redis_server()) as running:
        yield running


# -- the contract, through the fallback ------------------------------------------------------------


class TestContractOnAHealthyPrimary(ContractSuite, AddSuite):
    backend_name = "redis"

    @pytest.fixture
    def store_spec(self, shared_server: ServerProcess) -> StoreSpec:
        """Other processes reach the same healthy Redis directly."""
        return StoreSpec("redis", url=server_url(shared_server))

    @pytest.fixture
    async def make_store(self, shared_server: ServerProcess, tmp_path: Path) -> AsyncIterator[StoreMaker]:
        url = server_url(shared_server)

        def build(namespace: str, layer: str) -> Store:
            return with_fallback(make_settings(url, tmp_path, namespace), layer, Backend.REDIS)

        async with store_factory(build) as make:
            yield make

    @pytest.fixture
    def foreign_write(self, shared_server: ServerProcess) -> ForeignWrite:
        async def write(raw_key: str, value: bytes) -> None:
            raw_client(shared_server).set(raw_key, value)

        return write

    @pytest.fixture
    def foreign_exists(self, shared_server: ServerProcess) -> ForeignExists:
        async def exists(raw_key: str) -> bool:
            return bool(raw_client(shared_server).exists(raw_key))

        return exists


class TestContractDegradedToTheFileStore(ContractSuite, AddSuite):
    backend_name = "file"

    @pytest.fixture
    def store_spec(self, tmp_path: Path) -> StoreSpec:
        """Degraded, this store is the file store in ``cache_dir``: other processes race there."""
        return StoreSpec("file", settings={"cache_dir": str(tmp_path / "cache")})

    @pytest.fixture
    async def make_store(self, tmp_path: Path) -> AsyncIterator[StoreMaker]:
        url = closed_port_url()

        def build(namespace: str, layer: str) -> Store:
            settings = make_settings(url, tmp_path, namespace, cache_probe_interval=60)
            return with_fallback(settings, layer, Backend.REDIS)

        async with store_factory(build) as make:
            yield make

    @pytest.fixture
    def foreign_write(self, tmp_path: Path) -> ForeignWrite:
        async def write(raw_key: str, value: bytes) -> None:
            for path in foreign_paths(tmp_path, raw_key):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(encode_entry(raw_key, value, 0.0))

        return write

    @pytest.fixture
    def foreign_exists(self, tmp_path: Path) -> ForeignExists:
        async def exists(raw_key: str) -> bool:
            return all(path.is_file() for path in foreign_paths(tmp_path, raw_key))

        return exists


# -- at open ---------------------------------------------------------------------------------------------


async def test_unreachable_server_falls_back_quickly_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(closed_port_url(), tmp_path)
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="tina4_sidecar.store"):
        store = await open_store(settings, "kv")
    try:
        assert time.monotonic() - started < 3
        assert isinstance(store, FallbackStore)
        assert (store.degraded, store.backend_name) == (True, "file")
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1, warnings
        assert "redis" in warnings[0]
        assert "unreachable" in warnings[0]
        assert str(tmp_path / "cache") in warnings[0]

        assert await store.set("k", b"in a file", 60) is True
        assert await store.get("k") == b"in a file"
        assert await (await file_view(settings)).get("k") == b"in a file"
        stats = await store.stats()
        assert stats.as_spec_dict() == {"hits": 1, "misses": 0, "size": 1, "backend": "file"}
        assert stats.fallback is True
        assert stats.extra["primary"] == "redis"
        assert "unreachable" in str(stats.extra["last_error"])
        assert stats.as_dict()["fallback"] is True
    finally:
        await store.close()


async def test_a_server_that_appears_later_takes_over_within_two_probes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    late = redis_server()  # not started yet: its port is closed
    settings = make_settings(server_url(late), tmp_path)
    store = await open_store(settings, "kv")
    assert isinstance(store, FallbackStore)
    try:
        assert store.degraded
        await store.set("written-while-down", b"file", 60)
        with serving(late), caplog.at_level(logging.INFO, logger="tina4_sidecar.store"):
            took = await wait_until(lambda: not store.degraded, 2 * PROBE + 1.0)
            assert took < 2 * PROBE + 0.5
            assert store.backend_name == "redis"
            assert await store.set("k", b"in redis", 60) is True
            assert raw_client(late).get(store.full_key("k")) == b"in redis"
            assert len(messages(caplog, RECOVERY_MESSAGE)) == 1
            assert (await store.stats()).fallback is False
    finally:
        await store.close()


async def test_memory_and_file_are_opened_without_a_fallback(tmp_path: Path) -> None:
    settings = make_settings(closed_port_url(), tmp_path)
    for backend, name in ((Backend.MEMORY, "memory"), (Backend.FILE, "file")):
        store = await open_store(settings, "kv", backend)
        try:
            assert not isinstance(store, FallbackStore)
            assert store.backend_name == name
        finally:
            await store.close()


def test_a_missing_driver_falls_back_to_the_file_store(tmp_path: Path) -> None:
    """A real interpreter in which redis-py is not installed, not a patched import.

    The child runs without the default site directories (``-S``) and adds a copy of this venv's
    site-packages made of symlinks to everything except the ``redis`` distribution.
    """
    site_packages = Path(redis.__file__).resolve().parents[1]
    without_redis = tmp_path / "site-packages-without-redis"
    without_redis.mkdir()
    for entry in site_packages.iterdir():
        if entry.name != "redis" and not entry.name.startswith("redis-"):
            (without_redis / entry.name).symlink_to(entry)
    script = textwrap.dedent(
        """
        import asyncio, json, logging, site, sys
        site.addsitedir(sys.argv[1])
        try:
            import redis
        except ImportError:
            pass
        else:
            raise SystemExit("redis-py is importable: the test environment is wrong")
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
        from tina4_sidecar.config import CacheSettings
        from tina4_sidecar.store.factory import open_store

        async def main():
            settings = CacheSettings(
                _env_file=None, cache_backend="redis", cache_url="redis://127.0.0.1:1",
                cache_dir=sys.argv[2], cache_probe_interval=0.05,
            )
            store = await open_store(settings, "kv")
            ok = await store.set("k", b"v", 60)
            got = await store.get("k")
            await asyncio.sleep(0.2)  # a probe would have run by now
            stats = (await store.stats()).as_dict()
            print(json.dumps({"type": type(store).__name__, "ok": ok, "got": got.decode(), "stats": stats}))
            await store.close()

        asyncio.run(main())
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "TINA4_"))}
    done = subprocess.run(
        [sys.executable, "-S", "-c", script, str(without_redis), str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["type"] == "FallbackStore"
    assert (result["ok"], result["got"]) == (True, "v")
    stats = result["stats"]
    assert (stats["backend"], stats["fallback"], stats["primary"], stats["size"]) == (
        "file",
        True,
        "redis",
        1,
    )
    assert "redis" in stats["last_error"]
    log_lines = [line for line in done.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert len(log_lines) == 1, done.stderr
    assert "driver is missing" in log_lines[0]
    assert str(tmp_path / "cache") in log_lines[0]


# -- at run time -------------------------------------------------------------------------------------------


async def test_a_server_killed_mid_run_means_fallback_then_recovery(
    server: ServerProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(server_url(server), tmp_path)
    store = await open_store(settings, "kv")
    assert isinstance(store, FallbackStore)
    caplog.set_level(logging.INFO, logger="tina4_sidecar.store")
    try:
        await store.set("before", b"v", 60)
        assert await store.get("before") == b"v"
        server.stop()

        # every call answers, none raises, while the store notices and switches
        results = await asyncio.gather(*(store.get(f"k{i}") for i in range(20)), store.set("x", b"1", 60))
        assert results[:20] == [None] * 20
        await wait_until(lambda: store.degraded, 2.0)
        stats = await store.stats()
        assert (stats.backend, stats.fallback, stats.extra["primary"]) == ("file", True, "redis")
        assert stats.errors >= 1
        assert stats.extra["last_error"]
        assert stats.hits == 1  # counted before the switch, kept after it

        assert await store.set("during", b"outage", 60) is True
        assert await store.get("during") == b"outage"
        assert await (await file_view(settings)).get("during") == b"outage"
        for _ in range(10):  # more traffic during the outage: still one switch message
            await store.get("during")
        assert len(messages(caplog, SWITCH_MESSAGE)) == 1

        server.start()
        took = await wait_until(lambda: not store.degraded, 2 * PROBE + 1.0)
        assert took < 2 * PROBE + 0.5
        assert len(messages(caplog, RECOVERY_MESSAGE)) == 1
        assert await store.set("after", b"back", 60) is True
        assert raw_client(server).get(store.full_key("after")) == b"back"
        stats = await store.stats()
        assert (stats.backend, stats.fallback) == ("redis", False)
        assert stats.hits >= 12
    finally:
        await store.close()


async def test_a_hung_server_times_out_into_the_fallback_and_recovers(
    server: ServerProcess, tmp_path: Path
) -> None:
    assert server.proc is not None
    settings = make_settings(server_url(server), tmp_path, cache_timeout=0.3)
    store = await open_store(settings, "kv")
    assert isinstance(store, FallbackStore)
    try:
        await store.set("k", b"v", 60)
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            assert await store.get("k") is None
            assert time.monotonic() - started < 0.3 + 0.2  # bounded by the timeout
            await wait_until(lambda: store.degraded, 2.0)
            assert await store.set("during", b"x", 60) is True
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        await wait_until(lambda: not store.degraded, 2 * PROBE + 2.0)
        assert await store.get("k") == b"v"  # the server kept its data
    finally:
        await store.close()


async def test_errors_of_a_server_that_answers_ping_do_not_switch(tmp_path: Path) -> None:
    # Deletes stay allowed: the store invalidates with DEL, and replays and clears with UNLINK.
    no_set = "reader on >pw ~* &* +@all -@write +del +unlink"
    with serving(redis_server(users=[no_set])) as own:
        url = server_url(own, username="reader", password="pw")
        store = await open_store(make_settings(url, tmp_path), "kv")
        assert isinstance(store, FallbackStore)
        try:
            for _ in range(5):
                assert await store.set("k", b"v", 60) is False  # NOPERM: an error, not an outage
            await asyncio.sleep(0.3)  # the health check after the first error has run
            stats = await store.stats()
            assert (stats.fallback, stats.backend, stats.errors) == (False, "redis", 5)
            assert "no permissions to run the 'set' command" in str(stats.extra["last_error"])
            assert not store.outage  # the writes that failed were deleted on the primary (the replay)
        finally:
            await store.close()


# -- what happened during the outage is replayed -------------------------------------------------------------


async def go_down(store: FallbackStore) -> None:
    """A read sees the primary fail; the store is then on the fallback (a deadline, not a speed:
    a loaded CI machine took over 2 s once)."""
    assert await store.get("probe-the-primary") is None
    await wait_until(lambda: store.degraded, 10.0)


async def test_deletes_and_writes_during_the_outage_are_replayed(
    server: ServerProcess, tmp_path: Path
) -> None:
    settings = make_settings(server_url(server), tmp_path)
    store = await open_store(settings, "kv")
    assert isinstance(store, FallbackStore)
    raw = raw_client(server)
    try:
        for key in ("purged", "rewritten", "untouched"):
            await store.set(key, b"old", 0)
        stop_with_snapshot(server)
        await go_down(store)

        await store.delete("purged")
        await store.set("rewritten", b"new, in the file store", 60)

        server.start()
        assert raw.get(store.full_key("untouched")) == b"old"  # the restart kept the data ...
        await wait_until(lambda: not store.degraded, 2 * PROBE + 1.0)
        assert raw.get(store.full_key("purged")) is None  # ... and the replay removed these
        assert raw.get(store.full_key("rewritten")) is None  # (never the stale "old" again)
        assert await store.get_many(["purged", "rewritten", "untouched"]) == [None, None, b"old"]
        assert not store.outage
    finally:
        await store.close()


async def test_a_clear_during_the_outage_clears_the_primary_layer(
    server: ServerProcess, tmp_path: Path
) -> None:
    settings = make_settings(server_url(server), tmp_path)
    store, other_layer = await open_store(settings, "kv"), await open_store(settings, "resp")
    assert isinstance(store, FallbackStore)
    raw = raw_client(server)
    try:
        await store.set("a", b"1", 0)
        await store.set("b", b"2", 0)
        await other_layer.set("a", b"other layer", 0)
        raw.set("tina4:cache:a", b"tina4's own")
        stop_with_snapshot(server)
        await go_down(store)

        assert await store.clear() is True

        server.start()
        await wait_until(lambda: not store.degraded, 2 * PROBE + 1.0)
        assert raw.get(store.full_key("a")) is None
        assert raw.get(store.full_key("b")) is None
        assert raw.get(other_layer.full_key("a")) == b"other layer"
        assert raw.get("tina4:cache:a") == b"tina4's own"
    finally:
        await store.close()
        await other_layer.close()


async def test_the_outage_is_replayed_on_memcached_in_bulk_on_every_server(tmp_path: Path) -> None:
    """A hung server (SIGSTOP) keeps its items: the replay's deletes are what removes them."""
    servers = (memcached.memcached_server(listable=True), memcached.memcached_server(listable=True))
    with memcached.serving(*servers):
        url = memcached.server_url(*servers)
        settings = make_settings(url, tmp_path, cache_backend="memcached", cache_timeout=0.3)
        store = await open_store(settings, "kv")
        assert isinstance(store, FallbackStore)
        assert isinstance(store.primary, DeletesMany)
        try:
            keys = [f"k{i}" for i in range(40)]
            for key in keys:
                await store.set(key, b"old", 0)
            # the server with the generation: every call needs it
            hung = next(s for s in servers if f"{store.prefix}gen" in stored_keys(s, store.prefix))
            assert hung.proc is not None
            os.kill(hung.proc.pid, signal.SIGSTOP)
            try:
                await go_down(store)
                for key in keys[:30]:  # on both servers
                    await store.delete(key)
            finally:
                os.kill(hung.proc.pid, signal.SIGCONT)
            await wait_until(lambda: not store.degraded, 2 * PROBE + 2.0)
            assert not store.outage
            assert await store.get_many(keys) == [None] * 30 + [b"old"] * 10
        finally:
            await store.close()


async def test_an_overflowing_outage_log_clears_the_layer(server: ServerProcess, tmp_path: Path) -> None:
    settings = make_settings(server_url(server), tmp_path)
    primary = RedisStore.from_settings(settings, "kv")
    store = FallbackStore(settings, "kv", primary, replay_limit=3)
    await store.open()
    raw = raw_client(server)
    try:
        await store.set("untouched", b"old", 0)
        await store.set("k0", b"old", 0)
        stop_with_snapshot(server)
        await go_down(store)

        for index in range(5):  # more than the log keeps
            await store.delete(f"k{index}")
        assert store.outage.cleared

        server.start()
        await wait_until(lambda: not store.degraded, 2 * PROBE + 1.0)
        assert raw.get(store.full_key("untouched")) is None  # cleared: stale is worse than a miss
        assert raw.get(store.full_key("k0")) is None
    finally:
        await store.close()


async def test_a_later_outage_never_serves_what_an_earlier_one_left(
    server: ServerProcess, tmp_path: Path
) -> None:
    settings = make_settings(server_url(server), tmp_path)
    store = await open_store(settings, "kv")
    assert isinstance(store, FallbackStore)
    try:
        server.stop()
        await go_down(store)
        await store.set("k", b"from the first outage", 0)
        server.start()
        await wait_until(lambda: not store.degraded, 2 * PROBE + 1.0)
        await store.set("k", b"newer, in redis", 0)

        server.stop()
        await go_down(store)
        assert await store.get("k") is None  # a miss, not the first outage's value
    finally:
        await store.close()


async def test_close_stops_the_probe(tmp_path: Path) -> None:
    store = await open_store(make_settings(closed_port_url(), tmp_path), "kv")
    assert isinstance(store, FallbackStore)
    tasks_before = {t for t in asyncio.all_tasks() if t.get_name() == "tina4-store-probe"}
    assert tasks_before
    await store.close()
    assert all(t.done() for t in tasks_before)
