"""The memcached store against real memcached servers: the shared contract, several servers,
the 30-day exptime rule, clear by generation, chunked large values and a server restart."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from urllib.parse import unquote

import pytest
from pymemcache.client.base import Client

from tests.servers.memcached import kill, memcached_server, raw_client, server_url, serving
from tests.servers.process import ServerProcess, free_port
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
from tina4_sidecar.store.backends.memcached import (
    MAX_RELATIVE_TTL,
    MemcachedStore,
    memcached_exptime,
    parse_servers,
)
from tina4_sidecar.store.contract import Store, StoreUnavailable
from tina4_sidecar.store.fallback import DeletesMany


@pytest.fixture(scope="module")
def memcached() -> Iterator[ServerProcess]:
    with serving(memcached_server(listable=True)) as (server,):
        yield server


@pytest.fixture(scope="module")
def raw(memcached: ServerProcess) -> Iterator[Client]:
    client = raw_client(memcached)
    yield client
    client.close()


@pytest.fixture
async def stores(memcached: ServerProcess) -> AsyncIterator[StoreMaker]:
    url = server_url(memcached)
    async with store_factory(lambda ns, layer: MemcachedStore(ns, layer, url)) as make:
        yield make


def stored_keys(server: ServerProcess, prefix: str) -> dict[str, int]:
    """Our keys on ``server`` with their absolute expiry (-1: none), from ``lru_crawler metadump``.

    Exact only on a server started ``listable`` (tests/servers/memcached.py says why).

    A plain socket: pymemcache's ``raw_command`` garbles a reply longer than one read.
    """
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"lru_crawler metadump all\r\n")
        dump = b""
        while not dump.endswith(b"END\r\n"):
            chunk = sock.recv(65536)
            assert chunk, "memcached closed the connection during metadump"
            dump += chunk
    keys: dict[str, int] = {}
    for line in dump.decode().splitlines():
        fields = dict(field.split("=", 1) for field in line.split() if "=" in field)
        key = unquote(fields.get("key", ""))
        if key.startswith(prefix):
            keys[key] = int(fields["exp"])
    return keys


class TestMemcachedContract(ContractSuite, AddSuite):
    backend_name = "memcached"

    @pytest.fixture
    def make_store(self, stores: StoreMaker) -> StoreMaker:
        return stores

    @pytest.fixture
    def store_spec(self, memcached: ServerProcess) -> StoreSpec:
        return StoreSpec("memcached", url=server_url(memcached))

    @pytest.fixture
    def foreign_write(self, raw: Client) -> ForeignWrite:
        async def write(raw_key: str, value: bytes) -> None:
            await asyncio.to_thread(raw.set, raw_key, value, 0)

        return write

    @pytest.fixture
    def foreign_exists(self, raw: Client) -> ForeignExists:
        async def exists(raw_key: str) -> bool:
            return await asyncio.to_thread(raw.get, raw_key) is not None

        return exists

    async def test_ttl_expiry_and_ttl_zero(self, store: Store) -> None:
        """Narrower than the suite's in two ways, both memcached's own:

        * memcached's clock ticks in whole seconds, so a ttl=1 entry lives between 0 and 1 s and
          may already be gone when read back at once: the not-yet-expired check uses ttl=3;
        * ``size()`` is approximate (the module docstring): memcached cannot count a prefix, and
          entries that expire stay counted until the next ``clear()``.
        """
        await store.set("short", b"s", 1)
        await store.set("forever", b"f", 0)
        await store.set("long", b"l", 3600)
        await store.set("extended", b"e", 1)
        await store.set("extended", b"e2", 0)
        await store.set("shortened", b"x", 0)
        await store.set("shortened", b"x2", 1)
        await store.set("not-yet", b"n", 3)
        assert await store.get("not-yet") == b"n"

        await asyncio.sleep(self.ttl_wait)

        assert await store.get("short") is None
        assert await store.get("shortened") is None
        assert await store.get("forever") == b"f"
        assert await store.get("long") == b"l"
        assert await store.get("extended") == b"e2"
        keys = ["short", "forever", "shortened", "long", "extended"]
        assert await store.get_many(keys) == [None, b"f", None, b"l", b"e2"]
        assert await store.delete("short") is False
        assert await store.size() == 6  # every key written; 2 or 3 of them have expired by now
        await store.clear()
        assert await store.size() == 0


def holding(server: ServerProcess, store: MemcachedStore, keys: list[str]) -> set[str]:
    """Which of the store's ``keys`` have their item (current generation) on ``server``."""
    generation = store._generation[0] if store._generation else None
    client = raw_client(server)
    try:
        names = {f"{store.prefix}{generation}:{hashlib.sha256(k.encode()).hexdigest()}": k for k in keys}
        return {names[name] for name in client.get_many(list(names))}
    finally:
        client.close()


# -- several servers ------------------------------------------------------------------------------


async def test_two_servers_share_the_keys_and_all_are_readable(memcached: ServerProcess) -> None:
    second = memcached_server(listable=True)
    with serving(second):
        url = server_url(memcached, second)
        async with store_factory(lambda ns, layer: MemcachedStore(ns, layer, url)) as make:
            store = await make()
            values = {f"key-{i}": f"value-{i}".encode() for i in range(40)}
            big = os.urandom(2_500_000)  # three chunks, spread over the servers too
            assert all(await asyncio.gather(*(store.set(k, v, 60) for k, v in values.items())))
            assert await store.set("big", big, 60) is True

            other_process = await make()  # a second store: nothing cached in-process
            assert await other_process.get_many(list(values)) == list(values.values())
            assert await other_process.get("big") == big
            assert await store.size() == 41

            per_server = [len(stored_keys(server, store.prefix)) for server in (memcached, second)]
            assert sum(per_server) == 40 + 1 + 3 + 2  # values, manifest, chunks, generation, count
            assert min(per_server) >= 10, per_server  # both servers hold a share

            assert await store.clear() is True
            assert await other_process.get_many(["key-0", "key-39", "big"]) == [None, None, None]
            await store.ping()


# -- TTL ------------------------------------------------------------------------------------------


def test_exptime_follows_the_30_day_rule() -> None:
    now = 1_700_000_000.5
    assert memcached_exptime(0, now) == 0
    assert memcached_exptime(60, now) == 60
    assert memcached_exptime(MAX_RELATIVE_TTL, now) == MAX_RELATIVE_TTL  # still relative
    assert memcached_exptime(MAX_RELATIVE_TTL + 1, now) == 1_700_000_000 + MAX_RELATIVE_TTL + 1


async def test_a_ttl_over_30_days_is_not_read_as_a_timestamp_in_1970(
    stores: StoreMaker, memcached: ServerProcess
) -> None:
    store = await stores()
    month_and_a_day = 31 * 24 * 3600
    assert await store.set("long-lived", b"v", month_and_a_day) is True
    assert await store.get("long-lived") == b"v"  # a relative 31-day exptime would be 1970: expired
    expiries = [exp for exp in stored_keys(memcached, store.prefix).values() if exp != -1]
    assert len(expiries) == 1  # memcached's own view: now + 31 days
    assert abs(expiries[0] - (time.time() + month_and_a_day)) < 60


# -- clear ----------------------------------------------------------------------------------------


async def test_clear_is_one_generation_step_and_spares_foreign_keys(stores: StoreMaker, raw: Client) -> None:
    store = await stores()
    other_process = await stores()
    for i in range(100):
        await store.set(f"k{i}", b"v", 0)
    assert await other_process.get("k0") == b"v"  # its generation is now cached
    foreign = f"{store.prefix}foreign"
    raw.set(foreign, b"another app's key", 0)
    generation = int(raw.get(f"{store.prefix}gen"))
    items_before = int(raw.stats()[b"curr_items"])

    assert await store.clear() is True

    assert int(raw.get(f"{store.prefix}gen")) == generation + 1
    assert int(raw.stats()[b"curr_items"]) == items_before  # O(1): no key was deleted or scanned
    assert await other_process.get("k0") is None  # seen at once by a store with a cached generation
    assert await store.get_many([f"k{i}" for i in range(100)]) == [None] * 100
    assert await store.size() == 0
    assert raw.get(foreign) == b"another app's key"
    assert await store.set("k0", b"new", 0) is True
    assert await other_process.get("k0") == b"new"


async def test_an_evicted_generation_never_brings_old_entries_back(stores: StoreMaker, raw: Client) -> None:
    store = await stores()
    await store.set("k", b"before clear", 0)
    await store.clear()
    raw.delete(f"{store.prefix}gen")  # what the LRU or a restart does to the counter
    assert await store.get("k") is None
    assert await store.set("k", b"after", 0) is True
    assert await store.get("k") == b"after"


# -- large values ---------------------------------------------------------------------------------


async def test_values_over_the_item_limit_are_chunked(stores: StoreMaker, raw: Client) -> None:
    store = await stores()
    value = os.urandom(3 * 1024 * 1024 + 5)  # 3 MiB: memcached itself refuses items over 1 MiB
    assert await store.set("big", value, 60) is True
    assert await store.get("big") == value
    assert await store.get_many(["big", "missing", "big"]) == [value, None, value]
    assert await store.set("big", b"small now", 60) is True
    assert await store.get("big") == b"small now"
    assert await store.size() == 1


async def test_a_lost_chunk_is_a_miss_not_a_truncated_value(stores: StoreMaker, raw: Client) -> None:
    store = await stores()
    await store.set("big", os.urandom(2_200_000), 60)
    generation = int(raw.get(f"{store.prefix}gen"))
    item_key = f"{store.prefix}{generation}:{hashlib.sha256(b'big').hexdigest()}"
    token, count, length = raw.get(item_key).decode().split(":")  # the manifest
    assert (int(count), int(length)) == (3, 2_200_000)
    assert raw.delete(f"{item_key}:{token}:1") is True  # as if the LRU had evicted it
    assert await store.get("big") is None
    assert store.counters.errors == 0


# -- add --------------------------------------------------------------------------------------------


def item_key(store: MemcachedStore, raw: Client, key: str) -> str:
    generation = int(raw.get(f"{store.prefix}gen"))
    return f"{store.prefix}{generation}:{hashlib.sha256(key.encode()).hexdigest()}"


async def test_add_of_a_chunked_value_is_one_add_and_a_loser_leaves_no_chunks(
    stores: StoreMaker, memcached: ServerProcess, raw: Client
) -> None:
    store = await stores()
    big = os.urandom(2_500_000)  # three chunks
    assert await store.add("big", big, 60) is True
    assert await store.get("big") == big
    manifest = raw.get(item_key(store, raw, "big"))
    assert manifest is not None
    assert manifest.decode().split(":")[1:] == ["3", "2500000"]  # the manifest went in last, by add
    keys_after_win = set(stored_keys(memcached, store.prefix))
    assert len(keys_after_win) == 1 + 3 + 2  # manifest, chunks, generation, count

    assert await store.add("big", os.urandom(2_400_000), 60) is False
    assert set(stored_keys(memcached, store.prefix)) == keys_after_win  # the loser's chunks are gone
    assert await store.get("big") == big
    assert await store.size() == 1


async def test_add_takes_over_a_chunked_value_that_lost_a_chunk(stores: StoreMaker, raw: Client) -> None:
    store = await stores()
    await store.set("big", os.urandom(2_200_000), 0)
    name = item_key(store, raw, "big")
    token = raw.get(name).decode().split(":")[0]
    assert raw.delete(f"{name}:{token}:2") is True  # as if the LRU had evicted it
    assert await store.get("big") is None  # no reader can use what the key holds...

    assert await store.add("big", b"small", 60) is True  # ...so it holds no live value
    assert await store.get("big") == b"small"
    assert await store.add("big", b"other", 60) is False
    big = os.urandom(1_500_000)
    await store.set("whole", big, 0)
    assert await store.add("whole", b"other", 60) is False  # a whole chunked value is live
    assert await store.get("whole") == big
    assert await store.size() == 2  # the key that was taken over was counted once
    assert store.counters.errors == 0


async def test_add_with_a_ttl_over_30_days_sends_an_absolute_exptime(
    stores: StoreMaker, memcached: ServerProcess
) -> None:
    store = await stores()
    month_and_a_day = 31 * 24 * 3600
    assert await store.add("long-lived", b"v", month_and_a_day) is True
    assert await store.get("long-lived") == b"v"  # a relative 31-day exptime would be 1970: expired
    expiries = [exp for exp in stored_keys(memcached, store.prefix).values() if exp != -1]
    assert len(expiries) == 1
    assert abs(expiries[0] - (time.time() + month_and_a_day)) < 60


async def test_add_lands_in_the_generation_of_a_clear_made_a_moment_ago(stores: StoreMaker) -> None:
    # The generation cache of writes (GENERATION_REUSE) must not apply to add: a lock taken in a
    # cleared generation would be invisible to every other sidecar, which would then take it too.
    first, second = await stores(), await stores()
    assert await second.add("lock", b"old", 30) is True  # second now has the generation cached
    await first.clear()
    assert await second.add("lock", b"second", 30) is True
    assert await first.add("lock", b"first", 30) is False
    assert await first.get("lock") == b"second"


# -- outages --------------------------------------------------------------------------------------


async def test_a_server_restart_costs_errors_not_exceptions_and_the_pool_reconnects() -> None:
    server = memcached_server(listable=True)
    with serving(server):
        store = MemcachedStore(unique_namespace(), "kv", server_url(server), timeout=0.5)
        await store.open()
        assert await store.set("k", b"v", 60) is True
        reads = await asyncio.gather(*(store.get("k") for _ in range(store.threads)))
        assert reads == [b"v"] * store.threads  # concurrent: the pool now holds several connections

        kill(server)
        assert await store.get("k") is None
        assert await store.get_many(["k", "x"]) == [None, None]
        assert await store.set("k", b"v", 60) is False
        assert await store.add("k", b"v", 60) is False
        assert await store.delete("k") is False
        assert await store.clear() is False
        assert await store.size() == 0
        assert store.counters.errors == 7
        assert store.counters.last_error is not None
        with pytest.raises(StoreUnavailable, match="unreachable"):
            await store.ping()

        server.start()  # same port, empty
        await store.ping()
        assert await store.get("k") is None  # the restarted server is empty: a miss, not an error
        assert await store.set("k", b"again", 60) is True
        assert await store.get("k") == b"again"
        assert await store.add("lock", b"after the restart", 60) is True
        assert store.counters.errors == 7

        # a restart between two calls: every pooled socket is dead, and none of that shows
        await asyncio.gather(*(store.get("k") for _ in range(store.threads)))
        kill(server)
        server.start()
        await store.ping()
        assert await store.get("k") is None
        assert await store.set("k", b"third", 60) is True
        assert await store.get("k") == b"third"
        assert store.counters.errors == 7
        await store.close()


async def test_one_of_two_servers_down_fails_only_its_keys_and_the_ring_stays_fixed() -> None:
    first, second = memcached_server(listable=True), memcached_server(listable=True)
    with serving(first, second):
        store = MemcachedStore(unique_namespace(), "kv", server_url(first, second), timeout=0.5)
        await store.open()
        keys = [f"key-{i}" for i in range(30)]
        for key in keys:
            await store.set(key, key.encode(), 0)
        gen_key = f"{store.prefix}gen"
        other = second if gen_key in stored_keys(first, store.prefix) else first  # holds no generation
        on_other = holding(other, store, keys)
        assert 0 < len(on_other) < len(keys)

        kill(other)
        reads = {key: await store.get(key) for key in keys}
        assert {k for k, v in reads.items() if v is None} == on_other  # not remapped elsewhere
        assert all(reads[k] == k.encode() for k in keys if k not in on_other)
        assert store.counters.errors == len(on_other)

        other.start()  # empty; its keys come back to it, not to the server that stayed up
        for key in on_other:
            assert await store.set(key, b"again", 0) is True
        assert await store.get_many(sorted(on_other)) == [b"again"] * len(on_other)
        assert holding(other, store, keys) == on_other
        await store.close()


async def test_open_fails_with_store_unavailable_when_nothing_listens() -> None:
    store = MemcachedStore(unique_namespace(), "kv", f"memcached://127.0.0.1:{free_port()}", timeout=0.5)
    with pytest.raises(StoreUnavailable, match="unreachable"):
        await store.open()
    await store.close()


# -- configuration --------------------------------------------------------------------------------


def test_urls_name_one_or_several_servers() -> None:
    assert parse_servers("memcached://localhost:11211") == [("localhost", 11211)]
    assert parse_servers("memcached://a:1,b:2/") == [("a", 1), ("b", 2)]
    assert parse_servers("memcached://cache") == [("cache", 11211)]
    assert parse_servers("memcached://u:p@[::1]:5,10.0.0.1") == [("::1", 5), ("10.0.0.1", 11211)]
    for bad in ("redis://localhost:6379", "memcached://", "memcached://host:port"):
        with pytest.raises(ValueError, match="memcached"):
            parse_servers(bad)


def test_from_settings_takes_url_namespace_and_timeout(caplog: pytest.LogCaptureFixture) -> None:
    settings = CacheSettings(
        _env_file=None,  # type: ignore[call-arg]
        cache_backend="memcached",
        cache_url="memcached://m1:11311,m2:11312",
        cache_namespace="app1",
        cache_timeout=0.25,
        cache_username="ignored",
    )
    with caplog.at_level("DEBUG", logger="tina4_sidecar.store.backends.memcached"):
        store = MemcachedStore.from_settings(settings, "resp")
    assert (store.prefix, store.timeout) == ("app1:resp:", 0.25)
    assert store.servers == [("m1", 11311), ("m2", 11312)]
    assert "unauthenticated" in caplog.text
    default = MemcachedStore.from_settings(CacheSettings(_env_file=None), "kv")  # type: ignore[call-arg]
    assert default.servers == [("localhost", 11211)]
    assert MemcachedStore.from_settings(settings, "kv", url="memcached://other:1").servers == [("other", 1)]


def test_a_namespace_that_memcached_keys_cannot_carry_is_refused() -> None:
    with pytest.raises(ValueError, match="namespace"):
        MemcachedStore("has space", "kv")


# -- bulk delete (the fallback's replay) ------------------------------------------------------------


async def write_all(store: Store, keys: list[str]) -> None:
    for start in range(0, len(keys), 100):  # more at once would queue past the store's timeout
        assert all(await asyncio.gather(*(store.set(key, b"v", 0) for key in keys[start : start + 100])))


def delete_counts(*servers: ServerProcess) -> list[int]:
    """``delete`` commands each server has answered so far (hits and misses)."""
    counts = []
    for server in servers:
        client = raw_client(server)
        try:
            stats = client.stats()
        finally:
            client.close()
        counts.append(int(stats[b"delete_hits"]) + int(stats[b"delete_misses"]))
    return counts


async def test_delete_many_removes_the_keys_of_the_current_generation_and_nothing_else(
    stores: StoreMaker, memcached: ServerProcess
) -> None:
    store, other_namespace, other_layer = (
        await stores(),
        await stores(namespace=unique_namespace()),
        await stores("resp"),
    )
    assert isinstance(store, MemcachedStore)
    assert isinstance(store, DeletesMany)  # the replay takes the bulk path
    keys = [f"k{i}" for i in range(1200)] + ["ünïcode key", "x" * 5000]
    others = (other_namespace, other_layer)
    sample = [*keys[:100], *keys[-102:]]  # for the other stores: kept, whether deleted here or not
    await write_all(store, keys)
    for other in others:
        await write_all(other, sample)
    assert await store.set("big", os.urandom(2_500_000), 0) is True  # a chunked value
    doomed = [*keys[:1100], "big", "never written"]

    before = delete_counts(memcached)[0]
    await store._delete_many(doomed)
    assert delete_counts(memcached)[0] - before == len(doomed)  # each key once

    assert await store.get_many(doomed) == [None] * len(doomed)
    assert await store.get_many(keys[1100:]) == [b"v"] * (len(keys) - 1100)
    for other in others:
        assert await other.get_many(sample) == [b"v"] * len(sample)
    assert store.counters.errors == 0


async def test_delete_many_finds_the_generation_another_process_cleared_to(stores: StoreMaker) -> None:
    store, other_process = await stores(), await stores()
    await store.get("k")  # this store has seen the generation
    await other_process.clear()
    await other_process.set("k", b"written after the clear", 0)
    await store._delete_many(["k"])
    assert await other_process.get("k") is None


async def test_delete_many_sends_each_of_several_servers_its_share() -> None:
    servers = tuple(memcached_server(listable=True) for _ in range(3))
    with serving(*servers):
        store = MemcachedStore(unique_namespace(), "kv", server_url(*servers), timeout=0.5)
        await store.open()
        try:
            keys = [f"key-{i}" for i in range(300)]
            await write_all(store, keys)
            shares = [holding(server, store, keys) for server in servers]
            assert all(len(share) > 50 for share in shares), [len(share) for share in shares]

            before = delete_counts(*servers)
            await store._delete_many(keys)
            sent = [after - earlier for after, earlier in zip(delete_counts(*servers), before, strict=True)]
            assert sent == [len(share) for share in shares]  # every key to the server that holds it

            assert [holding(server, store, keys) for server in servers] == [set(), set(), set()]
            assert await store.get_many(keys) == [None] * len(keys)
        finally:
            await store.close()


async def test_delete_many_raises_when_a_server_is_down() -> None:
    """The replay must know that it failed, to keep the outage log and try again."""
    first, second = memcached_server(listable=True), memcached_server(listable=True)
    with serving(first, second):
        store = MemcachedStore(unique_namespace(), "kv", server_url(first, second), timeout=0.5)
        await store.open()
        try:
            keys = [f"key-{i}" for i in range(30)]
            await store.get("k")  # the generation is known
            gen_key = f"{store.prefix}gen"
            kill(second if gen_key in stored_keys(first, store.prefix) else first)
            with pytest.raises(Exception):  # noqa: B017, PT011  # whatever pymemcache raises
                await store._delete_many(keys)
        finally:
            await store.close()
