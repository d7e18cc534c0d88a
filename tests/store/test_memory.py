"""The memory store: the shared contract, LRU eviction by entries and bytes, and the process-wide registry."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.store.contract_suite import (
    AddSuite,
    ContractSuite,
    ForeignExists,
    ForeignWrite,
    StoreMaker,
    store_factory,
    unique_namespace,
)
from tina4_sidecar.config import CacheSettings
from tina4_sidecar.store.backends.memory import REGISTRY, MemoryStore, Shard


def raw_shard(raw_key: str) -> tuple[Shard, str]:
    """The registry shard and key that hold ``raw_key`` ("<prefix>:<key>", split at the last colon)."""
    prefix, colon, key = raw_key.rpartition(":")
    return REGISTRY.shard(prefix + colon), key


class TestMemoryContract(ContractSuite, AddSuite):
    backend_name = "memory"

    @pytest.fixture
    async def make_store(self) -> AsyncIterator[StoreMaker]:
        async with store_factory(lambda ns, layer: MemoryStore(ns, layer)) as make:
            yield make
        for store in make.stores:
            REGISTRY.drop(store.prefix)

    @pytest.fixture
    def foreign_prefixes(self) -> Iterator[set[str]]:
        prefixes: set[str] = set()
        yield prefixes
        for prefix in prefixes:
            REGISTRY.drop(prefix)

    @pytest.fixture
    def foreign_write(self, foreign_prefixes: set[str]) -> ForeignWrite:
        async def write(raw_key: str, value: bytes) -> None:
            shard, key = raw_shard(raw_key)
            shard.set(key, value, 0.0, 0.0)
            foreign_prefixes.add(raw_key[: len(raw_key) - len(key)])

        return write

    @pytest.fixture
    def foreign_exists(self) -> ForeignExists:
        async def exists(raw_key: str) -> bool:
            shard, key = raw_shard(raw_key)
            return shard.get(key, 0.0) is not None

        return exists

    async def test_add_races_between_processes_have_one_winner(self) -> None:
        """Not applicable to the memory store: its entries live in the process's own REGISTRY, so
        two processes never share a key and each would win its own add (it is no cross-process
        lock, and the sidecar does not offer it as one). Its add is atomic within the process,
        across tasks and threads: ``test_exactly_one_of_many_concurrent_adds_wins`` checks that."""


@pytest.fixture
def namespace() -> Iterator[str]:
    name = unique_namespace()
    yield name
    for layer in ("resp", "kv", "query", "meta"):
        REGISTRY.drop(f"{name}:{layer}:")


async def test_lru_by_entries_evicts_the_least_recently_read(namespace: str) -> None:
    store = MemoryStore(namespace, "kv", max_entries=3)
    for key in ("a", "b", "c"):
        await store.set(key, key.encode(), 60)
    assert await store.get("a") == b"a"  # a is now more recent than b and c
    assert await store.get("c") == b"c"
    await store.set("d", b"d", 60)
    assert await store.get_many(["a", "b", "c", "d"]) == [b"a", None, b"c", b"d"]
    assert await store.size() == 3


async def test_lru_by_bytes_evicts_the_least_recently_read(namespace: str) -> None:
    store = MemoryStore(namespace, "kv", max_entries=100, max_bytes=1024)
    for key in ("a", "b", "c"):
        await store.set(key, key.encode() * 300, 60)
    assert await store.get("a") is not None
    await store.set("d", b"d" * 300, 60)  # 1200 bytes > 1024: b, the least recently used, goes
    assert [v is not None for v in await store.get_many(["a", "b", "c", "d"])] == [True, False, True, True]
    assert store.shard.nbytes == 900


async def test_value_larger_than_max_bytes_is_not_kept_and_evicts_nothing(namespace: str) -> None:
    store = MemoryStore(namespace, "kv", max_bytes=1024)
    await store.set("small", b"s" * 100, 60)
    await store.set("big", b"old", 60)
    assert await store.set("big", b"b" * 2000, 60) is True
    assert await store.get("big") is None  # the old value is gone too: never serve a stale one
    assert await store.get("small") == b"s" * 100
    assert store.shard.nbytes == 100


async def test_overwrite_adjusts_the_byte_count(namespace: str) -> None:
    store = MemoryStore(namespace, "kv", max_bytes=1024)
    await store.set("k", b"x" * 1000, 60)
    await store.set("k", b"y" * 10, 60)
    await store.set("other", b"z" * 1000, 60)
    assert await store.get_many(["k", "other"]) == [b"y" * 10, b"z" * 1000]
    assert store.shard.nbytes == 1010


async def test_stores_of_one_prefix_share_a_registry_entry(namespace: str) -> None:
    first, second = MemoryStore(namespace, "kv"), MemoryStore(namespace, "kv")
    other_layer, other_namespace = MemoryStore(namespace, "resp"), MemoryStore(unique_namespace(), "kv")
    await first.set("k", b"v", 60)
    assert await second.get("k") == b"v"
    assert await other_layer.get("k") is None
    assert await other_namespace.get("k") is None
    await other_layer.set("k", b"resp", 60)
    await second.clear()
    assert await first.get("k") is None
    assert await other_layer.get("k") == b"resp"
    REGISTRY.drop(other_namespace.prefix)


async def test_from_settings_uses_namespace_and_limits_and_ignores_url(namespace: str) -> None:
    settings = CacheSettings(
        cache_namespace=namespace,
        cache_max_entries=2,
        cache_max_bytes=4096,
        cache_timeout=0.5,
    )
    store = MemoryStore.from_settings(settings, "query", url="redis://ignored:6379")
    assert (store.prefix, store.timeout, store.backend_name) == (f"{namespace}:query:", 0.5, "memory")
    assert (store.shard.max_entries, store.shard.max_bytes) == (2, 4096)
    for key in ("a", "b", "c"):
        await store.set(key, b"v", 0)
    assert await store.size() == 2


async def test_a_later_store_with_smaller_limits_trims_the_shared_shard(namespace: str) -> None:
    big = MemoryStore(namespace, "kv", max_entries=10)
    for i in range(10):
        await big.set(str(i), b"v", 60)
    MemoryStore(namespace, "kv", max_entries=4)
    assert await big.size() == 4
    assert await big.get_many(["6", "7", "8", "9"]) == [b"v"] * 4


def test_invalid_limits_are_refused(namespace: str) -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryStore(namespace, "kv", max_entries=0)


def test_event_loops_in_two_threads_share_one_store_safely(namespace: str) -> None:
    store = MemoryStore(namespace, "kv", max_entries=50, max_bytes=4096)
    errors: list[BaseException] = []

    async def hammer(worker: int) -> None:
        for i in range(3000):
            key = f"k{(i * 7 + worker) % 80}"
            await store.set(key, bytes([worker]) * (i % 97), 60)
            value = await store.get(key)
            assert value is None or len(set(value)) <= 1
            if i % 13 == 0:
                await store.delete(f"k{i % 80}")

    def run(worker: int) -> None:
        try:
            asyncio.run(hammer(worker))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    entries = store.shard._entries
    assert len(entries) <= 50
    assert store.shard.nbytes == sum(len(entry.value) for entry in entries.values()) <= 4096
