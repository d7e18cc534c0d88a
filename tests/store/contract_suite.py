"""The storage contract as one test suite that every backend's tests reuse by subclassing.

A backend's module ``tests/store/test_<backend>.py`` subclasses :class:`ContractSuite`
(its name must start with ``Test``), sets ``backend_name`` and provides three fixtures::

    class TestRedisContract(ContractSuite):
        backend_name = "redis"

        @pytest.fixture
        async def make_store(self, redis_url: str) -> AsyncIterator[MakeStore]:
            async with store_factory(lambda ns, layer: RedisStore(ns, layer, url=redis_url)) as make:
                yield make

        @pytest.fixture
        def foreign_write(self, redis_client: Redis) -> ForeignWrite:
            async def write(raw_key: str, value: bytes) -> None:
                await redis_client.set(raw_key, value)
            return write

        @pytest.fixture
        def foreign_exists(self, redis_client: Redis) -> ForeignExists:
            async def exists(raw_key: str) -> bool:
                return bool(await redis_client.exists(raw_key))
            return exists

``make_store(layer="kv", namespace=None)`` returns an OPENED store; ``namespace=None`` means
this test's own fresh namespace (the same one for every call in one test). ``store_factory``
does the opening, the namespace and the teardown (clear, then close) for you.
``foreign_write`` / ``foreign_exists`` use the backend's OWN driver and the raw key
(``<namespace>:<layer>:<key>`` is what our stores write), bypassing our Store class: they stand
for another application sharing the server, whose keys ``clear()`` must never touch.

The generated namespaces contain ``_`` and ``.`` on purpose: a backend that builds a SQL
``LIKE`` or a regular expression from the prefix without escaping them wipes the look-alike
keys that :meth:`ContractSuite.test_clear_touches_only_its_own_namespace_and_layer` plants.

If a backend truly cannot honour one assertion, override that one test method with a narrower
version and say why in its docstring; never skip the suite.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import pytest

from tina4_sidecar.store.contract import Store


class MakeStore(Protocol):
    async def __call__(self, layer: str = "kv", namespace: str | None = None) -> Store: ...


class ForeignWrite(Protocol):
    async def __call__(self, raw_key: str, value: bytes) -> None: ...


class ForeignExists(Protocol):
    async def __call__(self, raw_key: str) -> bool: ...


def unique_namespace() -> str:
    """A fresh namespace valid for ``TINA4_CACHE_NAMESPACE``, with LIKE/regex metacharacters in it."""
    return f"tina4:test-run_{uuid.uuid4().hex[:16]}.ns"


def look_alike(namespace: str) -> str:
    """A different namespace that an unescaped LIKE (``_``) or regex (``.``) pattern would also match."""
    return namespace.replace("_", "X").replace(".", "Z")


class StoreMaker:
    """The ``make_store`` callable of :func:`store_factory`: builds, opens and remembers stores."""

    def __init__(self, build: Callable[[str, str], Store], namespace: str) -> None:
        self.build = build
        self.namespace = namespace
        self.stores: list[Store] = []

    async def __call__(self, layer: str = "kv", namespace: str | None = None) -> Store:
        store = self.build(namespace or self.namespace, layer)
        await store.open()
        self.stores.append(store)
        return store

    async def close_all(self) -> None:
        for store in reversed(self.stores):
            await store.clear()  # namespaced: leaves a shared server as it found it
            await store.close()


@asynccontextmanager
async def store_factory(build: Callable[[str, str], Store]) -> AsyncIterator[StoreMaker]:
    """``build(namespace, layer)`` returns an unopened store (no I/O, like ``from_settings``)."""
    maker = StoreMaker(build, unique_namespace())
    try:
        yield maker
    finally:
        await maker.close_all()


MIB = 1024 * 1024
ROUND_TRIP_VALUES: dict[str, bytes] = {
    "text": "héllo wörld, 你好".encode(),
    "all-byte-values": bytes(range(256)) * 4,
    "empty": b"",
    "json-dict": json.dumps({"id": 7, "tags": ["a", "b"], "nested": {"ok": True, "n": None}}).encode(),
    "json-null": b"null",
    "one-mib": os.urandom(MIB),
}
AWKWARD_KEYS: dict[str, str] = {
    "spaces": "a key with spaces",
    "unicode": "ключ-鍵-🔑-ünïcødé",
    "long": "k" * 320,
    "traversal": "../../etc/passwd",
    "newlines": "line\nbreak\r\nend",
    "tab-and-colons": "a:b:c\td",
    "glob-and-like": "*?[x]%_\\",
    "dots": "..",
}


class ContractSuite:
    """Subclass in tests/store/test_<backend>.py and provide fixtures:

    make_store: async callable (layer: str = "kv", namespace: str | None = None) -> opened Store
        (closed after the test; None = this test's own "tina4:test-run_<hex>.ns" namespace)
    foreign_write: async callable (raw_key: str, value: bytes) -> None -- writes with the store's
        OWN client/driver, bypassing our Store
    foreign_exists: async callable (raw_key: str) -> bool

    and set ``backend_name`` to the name ``stats()`` must report. ``ttl_wait`` is how long the
    expiry test sleeps after setting ttl=1.
    """

    backend_name: ClassVar[str] = ""
    ttl_wait: ClassVar[float] = 2.1

    @pytest.fixture
    async def store(self, make_store: MakeStore) -> Store:
        return await make_store()

    # -- values ----------------------------------------------------------------------------------

    @pytest.mark.parametrize("value", ROUND_TRIP_VALUES.values(), ids=ROUND_TRIP_VALUES.keys())
    async def test_value_round_trips_exactly(self, store: Store, value: bytes) -> None:
        assert await store.set("value", value, 60) is True
        got = await store.get("value")
        assert type(got) is bytes
        assert got == value

    async def test_json_values_decode_to_what_was_stored(self, store: Store) -> None:
        document = {"user": {"id": 1, "name": "Zoë"}, "items": [1, 2.5, "x"], "none": None}
        await store.set("doc", json.dumps(document).encode(), 60)
        await store.set("null", json.dumps(None).encode(), 60)
        assert json.loads(await store.get("doc") or b"") == document
        null = await store.get("null")
        assert null is not None  # a stored JSON null is a hit, not a miss
        assert json.loads(null) is None

    async def test_missing_key_is_none(self, store: Store) -> None:
        assert await store.get("never-set") is None

    async def test_set_overwrites(self, store: Store) -> None:
        await store.set("k", b"first", 60)
        await store.set("k", b"second, longer than the first", 60)
        await store.set("k", b"3rd", 60)
        assert await store.get("k") == b"3rd"

    async def test_bytearray_and_memoryview_are_stored_as_bytes(self, store: Store) -> None:
        # Store.set is annotated ``bytes`` but documents and accepts any bytes-like value
        await store.set("ba", bytearray(b"\x00array"), 60)  # type: ignore[arg-type]
        await store.set("mv", memoryview(b"\x00view"), 60)  # type: ignore[arg-type]
        assert await store.get_many(["ba", "mv"]) == [b"\x00array", b"\x00view"]

    # -- arguments ---------------------------------------------------------------------------------

    async def test_negative_ttl_raises_and_stores_nothing(self, store: Store) -> None:
        with pytest.raises(ValueError, match="ttl"):
            await store.set("k", b"v", -1)
        assert await store.get("k") is None

    async def test_non_bytes_value_raises(self, store: Store) -> None:
        with pytest.raises(TypeError, match="bytes"):
            await store.set("k", "a str", 60)  # type: ignore[arg-type]

    # -- expiry: the suite's only sleeping test -----------------------------------------------------

    async def test_ttl_expiry_and_ttl_zero(self, store: Store) -> None:
        await store.set("short", b"s", 1)
        await store.set("unread", b"u", 1)
        await store.set("forever", b"f", 0)
        await store.set("long", b"l", 3600)
        await store.set("extended", b"e", 1)
        await store.set("extended", b"e2", 0)  # an overwrite replaces the expiry too
        await store.set("shortened", b"x", 0)
        await store.set("shortened", b"x2", 1)
        assert await store.get("short") == b"s"  # not yet expired

        await asyncio.sleep(self.ttl_wait)

        assert await store.delete("unread") is False  # an expired entry does not exist, read or not
        assert await store.get("short") is None
        assert await store.get("shortened") is None
        assert await store.get("forever") == b"f"
        assert await store.get("long") == b"l"
        assert await store.get("extended") == b"e2"
        keys = ["short", "forever", "shortened", "long", "extended"]
        assert await store.get_many(keys) == [None, b"f", None, b"l", b"e2"]
        assert await store.delete("short") is False
        assert await store.size() == 3

    # -- delete, get_many --------------------------------------------------------------------------

    async def test_delete_reports_whether_the_key_existed(self, store: Store) -> None:
        await store.set("k", b"v", 60)
        await store.set("other", b"o", 60)
        assert await store.delete("k") is True
        assert await store.get("k") is None
        assert await store.delete("k") is False
        assert await store.delete("never-set") is False
        assert await store.get("other") == b"o"

    async def test_get_many_keeps_order_with_none_for_missing(self, store: Store) -> None:
        await store.set("a", b"1", 60)
        await store.set("c", b"3", 60)
        await store.set("e", b"", 60)
        assert await store.get_many(["c", "missing", "a", "e", "a"]) == [b"3", None, b"1", b"", b"1"]
        assert await store.get_many(["x", "y"]) == [None, None]
        assert await store.get_many([]) == []

    # -- isolation ---------------------------------------------------------------------------------

    async def test_layers_of_one_namespace_are_independent(self, make_store: MakeStore) -> None:
        kv, resp = await make_store("kv"), await make_store("resp")
        await kv.set("same", b"kv value", 60)
        await resp.set("same", b"resp value", 60)
        assert await kv.get("same") == b"kv value"
        assert await resp.get("same") == b"resp value"
        await kv.delete("same")
        assert await resp.get("same") == b"resp value"

    async def test_two_stores_of_one_namespace_and_layer_share_entries(self, make_store: MakeStore) -> None:
        first, second = await make_store("query"), await make_store("query")
        await first.set("shared", b"v", 60)
        assert await second.get("shared") == b"v"
        assert await second.delete("shared") is True
        assert await first.get("shared") is None

    async def test_clear_touches_only_its_own_namespace_and_layer(
        self, make_store: MakeStore, foreign_write: ForeignWrite, foreign_exists: ForeignExists
    ) -> None:
        mine = await make_store("kv")
        same_namespace_other_layer = await make_store("resp")
        other_namespace = await make_store("kv", unique_namespace())
        for store in (mine, same_namespace_other_layer, other_namespace):
            await store.set("k1", b"v1", 60)
            await store.set("k2", b"v2", 0)
        ns = mine.namespace
        foreign = [
            "tina4:cache:other-app",
            "unrelated:key",
            f"{look_alike(ns)}:kv:k1",  # what an unescaped LIKE or regex prefix would also match
            f"{ns}:kvx:k1",  # shares our prefix's characters but not its ":" boundary
            f"{ns}:kv",
        ]
        for raw_key in foreign:
            await foreign_write(raw_key, b"not yours")

        assert await mine.clear() is True

        assert await mine.get_many(["k1", "k2"]) == [None, None]
        assert await mine.size() == 0
        assert await same_namespace_other_layer.get_many(["k1", "k2"]) == [b"v1", b"v2"]
        assert await other_namespace.get_many(["k1", "k2"]) == [b"v1", b"v2"]
        for raw_key in foreign:
            assert await foreign_exists(raw_key), f"clear() removed the foreign key {raw_key!r}"
        assert await mine.set("k1", b"again", 60) is True  # usable after clear()
        assert await mine.get("k1") == b"again"

    async def test_clear_of_an_empty_store_succeeds(self, store: Store) -> None:
        assert await store.clear() is True
        assert await store.size() == 0

    # -- size and stats ----------------------------------------------------------------------------

    async def test_size_counts_live_entries_of_this_layer(self, make_store: MakeStore) -> None:
        store, other_layer = await make_store("kv"), await make_store("meta")
        assert await store.size() == 0
        for key in ("a", "b", "c"):
            await store.set(key, b"v", 60)
        await other_layer.set("a", b"v", 60)
        assert await store.size() == 3
        await store.set("a", b"overwritten", 60)
        assert await store.size() == 3
        await store.delete("b")
        assert await store.size() == 2
        await store.clear()
        assert await store.size() == 0
        assert await other_layer.size() == 1

    async def test_stats_count_hits_misses_and_size(self, store: Store) -> None:
        empty = await store.stats()
        assert (empty.hits, empty.misses, empty.size, empty.errors) == (0, 0, 0, 0)
        await store.get("missing")
        await store.set("k", b"v", 60)
        await store.get("k")
        await store.get_many(["k", "missing", "k"])
        stats = await store.stats()
        assert stats.as_spec_dict() == {"hits": 3, "misses": 2, "size": 1, "backend": self.backend_name}
        assert stats.errors == 0
        store.reset_stats()
        assert (await store.stats()).as_spec_dict() == {
            "hits": 0,
            "misses": 0,
            "size": 1,
            "backend": self.backend_name,
        }

    async def test_backend_name_is_the_one_the_spec_reports(self, store: Store) -> None:
        assert self.backend_name, "set backend_name on the ContractSuite subclass"
        assert store.backend_name == self.backend_name
        spec = (await store.stats()).as_spec_dict()
        assert list(spec) == ["hits", "misses", "size", "backend"]

    async def test_ping_answers_when_open(self, store: Store) -> None:
        await store.ping()

    # -- concurrency -------------------------------------------------------------------------------

    async def test_concurrent_writers_to_distinct_keys(self, store: Store) -> None:
        values = {f"key-{i}": f"value-{i}-".encode() * (i + 1) for i in range(50)}
        results = await asyncio.gather(*(store.set(k, v, 60) for k, v in values.items()))
        assert all(results)
        assert await store.get_many(list(values)) == list(values.values())
        assert await store.size() == 50

    async def test_concurrent_writers_to_one_key_leave_one_whole_value(self, store: Store) -> None:
        # different lengths, so that a mix of two writes cannot look like a valid value
        written = {bytes([i]) * (1000 + 37 * i) for i in range(50)}
        results = await asyncio.gather(*(store.set("hot", value, 60) for value in written))
        assert all(results)
        assert await store.get("hot") in written
        await store.set("hot", b"last", 60)  # sequential writes: the last one wins
        assert await store.get("hot") == b"last"
        assert await store.size() == 1

    # -- keys --------------------------------------------------------------------------------------

    @pytest.mark.parametrize("key", AWKWARD_KEYS.values(), ids=AWKWARD_KEYS.keys())
    async def test_awkward_key_round_trips(self, store: Store, key: str) -> None:
        assert await store.set(key, key.encode() + b"!", 60) is True
        assert await store.get(key) == key.encode() + b"!"
        assert await store.delete(key) is True
        assert await store.get(key) is None

    async def test_awkward_keys_do_not_collide(self, store: Store) -> None:
        keys = [*AWKWARD_KEYS.values(), "etc/passwd", "line break end", "k" * 321, "."]
        for index, key in enumerate(keys):
            await store.set(key, str(index).encode(), 60)
        assert await store.get_many(keys) == [str(i).encode() for i in range(len(keys))]
        assert await store.size() == len(keys)


@dataclass(frozen=True)
class StoreSpec:
    """How ANOTHER process opens the store under test, for :class:`AddSuite`'s cross-process race.

    The child builds ``CacheSettings(cache_backend=backend, cache_url=url, cache_namespace=<the
    test's namespace>, **settings)`` and calls ``tina4_sidecar.store.factory.build_store`` with the
    test's layer: the same path the sidecar takes, without the file-store fallback (a fallback
    would hide a failing backend). ``settings`` holds any other ``CacheSettings`` field as text,
    e.g. ``{"cache_dir": str(path)}``; ``cache_timeout`` defaults to ``RACER_TIMEOUT``. The child's
    environment has no ``TINA4_*`` variables: the spec is its whole configuration.
    """

    backend: str
    url: str | None = None
    settings: dict[str, str] = field(default_factory=dict)


RACERS = 4
"""Processes in the cross-process add race."""
RACER_TIMEOUT = "5"
"""cache_timeout of a racing process: its adds queue behind each other, and a timeout is an error."""
RACER_OPEN_TIMEOUT = 60.0
"""Seconds a racing process may take to start and open its store (imports, connections)."""
EXPIRY_WAIT = 2.1
"""Seconds after which a ttl=1 entry has expired everywhere (memcached's clock ticks in seconds)."""

_ADD_RACER = """
import asyncio, json, sys, time
from tina4_sidecar.config import CacheSettings
from tina4_sidecar.store.factory import build_store

async def main() -> None:
    job = json.loads(sys.argv[1])
    settings = CacheSettings(
        _env_file=None,
        cache_backend=job["backend"],
        cache_url=job["url"],
        cache_namespace=job["namespace"],
        **job["settings"],
    )
    store = build_store(settings, job["layer"])
    await store.open()
    try:
        print("ready", flush=True)
        start_at = float(sys.stdin.readline())
        await asyncio.sleep(max(0.0, start_at - time.time()))
        worker, ttl = job["worker"], job["ttl"]
        added = await asyncio.gather(
            *(store.add(key, f"{worker}:{i}".encode(), ttl) for i, key in enumerate(job["keys"]))
        )
        report = {"added": added, "errors": store.counters.errors, "last_error": store.counters.last_error}
        print(json.dumps(report), flush=True)
    finally:
        await store.close()

asyncio.run(main())
"""


class AddSuite:
    """``add()``: set-if-absent, atomic across concurrent callers AND processes (it backs the
    cross-process locks). Mixed into a backend's suite once the backend implements ``_add``; uses
    the same ``make_store`` fixture, plus ``store_spec``: a :class:`StoreSpec` saying how another
    process opens the same store. A store that processes cannot share (memory) overrides
    :meth:`test_add_races_between_processes_have_one_winner` instead, saying why in its docstring.
    """

    @pytest.fixture
    def store_spec(self) -> StoreSpec:
        pytest.fail(
            f"{type(self).__name__} mixes in AddSuite without a store_spec fixture: return a StoreSpec "
            "saying how another process opens this store (or, for a store that processes cannot "
            "share, override test_add_races_between_processes_have_one_winner and say why)",
            pytrace=False,
        )

    async def test_add_sets_only_when_absent(self, make_store: MakeStore) -> None:
        store = await make_store()
        assert await store.add("lock", b"a", 0)
        assert not await store.add("lock", b"b", 0)
        assert await store.get("lock") == b"a"
        assert await store.delete("lock")
        assert await store.add("lock", b"c", 0)
        assert await store.get("lock") == b"c"

    async def test_add_rejects_a_negative_ttl_and_stores_nothing(self, make_store: MakeStore) -> None:
        store = await make_store()
        with pytest.raises(ValueError, match="ttl"):
            await store.add("k", b"v", -1)
        assert await store.get("k") is None

    async def test_an_added_value_reads_back_everywhere_and_counts_once(self, make_store: MakeStore) -> None:
        store, other = await make_store(), await make_store()
        assert await store.add("k", b"added with a ttl", 60)
        assert await store.add("forever", b"added without", 0)
        assert await other.get_many(["k", "forever"]) == [b"added with a ttl", b"added without"]
        assert not await other.add("k", b"second", 60)
        assert await store.size() == 2  # a lost add creates nothing
        assert await other.delete("k") is True
        assert await store.size() == 1

    @pytest.mark.parametrize("value", ROUND_TRIP_VALUES.values(), ids=ROUND_TRIP_VALUES.keys())
    async def test_added_value_round_trips_exactly(self, make_store: MakeStore, value: bytes) -> None:
        store = await make_store()
        assert await store.add("value", value, 60)
        assert not await store.add("value", b"other", 60)
        assert await store.get("value") == value

    async def test_add_with_awkward_keys(self, make_store: MakeStore) -> None:
        store = await make_store()
        keys = [*AWKWARD_KEYS.values(), "x" * 3000]  # the last is longer than any backend's raw key
        for index, key in enumerate(keys):
            assert await store.add(key, str(index).encode(), 60), key
        for key in keys:
            assert not await store.add(key, b"again", 60), key
        assert await store.get_many(keys) == [str(i).encode() for i in range(len(keys))]

    async def test_add_never_clobbers_a_live_value_set_by_another_store(self, make_store: MakeStore) -> None:
        writer, adder = await make_store(), await make_store()
        await writer.set("with-ttl", b"live", 60)
        await writer.set("forever", b"live forever", 0)
        await writer.set("rewritten", b"first", 1)
        await writer.set("rewritten", b"now for an hour", 3600)  # the overwrite's TTL is the one that counts
        for key in ("with-ttl", "forever", "rewritten"):
            assert not await adder.add(key, b"clobbered", 60), key
        assert await writer.get_many(["with-ttl", "forever", "rewritten"]) == [
            b"live",
            b"live forever",
            b"now for an hour",
        ]
        assert adder.counters.errors == 0  # "taken", not a failure

    async def test_add_replaces_an_expired_value(self, make_store: MakeStore) -> None:
        store, other = await make_store(), await make_store()
        assert await store.add("short", b"old", 1)
        await other.set("set-short", b"old", 1)
        assert await store.add("long", b"kept", 3600)
        await asyncio.sleep(EXPIRY_WAIT)
        assert await store.get("short") is None
        assert await other.add("short", b"new", 0)  # expired, whichever store wrote or reads it
        assert await store.add("set-short", b"new too", 60)
        assert not await other.add("long", b"clobbered", 60)
        assert await store.get_many(["short", "set-short", "long"]) == [b"new", b"new too", b"kept"]

    async def test_add_sees_a_clear_made_by_another_store_at_once(self, make_store: MakeStore) -> None:
        first, second = await make_store(), await make_store()
        assert await first.add("lock", b"first", 30)
        assert not await second.add("lock", b"second", 30)
        assert await first.clear() is True
        assert await second.add("lock", b"second", 30)  # at once: a clear releases every lock
        assert not await first.add("lock", b"first again", 30)
        assert await first.get("lock") == b"second"

    async def test_exactly_one_of_many_concurrent_adds_wins(self, make_store: MakeStore) -> None:
        stores = [await make_store() for _ in range(4)]
        results = await asyncio.gather(*(stores[i % 4].add("race", str(i).encode(), 30) for i in range(40)))
        assert results.count(True) == 1
        winner = results.index(True)
        assert await stores[0].get("race") == str(winner).encode()

    async def test_add_races_between_processes_have_one_winner(
        self, make_store: MakeStore, store_spec: StoreSpec
    ) -> None:
        """RACERS processes, each with its own store (own connections, nothing cached in common),
        start at one shared instant and add the same keys at once: every key free or expired has
        exactly one winner, whose value is the one stored, and a key held by a live value none."""
        store = await make_store()
        keys = [f"race-{i}" for i in range(16)] + ["race-long-" + "x" * 1200]
        expired = keys[0:16:2]  # the others were never written
        for key in expired:
            await store.set(key, b"expired", 1)
        written_at = time.monotonic()
        await store.set("held", b"live", 0)
        keys.append("held")
        jobs = [
            {
                "backend": store_spec.backend,
                "url": store_spec.url,
                "settings": {"cache_timeout": RACER_TIMEOUT, **store_spec.settings},
                "namespace": store.namespace,
                "layer": store.layer,
                "keys": keys,
                "ttl": 30,
                "worker": worker,
            }
            for worker in range(RACERS)
        ]
        env = {name: value for name, value in os.environ.items() if not name.startswith("TINA4_")}
        racers: list[asyncio.subprocess.Process] = []
        try:
            for job in jobs:
                racers.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-c",
                        _ADD_RACER,
                        json.dumps(job),
                        stdin=asyncio.subprocess.PIPE,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=asyncio.subprocess.PIPE,
                        env=env,
                    )
                )
            for racer in racers:
                assert racer.stdout is not None
                line = await asyncio.wait_for(racer.stdout.readline(), RACER_OPEN_TIMEOUT)
                if line.strip() != b"ready":
                    _, err = await racer.communicate()
                    pytest.fail(f"a racing process could not open its store:\n{err.decode()[-3000:]}")
            await asyncio.sleep(max(0.0, EXPIRY_WAIT - (time.monotonic() - written_at)))
            start_at = f"{time.time() + 0.3}\n".encode()  # every process waits for the same instant
            for racer in racers:
                assert racer.stdin is not None
                racer.stdin.write(start_at)
                await racer.stdin.drain()
                racer.stdin.close()
            outputs = await asyncio.wait_for(
                asyncio.gather(*(racer.communicate() for racer in racers)), RACER_OPEN_TIMEOUT
            )
        finally:
            for racer in racers:
                if racer.returncode is None:
                    racer.kill()
                    await racer.wait()
        for racer, (_, err) in zip(racers, outputs, strict=True):
            assert racer.returncode == 0, err.decode()[-3000:]
        reports = [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outputs]
        failures = [report["last_error"] for report in reports if report["errors"]]
        assert failures == [], "racing processes had store errors (an add that failed is no answer)"
        stored = await store.get_many(keys)
        for index, key in enumerate(keys):
            winners = [worker for worker, report in enumerate(reports) if report["added"][index]]
            if key == "held":
                assert winners == [], "an add took a key that held a live value"
                assert stored[index] == b"live"
                continue
            state = "expired" if key in expired else "free"
            assert len(winners) == 1, f"{key[:16]} ({state}): won by {winners}"
            assert stored[index] == f"{winners[0]}:{index}".encode()
