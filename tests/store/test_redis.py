"""The Redis store on a real redis-server: the shared contract, then what only Redis has.

Credentials (URL and TINA4_CACHE_USERNAME/PASSWORD, requirepass and an ACL user), a refused
password, database numbers, prefixes with glob characters, large clears, the command each call
sends (read from the server's own INFO commandstats), reconnection after a restart.
``RedisLikeChecks`` is shared with the Valkey tests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import redis.asyncio as aioredis

from tests.servers.process import ServerProcess, free_port
from tests.servers.redis import raw_client, redis_server, server_url, serving
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
from tina4_sidecar.config import Backend, CacheSettings
from tina4_sidecar.store.backends.redis import RedisStore, ValkeyStore, escape_glob
from tina4_sidecar.store.contract import StoreUnavailable
from tina4_sidecar.store.factory import open_store
from tina4_sidecar.store.fallback import FallbackStore

pytestmark = pytest.mark.backend

DEFAULT_PASSWORD = "default-secret"
APP_USER, APP_PASSWORD = "app", "app-secret"
SECURED_USERS = [f"{APP_USER} on >{APP_PASSWORD} ~* &* +@all"]


def settings_for(url: str | None, backend: str, tmp_path: Path, **overrides: object) -> CacheSettings:
    values: dict[str, object] = {
        "cache_backend": backend,
        "cache_url": url,
        "cache_dir": tmp_path / "cache",
        "cache_namespace": unique_namespace(),
        **overrides,
    }
    return CacheSettings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


def commandstats(server: ServerProcess, password: str | None = None) -> dict[str, int]:
    """Calls per command since the server started, as the server itself counts them."""
    stats = raw_client(server, password=password).info("commandstats")
    return {name.removeprefix("cmdstat_"): int(values["calls"]) for name, values in stats.items()}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with serving(redis_server()) as running:
        yield running


@pytest.fixture(scope="module")
def secured_server() -> Iterator[ServerProcess]:
    with serving(redis_server(password=DEFAULT_PASSWORD, users=SECURED_USERS)) as running:
        yield running


@pytest.fixture
async def raw(server: ServerProcess) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis(host="127.0.0.1", port=server.port)
    yield client
    await client.aclose()


class TestRedisContract(ContractSuite, AddSuite):
    backend_name = "redis"

    @pytest.fixture
    def store_spec(self, server: ServerProcess) -> StoreSpec:
        return StoreSpec("redis", url=server_url(server))

    @pytest.fixture
    async def make_store(self, server: ServerProcess) -> AsyncIterator[StoreMaker]:
        url = server_url(server)
        async with store_factory(lambda ns, layer: RedisStore(ns, layer, url)) as make:
            yield make

    @pytest.fixture
    def foreign_write(self, raw: aioredis.Redis) -> ForeignWrite:
        async def write(raw_key: str, value: bytes) -> None:
            await raw.set(raw_key, value)

        return write

    @pytest.fixture
    def foreign_exists(self, raw: aioredis.Redis) -> ForeignExists:
        async def exists(raw_key: str) -> bool:
            return bool(await raw.exists(raw_key))

        return exists


class RedisLikeChecks:
    """Backend-specific checks for any Redis-protocol server; subclasses set the class and scheme.

    Needs the fixtures ``server`` (plain) and ``secured_server`` (``requirepass`` plus an ACL user).
    """

    store_class: ClassVar[type[RedisStore]] = RedisStore
    scheme: ClassVar[str] = "redis"

    def url(self, server: ServerProcess, db: int = 0, **credentials: str) -> str:
        """``credentials``: ``username`` and/or ``password``."""
        return server_url(server, self.scheme, db, **credentials)

    def make(self, url: str, namespace: str | None = None, layer: str = "kv", **kwargs: object) -> RedisStore:
        return self.store_class(namespace or unique_namespace(), layer, url, **kwargs)  # type: ignore[arg-type]

    # -- the replay after an outage --------------------------------------------------------------

    async def test_delete_many_unlinks_in_one_call_and_announces_everything(
        self, server: ServerProcess
    ) -> None:
        namespace = unique_namespace()
        store = self.make(server_url(server, self.scheme), namespace, layer="resp")
        keeper = self.make(server_url(server, self.scheme), namespace, layer="kv")
        listener = raw_client(server).pubsub()
        await store.open()
        await keeper.open()
        try:
            listener.subscribe(f"{namespace}:near-invalidate")
            assert listener.get_message(timeout=2)["type"] == "subscribe"
            keys = [f"k{i}" for i in range(1500)]
            for key in keys:
                await store.set(key, b"v", 60)
            await keeper.set("k1", b"other layer", 60)
            while listener.get_message(timeout=0.2) is not None:
                pass  # the writes' own announcements
            before = commandstats(server).get("unlink", 0)
            await store._delete_many(keys[:1000])
            assert commandstats(server).get("unlink", 0) - before == 1
            assert await store.get_many(keys[998:1002]) == [None, None, b"v", b"v"]
            assert await keeper.get("k1") == b"other layer"
            message = listener.get_message(timeout=2)
            assert message is not None
            assert message["data"] == b'{"v":1,"all":true}'
        finally:
            listener.close()
            await store.close()
            await keeper.close()

    # -- credentials ---------------------------------------------------------------------------

    @pytest.mark.parametrize(
        "credentials",
        [{"username": APP_USER, "password": APP_PASSWORD}, {"password": DEFAULT_PASSWORD}],
        ids=["acl-user", "requirepass"],
    )
    async def test_credentials_in_the_url(
        self, secured_server: ServerProcess, credentials: dict[str, str]
    ) -> None:
        store = self.make(self.url(secured_server, 0, **credentials))
        await store.open()
        try:
            assert await store.set("k", b"v", 60) is True
            assert await store.get("k") == b"v"
            assert store.counters.errors == 0
        finally:
            await store.clear()
            await store.close()

    async def test_credentials_from_the_environment(
        self, secured_server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TINA4_CACHE_USERNAME", APP_USER)
        monkeypatch.setenv("TINA4_CACHE_PASSWORD", APP_PASSWORD)
        settings = settings_for(self.url(secured_server), self.scheme, tmp_path)
        assert settings.cache_username == APP_USER
        store = self.store_class.from_settings(settings, "kv")
        await store.open()
        try:
            assert await store.set("k", b"from env", 60) is True
            whoami = raw_client(secured_server, username=APP_USER, password=APP_PASSWORD)
            assert whoami.get(store.full_key("k")) == b"from env"
        finally:
            await store.clear()
            await store.close()

    async def test_url_credentials_win_over_the_environment(
        self, secured_server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TINA4_CACHE_USERNAME", "nobody")
        monkeypatch.setenv("TINA4_CACHE_PASSWORD", "wrong")
        url = self.url(secured_server, username=APP_USER, password=APP_PASSWORD)
        store = self.store_class.from_settings(settings_for(url, self.scheme, tmp_path), "kv")
        await store.open()
        try:
            assert await store.set("k", b"v", 60) is True
        finally:
            await store.close()

    @pytest.mark.parametrize(
        ("credentials", "expected"),
        [
            ({"username": APP_USER, "password": "not-the-password"}, f"credentials of user '{APP_USER}'"),
            ({"password": "not-the-password"}, "credentials of the default user"),
            ({}, "credentials of the default user"),  # none given to a server that wants one
        ],
        ids=["wrong-acl-password", "wrong-requirepass", "no-password"],
    )
    async def test_refused_credentials_make_open_raise_a_clear_error(
        self, secured_server: ServerProcess, credentials: dict[str, str], expected: str
    ) -> None:
        store = self.make(self.url(secured_server, 0, **credentials))
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as raised:
            await store.open()
        await store.close()
        message = str(raised.value)
        assert time.monotonic() - started < 3
        assert f"{self.store_class.backend_name} at 127.0.0.1:{secured_server.port}/0 refused the" in message
        assert expected in message
        assert "not-the-password" not in message

    async def test_refused_password_makes_the_factory_fall_back(
        self, secured_server: ServerProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        url = self.url(secured_server, username=APP_USER, password="not-the-password")
        settings = settings_for(url, self.scheme, tmp_path, cache_probe_interval=60)
        with caplog.at_level(logging.WARNING, logger="tina4_sidecar.store"):
            store = await open_store(settings, "kv")
        try:
            assert isinstance(store, FallbackStore)
            assert store.degraded
            assert await store.set("k", b"kept in a file", 60) is True
            stats = await store.stats()
            assert (stats.backend, stats.fallback, stats.size) == ("file", True, 1)
            assert stats.extra["primary"] == self.store_class.backend_name
            assert "refused the credentials" in str(stats.extra["last_error"])
            warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
            assert len(warnings) == 1, warnings
            assert "refused the credentials" in warnings[0]
            assert str(tmp_path / "cache") in warnings[0]
            assert "not-the-password" not in caplog.text
        finally:
            await store.close()

    # -- keys, databases, clear ----------------------------------------------------------------

    async def test_databases_are_isolated(self, server: ServerProcess) -> None:
        namespace = unique_namespace()
        one, two = self.make(self.url(server, 1), namespace), self.make(self.url(server, 2), namespace)
        await one.open()
        await two.open()
        try:
            await one.set("k", b"in db 1", 0)
            await two.set("k", b"in db 2", 0)
            await two.set("only-2", b"x", 0)
            assert await two.clear() is True
            assert await two.size() == 0
            assert await one.get("k") == b"in db 1"
            assert raw_client(server, db=1).get(one.full_key("k")) == b"in db 1"
            assert raw_client(server, db=0).get(one.full_key("k")) is None
        finally:
            await one.clear()
            await one.close()
            await two.close()

    @pytest.mark.parametrize(
        ("namespace", "look_alike"),
        [
            ("ns*", "nsXYZ"),
            ("n?s", "nXs"),
            ("[ns]", "n"),
            ("ns\\", "ns"),  # unescaped, "ns\\:kv:*" would match "ns:kv:..."
            ("a[b-z]*?\\x", "ac12x"),
        ],
    )
    async def test_glob_characters_in_the_prefix_are_literal(
        self, server: ServerProcess, namespace: str, look_alike: str
    ) -> None:
        store = self.make(self.url(server), namespace)
        await store.open()
        raw = raw_client(server)
        foreign = f"{look_alike}:kv:k"
        try:
            raw.set(foreign, b"not ours")
            await store.set("k", b"ours", 0)
            await store.set("other", b"ours", 0)
            assert await store.size() == 2
            assert await store.clear() is True
            assert await store.size() == 0
            assert raw.get(foreign) == b"not ours"
            assert raw.get(store.full_key("k")) is None
        finally:
            raw.delete(foreign)
            await store.close()

    def test_escape_glob(self) -> None:
        assert escape_glob("a*b?c[d]e\\f:g-h^") == "a\\*b\\?c\\[d\\]e\\\\f:g-h^"

    async def test_clear_of_many_keys_leaves_every_other_key(self, server: ServerProcess) -> None:
        store, neighbour = self.make(self.url(server), "tina4"), self.make(self.url(server), "tina4", "resp")
        await store.open()
        raw = raw_client(server)
        foreign = ["tina4:cache:x", "tina4:cache:product:42", "tina4:kvx:1", "tina4:kv", "other:kv:1"]
        try:
            with raw.pipeline(transaction=False) as pipe:
                for index in range(2500):
                    pipe.set(store.full_key(f"key-{index}"), b"v")
                for key in foreign:
                    pipe.set(key, b"not ours")
                pipe.set(neighbour.full_key("1"), b"other layer")
                pipe.execute()
            before = commandstats(server)
            assert await store.size() == 2500
            assert await store.clear() is True
            assert await store.size() == 0
            for key in [*foreign, neighbour.full_key("1")]:
                assert raw.get(key) is not None, key
            after = commandstats(server)
            assert after.get("unlink", 0) - before.get("unlink", 0) >= 3  # in batches, never one huge call
            assert "flushdb" not in after
            assert "flushall" not in after
        finally:
            raw.delete(*foreign, neighbour.full_key("1"))
            await store.close()

    async def test_values_and_expiry_as_stored_on_the_server(self, server: ServerProcess) -> None:
        store = self.make(self.url(server))
        await store.open()
        raw = raw_client(server)
        try:
            await store.set("expiring", b"\x00\xffraw", 60)
            await store.set("forever", b"f", 0)
            assert raw.get(store.full_key("expiring")) == b"\x00\xffraw"
            assert 0 < raw.ttl(store.full_key("expiring")) <= 60
            assert raw.ttl(store.full_key("forever")) == -1
        finally:
            await store.clear()
            await store.close()

    async def test_get_many_is_one_mget(self, server: ServerProcess) -> None:
        store = self.make(self.url(server))
        await store.open()
        try:
            await store.set("a", b"1", 60)
            before = commandstats(server)
            assert await store.get_many(["a", "b", "c", "a"]) == [b"1", None, None, b"1"]
            after = commandstats(server)
            assert after["mget"] - before.get("mget", 0) == 1
            assert after.get("get", 0) == before.get("get", 0)
        finally:
            await store.clear()
            await store.close()

    # -- connections -----------------------------------------------------------------------------

    async def test_unreachable_server_fails_open_quickly_and_calls_count_errors(self) -> None:
        store = self.make(f"{self.scheme}://127.0.0.1:{free_port()}/0", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="is unreachable"):
            await store.open()
        assert time.monotonic() - started < 3
        assert await store.get("k") is None
        assert await store.set("k", b"v", 60) is False
        assert store.counters.errors == 2
        await store.close()

    async def test_a_restarted_server_is_used_again_without_reopening(self) -> None:
        with serving(self.new_server()) as own:
            store = self.make(self.url(own))
            await store.open()
            try:
                await store.set("k", b"before", 0)
                own.stop()
                assert await store.get("k") is None  # an error, answered as a miss
                own.start()
                assert await store.set("k", b"after", 0) is True
                assert await store.get("k") == b"after"
                assert store.counters.errors == 1
            finally:
                await store.close()

    def new_server(self) -> ServerProcess:
        """An unstarted server of this kind, for a test that stops and restarts it."""
        raise NotImplementedError


class TestRedisBackend(RedisLikeChecks):
    store_class = RedisStore
    scheme = "redis"

    def new_server(self) -> ServerProcess:
        return redis_server()


class TestUrls:
    """URL handling needs no server: it happens when the store is built."""

    def test_defaults_when_no_url_is_set(self, tmp_path: Path) -> None:
        assert (
            RedisStore.from_settings(settings_for(None, "redis", tmp_path), "kv").location
            == "localhost:6379/0"
        )
        valkey = ValkeyStore.from_settings(settings_for(None, "valkey", tmp_path), "kv")
        assert valkey.url == "redis://localhost:6379"

    @pytest.mark.parametrize(
        ("url", "driver_url"),
        [
            ("valkey://h:1/3", "redis://h:1/3"),
            ("valkeys://u:p@h:1/0", "rediss://u:p@h:1/0"),
            ("rediss://h:6380", "rediss://h:6380"),
            ("REDIS://h", "redis://h"),
            ("unix:///run/redis.sock?db=2", "unix:///run/redis.sock?db=2"),
        ],
    )
    def test_schemes(self, url: str, driver_url: str) -> None:
        assert RedisStore("ns", "kv", url).url == driver_url

    @pytest.mark.parametrize("url", ["memcached://h:11211", "h:6379", "redis://h/not-a-db"])
    def test_bad_urls_are_configuration_errors(self, url: str) -> None:
        with pytest.raises(ValueError, match="redis"):
            RedisStore("ns", "kv", url)

    def test_the_url_override_wins_and_credentials_fill_in(self, tmp_path: Path) -> None:
        settings = settings_for("redis://h:1/0", "redis", tmp_path, cache_username="u", cache_password="p")
        store = RedisStore.from_settings(settings, "query", url="redis://other:2/5")
        assert (store.location, store.username, store.prefix) == (
            "other:2/5",
            "u",
            f"{settings.cache_namespace}:query:",
        )
        in_url = RedisStore.from_settings(settings, "kv", url="redis://:secret@h:1/0")
        assert in_url.username is None  # the URL's credentials are used whole: the default user
        assert "secret" not in in_url.location

    async def test_open_store_builds_a_fallback_for_redis(
        self, tmp_path: Path, server: ServerProcess
    ) -> None:
        store = await open_store(settings_for(server_url(server), "redis", tmp_path), "kv", Backend.REDIS)
        try:
            assert isinstance(store, FallbackStore)
            assert not store.degraded
            assert store.backend_name == "redis"
        finally:
            await store.close()


async def test_commands_run_concurrently_on_one_pool(server: ServerProcess) -> None:
    store = RedisStore(unique_namespace(), "kv", server_url(server))
    await store.open()
    try:
        results = await asyncio.gather(*(store.set(f"k{i}", b"v", 60) for i in range(200)))
        assert all(results)
        assert await store.size() == 200
    finally:
        await store.clear()
        await store.close()
