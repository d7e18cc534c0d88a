"""The memory store: the shared contract, LRU eviction by entries and bytes, and the process-wide registry."""

from __future__ import annotations

import asyncio
import random
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from hashlib import blake2b

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
from tina4_sidecar.store.backends.memory import INLINE_MAX, REGISTRY, MemoryStore, Shard, digest
from tina4_sidecar.store.backends.memory import _size as record_size


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
    assert store.shard.nbytes == sum(record_size(record) for record in entries.values()) <= 4096


# -- compact entries: digest keys, values kept with their deadline --------------------------------


def test_keys_that_look_alike_never_share_an_entry(namespace: str) -> None:
    """Each key reads back its own value: a digest stands for exactly one key (near-identical URLs,
    unicode, a lone surrogate beside the pair it is not, the empty key)."""
    shard = REGISTRY.shard(f"{namespace}:kv:", max_entries=100_000, max_bytes=2**30)
    keys = [f"GET http://shop.example/p?id={n}" for n in range(20_000)]
    keys += [f"GET http://shop.example/p?id={n} " for n in range(100)]
    keys += ["", " ", "\n", "é", "e\u0301", "\U0001f600", "\ud83d\ude00", "\ud83d", "\ude00", "../k"]
    assert len({digest(key) for key in keys}) == len(keys)
    for n, key in enumerate(keys):
        shard.set(key, n.to_bytes(4), 0.0, 0.0)
    assert len(shard) == len(keys)
    assert all(shard.get(key, 0.0) == n.to_bytes(4) for n, key in enumerate(keys))
    assert shard.get("GET http://shop.example/p?id=20000", 0.0) is None


def test_a_digest_is_keyed_per_process() -> None:
    """The digests depend on a secret of this process: no one outside can look for a colliding pair."""
    key = "GET http://shop.example/"
    unkeyed = int.from_bytes(blake2b(key.encode(), digest_size=16).digest())
    assert digest(key) == digest(key) != unkeyed


@pytest.mark.parametrize("size", [0, 1, INLINE_MAX - 1, INLINE_MAX, INLINE_MAX + 1, 3 * INLINE_MAX])
async def test_values_of_every_size_round_trip_and_expire(namespace: str, size: int) -> None:
    shard = REGISTRY.shard(f"{namespace}:kv:")
    value = bytes(range(256)) * (size // 256) + b"v" * (size % 256)
    shard.set("k", value, 100.0, 50.0)
    shard.set("forever", value, 0.0, 50.0)
    assert shard.get("k", 99.9) == value
    assert shard.nbytes == 2 * size
    assert shard.get("k", 100.0) is None  # the deadline is kept exactly
    assert shard.get("forever", 1e12) == value
    assert shard.nbytes == size
    assert shard.delete("forever", 1e12) is True
    assert shard.nbytes == 0


async def test_eviction_by_bytes_counts_the_values_own_length(namespace: str) -> None:
    """The deadline kept beside a value is not counted: ``max_bytes`` bounds what was stored."""
    store = MemoryStore(namespace, "kv", max_entries=100, max_bytes=3 * INLINE_MAX)
    await store.set("a", b"a" * INLINE_MAX, 60)  # kept with its deadline in one bytes object
    await store.set("b", b"b" * (INLINE_MAX + 1), 60)  # kept as a (value, deadline) pair
    await store.set("c", b"c" * (INLINE_MAX - 1), 60)
    assert store.shard.nbytes == 3 * INLINE_MAX  # exactly full: nothing evicted
    assert await store.size() == 3
    await store.set("d", b"d", 60)  # one byte over: a, the least recently used, goes
    assert [v is not None for v in await store.get_many(["a", "b", "c", "d"])] == [False, True, True, True]
    assert store.shard.nbytes == 2 * INLINE_MAX + 1


def test_eviction_follows_the_order_of_use_exactly_through_reads_overwrites_and_deletes(
    namespace: str,
) -> None:
    """The order of use (a deque with stale places skipped and compacted) against an OrderedDict
    model: after every operation of a long random mix the same keys are held, in the same order."""
    rng = random.Random(17)
    shard = REGISTRY.shard(f"{namespace}:kv:", max_entries=40, max_bytes=6000)
    model: OrderedDict[str, bytes] = OrderedDict()
    for step in range(20_000):
        key = f"k{rng.randrange(60)}"
        action = rng.random()
        if action < 0.45:
            value = bytes([step % 256]) * rng.randrange(300)
            shard.set(key, value, 0.0, 0.0)
            model.pop(key, None)
            model[key] = value
            while len(model) > 40 or sum(map(len, model.values())) > 6000:
                model.popitem(last=False)
        elif action < 0.85:
            assert shard.get(key, 0.0) == model.get(key)
            if key in model:
                model.move_to_end(key)
        else:
            assert shard.delete(key, 0.0) is (model.pop(key, None) is not None)
        if step % 97 == 0:
            assert shard.lru_order() == [digest(k) for k in model]
            assert shard.nbytes == sum(map(len, model.values()))
    assert shard.lru_order() == [digest(k) for k in model]


def test_expired_entries_at_the_cold_end_are_dropped_by_writes(namespace: str) -> None:
    shard = REGISTRY.shard(f"{namespace}:kv:")
    shard.set("old", b"o" * 10, 5.0, 0.0)
    shard.set("kept", b"k", 0.0, 0.0)
    assert shard.get("old", 1.0) == b"o" * 10  # read again: now after "kept" in the order
    shard.set("new", b"n", 0.0, 6.0)  # "kept" is the coldest and does not expire: nothing dropped
    assert len(shard) == 3
    assert shard.get("kept", 6.0) == b"k"  # now "old" is the coldest, and expired
    shard.set("newer", b"n", 0.0, 6.0)
    assert len(shard) == 3
    assert shard.nbytes == 3
