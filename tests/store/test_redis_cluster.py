"""The Redis store on a real 3-node Redis Cluster: the shared contract, then what only a cluster has.

Keys spread over every node (no hash tag), ``get_many`` across slots in one call, ``clear`` that
walks every primary and leaves other applications' keys on every node, and the cluster URL
(startup nodes, TLS scheme, credentials from the URL or the settings).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio.cluster import ClusterNode, RedisCluster

from tests.servers.redis_cluster import RedisClusterServers, cluster_url, node_client, redis_cluster
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
from tina4_sidecar.config import CacheSettings
from tina4_sidecar.store.backends.redis import RedisStore, ValkeyStore
from tina4_sidecar.store.backends.redis_cluster import (
    RedisClusterStore,
    ValkeyClusterStore,
    is_cluster_url,
    parse_cluster_url,
)
from tina4_sidecar.store.factory import build_store

pytestmark = pytest.mark.backend


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterServers]:
    with redis_cluster() as running:
        yield running


@pytest.fixture
async def raw(cluster: RedisClusterServers) -> AsyncIterator[RedisCluster]:
    client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", port) for port in cluster.ports])
    yield client
    await client.aclose()


class TestRedisClusterContract(ContractSuite, AddSuite):
    backend_name = "redis"

    @pytest.fixture
    def store_spec(self, cluster: RedisClusterServers) -> StoreSpec:
        return StoreSpec("redis", url=cluster_url(cluster))

    @pytest.fixture
    async def make_store(self, cluster: RedisClusterServers) -> AsyncIterator[StoreMaker]:
        url = cluster_url(cluster)
        async with store_factory(lambda ns, layer: RedisClusterStore(ns, layer, url)) as make:
            yield make

    @pytest.fixture
    def foreign_write(self, raw: RedisCluster) -> ForeignWrite:
        async def write(raw_key: str, value: bytes) -> None:
            await raw.set(raw_key, value)

        return write

    @pytest.fixture
    def foreign_exists(self, raw: RedisCluster) -> ForeignExists:
        async def exists(raw_key: str) -> bool:
            return bool(await raw.exists(raw_key))

        return exists


class TestClusterSpread:
    @pytest.fixture
    async def make_store(self, cluster: RedisClusterServers) -> AsyncIterator[StoreMaker]:
        url = cluster_url(cluster)
        async with store_factory(lambda ns, layer: RedisClusterStore(ns, layer, url)) as make:
            yield make

    async def test_keys_spread_over_every_node(
        self, cluster: RedisClusterServers, make_store: StoreMaker
    ) -> None:
        store = await make_store()
        for port in cluster.ports:
            node_client(port).flushall()  # this cluster is the test's own: count only our keys
        for i in range(300):
            assert await store.set(f"spread-{i}", b"x", 0)
        sizes = [node_client(port).dbsize() for port in cluster.ports]
        assert all(size > 0 for size in sizes), sizes
        assert sum(sizes) == 300
        assert await store.size() == 300

    async def test_get_many_across_slots_in_one_call(
        self, cluster: RedisClusterServers, make_store: StoreMaker, raw: RedisCluster
    ) -> None:
        store = await make_store()
        keys = [f"many-{i}" for i in range(60)]
        for index, key in enumerate(keys):
            if index % 3:
                await store.set(key, f"value-{index}".encode(), 0)
        await raw.initialize()
        slots = {raw.keyslot(store.full_key(key)) for key in [*keys, "absent"]}
        owners = {raw.nodes_manager.get_node_from_slot(slot).name for slot in slots}
        assert len(slots) > 10
        assert len(owners) == len(cluster.ports)
        mgets_before = _calls(cluster, "mget")
        gets_before = _calls(cluster, "get")
        values = await store.get_many([*keys, "absent"])
        assert values == [f"value-{i}".encode() if i % 3 else None for i in range(60)] + [None]
        assert store.counters.errors == 0
        assert _calls(cluster, "get") == gets_before, "get_many must not fall back to one GET per key"
        assert 0 < _calls(cluster, "mget") - mgets_before <= len(slots), "one MGET per slot at most"

    async def test_clear_leaves_foreign_keys_on_every_node(
        self, cluster: RedisClusterServers, make_store: StoreMaker, raw: RedisCluster
    ) -> None:
        store = await make_store()
        other = await make_store(layer="resp")
        for i in range(200):
            await store.set(f"c-{i}", b"ours", 0)
            await other.set(f"c-{i}", b"other layer", 0)
            await raw.set(f"foreign:{store.namespace}:{i}", b"theirs")
        assert await store.clear()
        assert store.counters.errors == 0
        assert await store.size() == 0
        assert await other.size() == 200
        for port in cluster.ports:
            node = node_client(port)
            left = list(node.scan_iter(match=f"foreign:{store.namespace}:*", count=1000))
            assert left, f"node {port} kept no foreign key: the keys did not spread or clear removed them"
        assert all([await raw.exists(f"foreign:{store.namespace}:{i}") for i in range(200)])


def _calls(cluster: RedisClusterServers, command: str) -> int:
    """Calls of ``command`` summed over every node, as the nodes count them."""
    total = 0
    for port in cluster.ports:
        stats = node_client(port).info("commandstats")
        total += int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))
    return total


class TestClusterURL:
    def test_cluster_urls_are_recognised(self) -> None:
        for scheme in (
            "redis+cluster",
            "rediss+cluster",
            "valkey+cluster",
            "valkeys+cluster",
            "REDIS+CLUSTER",
        ):
            assert is_cluster_url(f"{scheme}://h:1")
        assert not is_cluster_url("redis://h:1")
        assert not is_cluster_url(None)

    def test_startup_nodes_tls_and_credentials(self) -> None:
        parsed = parse_cluster_url("rediss+cluster://app:s%40cret@a:7000,b:7001,[::1]:7002,c", "redis")
        assert parsed.nodes == (("a", 7000), ("b", 7001), ("::1", 7002), ("c", 6379))
        assert parsed.tls
        assert parsed.username == "app"
        assert parsed.password == "s@cret"
        assert "cret" not in parsed.location
        assert not parse_cluster_url("valkey+cluster://a:1/0", "valkey").tls

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("redis+cluster://a:1/2", "only database 0"),
            ("redis+cluster://", "no host:port"),
            ("redis+cluster://a:x", "bad port"),
            ("redis://a:1", "needs a redis"),
        ],
    )
    def test_bad_cluster_urls_raise(self, url: str, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            parse_cluster_url(url, "redis")

    def test_settings_select_the_cluster_store_with_env_credentials(self, tmp_path: Path) -> None:
        settings = CacheSettings(  # type: ignore[call-arg]
            _env_file=None,
            cache_backend="redis",
            cache_url="redis+cluster://127.0.0.1:7000,127.0.0.1:7001",
            cache_namespace=unique_namespace(),
            cache_dir=tmp_path,
            cache_username="app",
            cache_password="secret",
            cache_timeout=2.5,
        )
        store = build_store(settings, "kv")
        assert type(store) is RedisClusterStore
        assert store.username == "app"
        assert store._password == "secret"
        assert store.timeout == 2.5
        assert store.nodes == (("127.0.0.1", 7000), ("127.0.0.1", 7001))
        assert not store.tls
        url_wins = RedisStore.from_settings(settings, "kv", "redis+cluster://u:p@127.0.0.1:7000")
        assert isinstance(url_wins, RedisClusterStore)
        assert url_wins.username == "u"
        assert url_wins._password == "p"
        valkey = ValkeyStore.from_settings(settings, "kv", "valkeys+cluster://127.0.0.1:7000")
        assert type(valkey) is ValkeyClusterStore
        assert valkey.tls
        assert valkey.backend_name == "valkey"
        plain = RedisStore.from_settings(settings, "kv", "redis://127.0.0.1:6379")
        assert type(plain) is RedisStore
