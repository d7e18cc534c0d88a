"""The MongoDB store against a real MongoDB-protocol server: the shared contract, the TTL index,
expiry before the TTL monitor runs, what clear() spares, and a server restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pymongo
import pytest

from tests.servers.mongodb import mongodb_server, raw_client, server_url, serving
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
from tina4_sidecar.store.backends.mongodb import COLLECTION, MongoStore
from tina4_sidecar.store.contract import StoreUnavailable

Raw = pymongo.MongoClient[dict[str, Any]]


@pytest.fixture(scope="module")
def mongodb() -> Iterator[ServerProcess]:
    with serving(mongodb_server()) as server:
        yield server


@pytest.fixture(scope="module")
def raw(mongodb: ServerProcess) -> Iterator[Raw]:
    client = raw_client(mongodb)
    yield client
    client.close()


@pytest.fixture
def cache(raw: Raw) -> pymongo.collection.Collection[dict[str, Any]]:
    return raw["tina4"][COLLECTION]


@pytest.fixture
async def stores(mongodb: ServerProcess) -> AsyncIterator[StoreMaker]:
    url = server_url(mongodb)
    async with store_factory(lambda ns, layer: MongoStore(ns, layer, url)) as make:
        yield make


class TestMongoContract(ContractSuite, AddSuite):
    backend_name = "mongodb"

    @pytest.fixture
    def make_store(self, stores: StoreMaker) -> StoreMaker:
        return stores

    @pytest.fixture
    def store_spec(self, mongodb: ServerProcess) -> StoreSpec:
        return StoreSpec("mongodb", url=server_url(mongodb))

    @pytest.fixture
    def foreign_write(self, cache: pymongo.collection.Collection[dict[str, Any]]) -> ForeignWrite:
        async def write(raw_key: str, value: bytes) -> None:
            # shaped like our own documents, with the ns that its key implies: clear() must
            # match ns exactly, not by prefix or pattern
            document = {"ns": raw_key.rpartition(":")[0], "value": value, "expires_at": None}
            await asyncio.to_thread(cache.update_one, {"_id": raw_key}, {"$set": document}, upsert=True)

        return write

    @pytest.fixture
    def foreign_exists(self, cache: pymongo.collection.Collection[dict[str, Any]]) -> ForeignExists:
        async def exists(raw_key: str) -> bool:
            return await asyncio.to_thread(cache.find_one, {"_id": raw_key}) is not None

        return exists


# -- documents and indexes ------------------------------------------------------------------------


async def test_open_creates_the_ttl_and_ns_indexes_idempotently(
    stores: StoreMaker, cache: pymongo.collection.Collection[dict[str, Any]]
) -> None:
    await stores()
    await stores("resp")  # a second open finds the indexes and adds none
    indexes = list(cache.index_information().values())
    ttl = [ix for ix in indexes if [field for field, _ in ix["key"]] == ["expires_at"]]
    assert len(ttl) == 1
    assert ttl[0]["expireAfterSeconds"] == 0
    assert len([ix for ix in indexes if ix["key"][0][0] == "ns"]) == 1


async def test_a_document_has_our_id_ns_binary_value_and_expiry(
    stores: StoreMaker, cache: pymongo.collection.Collection[dict[str, Any]]
) -> None:
    store = await stores("query")
    await store.set("k", b"\x00first", 60)
    await store.set("k", b"\x00second", 120)  # an overwrite keeps our _id
    await store.set("forever", b"f", 0)
    doc = cache.find_one({"_id": f"{store.namespace}:query:k"})
    assert doc is not None
    assert (doc["ns"], doc["value"]) == (f"{store.namespace}:query", b"\x00second")
    assert abs((doc["expires_at"] - datetime.now(UTC)).total_seconds() - 120) < 5
    forever = cache.find_one({"_id": f"{store.namespace}:query:forever"})
    assert forever is not None
    assert forever["expires_at"] is None
    assert cache.count_documents({"ns": f"{store.namespace}:query"}) == 2


async def test_expired_documents_are_never_returned_before_the_ttl_monitor_runs(
    stores: StoreMaker, mongodb: ServerProcess, cache: pymongo.collection.Collection[dict[str, Any]]
) -> None:
    now = await stores()
    await now.set("k", b"v", 60)
    await now.set("forever", b"f", 0)
    # the same namespace seen from an hour later: "k" has expired, but no TTL monitor (whose
    # clock is the server's) has deleted it
    later = MongoStore(now.namespace, "kv", server_url(mongodb), clock=lambda: time.time() + 3600)
    await later.open()
    try:
        assert cache.find_one({"_id": now.full_key("k")}) is not None
        assert await later.get("k") is None
        assert await later.get_many(["k", "forever", "k"]) == [None, b"f", None]
        assert await later.size() == 1
        assert await now.size() == 2
        assert await later.delete("k") is False  # an expired leftover did not exist...
        assert cache.find_one({"_id": now.full_key("k")}) is None  # ...and is gone now
        assert later.counters.errors == 0
    finally:
        await later.close()


async def test_the_database_comes_from_the_url_path(mongodb: ServerProcess, raw: Raw) -> None:
    url = server_url(mongodb, database="otherdb")
    async with store_factory(lambda ns, layer: MongoStore(ns, layer, url)) as make:
        store = await make()
        await store.set("k", b"v", 60)
        assert raw["otherdb"][COLLECTION].find_one({"_id": store.full_key("k")}) is not None
        assert raw["tina4"][COLLECTION].find_one({"_id": store.full_key("k")}) is None


# -- add --------------------------------------------------------------------------------------------


@pytest.fixture
async def an_hour_later(mongodb: ServerProcess) -> AsyncIterator[Callable[[str], Awaitable[MongoStore]]]:
    """``await an_hour_later(namespace)``: an opened store whose clock runs an hour ahead, so that
    what a normal store wrote with a short ttl has expired for it but not for the TTL monitor."""
    opened: list[MongoStore] = []

    async def make(namespace: str) -> MongoStore:
        store = MongoStore(namespace, "kv", server_url(mongodb), clock=lambda: time.time() + 3600)
        await store.open()
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


async def test_add_takes_over_a_document_that_expired_before_the_ttl_monitor_ran(
    stores: StoreMaker,
    an_hour_later: Callable[[str], Awaitable[MongoStore]],
    cache: pymongo.collection.Collection[dict[str, Any]],
) -> None:
    now = await stores()
    await now.set("k", b"old", 60)
    await now.set("forever", b"f", 0)
    later = await an_hour_later(now.namespace)
    assert cache.find_one({"_id": now.full_key("k")}) is not None  # still there: expired only for `later`

    assert await later.add("k", b"\x00new", 30) is True
    assert await later.add("forever", b"clobbered", 30) is False
    doc = cache.find_one({"_id": now.full_key("k")})
    assert doc is not None
    assert (doc["ns"], doc["value"]) == (now.ns, b"\x00new")  # the same document shape as set()
    assert abs((doc["expires_at"] - datetime.now(UTC)).total_seconds() - 3630) < 5
    assert await later.get_many(["k", "forever"]) == [b"\x00new", b"f"]
    assert later.counters.errors == 0


async def test_concurrent_adds_over_an_expired_document_have_one_winner(
    stores: StoreMaker, an_hour_later: Callable[[str], Awaitable[MongoStore]]
) -> None:
    now = await stores()
    keys = [f"lock-{i}" for i in range(10)]
    for key in keys:
        await now.set(key, b"expired for the others", 60)
    racers = [await an_hour_later(now.namespace) for _ in range(4)]  # four clients: four pools
    results = await asyncio.gather(
        *(racer.add(key, f"{n}".encode(), 30) for key in keys for n, racer in enumerate(racers))
    )
    for index, key in enumerate(keys):
        won = [n for n in range(4) if results[index * 4 + n]]
        assert len(won) == 1, f"{key}: won by {won}"
        assert await racers[0].get(key) == str(won[0]).encode()
    assert all(racer.counters.errors == 0 for racer in racers)


class DeleteInterleaved:
    """A collection whose ``delete_one`` lets ``meanwhile`` run first: another process's write that
    lands between add's failed insert and its delete of the expired document."""

    def __init__(self, collection: Any, meanwhile: Callable[[], Awaitable[object]]) -> None:
        self.collection = collection
        self.meanwhile = meanwhile

    def __getattr__(self, name: str) -> Any:
        return getattr(self.collection, name)

    async def delete_one(self, query: dict[str, Any]) -> Any:
        await self.meanwhile()
        return await self.collection.delete_one(query)


async def test_add_never_deletes_a_live_document_written_just_before_its_delete(
    stores: StoreMaker, an_hour_later: Callable[[str], Awaitable[MongoStore]], monkeypatch: pytest.MonkeyPatch
) -> None:
    now = await stores()
    await now.set("k", b"expired for the adder", 60)
    adder, other_process = await an_hour_later(now.namespace), await an_hour_later(now.namespace)
    interleaved = DeleteInterleaved(adder._collection(), lambda: other_process.set("k", b"live", 60))
    monkeypatch.setattr(adder, "_collection", lambda: interleaved)

    assert await adder.add("k", b"clobbered", 60) is False
    assert await other_process.get("k") == b"live"
    assert adder.counters.errors == 0


# -- clear ----------------------------------------------------------------------------------------


async def test_clear_spares_other_namespaces_tina4s_own_entries_and_other_collections(
    stores: StoreMaker, raw: Raw, cache: pymongo.collection.Collection[dict[str, Any]]
) -> None:
    mine, other = await stores(), await stores("kv", unique_namespace())
    for store in (mine, other):
        await store.set("k", b"v", 60)
    expires = datetime.now(UTC) + timedelta(hours=1)
    tina4_own = {"_id": f"tina4:cache:{mine.namespace}", "value": "x", "expires_at": expires}  # no ns
    cache.insert_one(tina4_own)
    elsewhere = raw["tina4"]["another_app"]
    elsewhere.insert_one({"_id": mine.full_key("k"), "ns": mine.ns, "value": b"not ours"})
    try:
        assert await mine.clear() is True
        assert await mine.get("k") is None
        assert await other.get("k") == b"v"
        assert cache.find_one({"_id": tina4_own["_id"]}) is not None
        assert elsewhere.find_one({"_id": mine.full_key("k")}) is not None
    finally:
        cache.delete_one({"_id": tina4_own["_id"]})
        elsewhere.drop()


# -- outages --------------------------------------------------------------------------------------


async def test_a_server_restart_costs_errors_not_exceptions_and_the_client_recovers() -> None:
    server = mongodb_server()
    with serving(server):
        store = MongoStore(unique_namespace(), "kv", server_url(server), timeout=0.25)
        await store.open()
        assert await store.set("k", b"v", 60) is True

        server.stop()
        assert await store.get("k") is None
        assert await store.get_many(["k", "x"]) == [None, None]
        assert await store.set("k", b"v", 60) is False
        assert await store.add("k", b"v", 60) is False
        assert await store.delete("k") is False
        started = time.monotonic()
        assert await store.clear() is False  # fails within the call timeout, not CLEAR_TIMEOUT
        assert time.monotonic() - started < 2
        assert await store.size() == 0
        assert store.counters.errors == 7
        assert store.counters.last_error is not None
        with pytest.raises(StoreUnavailable):
            await store.ping()

        server.start()  # same port
        deadline = time.monotonic() + 10
        while not await store.set("after", b"restart", 60):  # the driver rediscovers the server
            assert time.monotonic() < deadline, f"no recovery: {store.counters.last_error}"
            await asyncio.sleep(0.1)
        assert await store.get("after") == b"restart"
        assert await store.add("lock", b"after the restart", 60) is True
        await store.ping()
        await store.clear()
        await store.close()


async def test_open_fails_with_store_unavailable_when_nothing_listens() -> None:
    store = MongoStore(unique_namespace(), "kv", f"mongodb://127.0.0.1:{free_port()}/tina4", timeout=0.3)
    with pytest.raises(StoreUnavailable):
        await store.open()
    await store.close()


# -- configuration --------------------------------------------------------------------------------


def test_from_settings_takes_credentials_only_when_the_url_has_none() -> None:
    settings = CacheSettings(
        _env_file=None,  # type: ignore[call-arg]
        cache_backend="mongodb",
        cache_namespace="app1",
        cache_timeout=0.25,
        cache_username="app",
        cache_password="secret",
    )
    default = MongoStore.from_settings(settings, "resp")
    assert (default.url, default.ns, default.timeout) == ("mongodb://localhost:27017", "app1:resp", 0.25)
    assert default._credentials == {"username": "app", "password": "secret"}
    in_url = MongoStore.from_settings(settings, "kv", url="mongodb://u:p@db1,db2/cachedb?replicaSet=rs")
    assert in_url._credentials == {}
    assert in_url.location == "db1,db2/cachedb"  # for messages: no password


def test_a_url_of_another_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="mongodb://"):
        MongoStore("app", "kv", "redis://localhost:6379")
