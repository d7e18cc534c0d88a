"""The database store recovering on real PostgreSQL and SQLite: a table dropped under a live store,
the bulk delete of the fallback's replay, a crashed server, and the outage's log lines."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.servers import postgres as pg
from tests.store.contract_suite import unique_namespace
from tests.store.test_database import RawTable, builder, fresh_url, opened, settings
from tina4_sidecar.config import Backend, CacheSettings
from tina4_sidecar.proxy.logs import setup_logging
from tina4_sidecar.store.backends.database import TABLE, DatabaseStore, DeletesManyRows
from tina4_sidecar.store.contract import Store, StoreUnavailable
from tina4_sidecar.store.factory import open_store
from tina4_sidecar.store.fallback import FallbackStore

__all__ = ["fresh_url", "opened"]  # fixtures of test_database, used here too (not unused imports)

shared_postgres = pg.shared_postgres
throwaway_postgres = pg.throwaway_postgres

PROBE = 0.2
TIMEOUT = 0.5
RECREATED = "was missing"
SCHEMA_NAMES = {TABLE, f"{TABLE}_ns", f"{TABLE}_expires"}


@pytest.fixture(autouse=True)
def _no_cache_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings of these tests come from their arguments, not from the developer's shell."""
    for name in ("TINA4_CACHE_URL", "TINA4_DATABASE_URL", "TINA4_CACHE_USERNAME", "TINA4_CACHE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


def fallback_settings(url: str, tmp_path: Path, **values: Any) -> CacheSettings:
    values = {
        "cache_probe_interval": PROBE,
        "cache_timeout": TIMEOUT,
        "cache_dir": tmp_path / "files",
        **values,
    }
    return settings(url, cache_namespace=unique_namespace(), **values)


@pytest.fixture
async def fallback() -> AsyncIterator[Callable[[CacheSettings], Any]]:
    """``await fallback(settings)``: a FallbackStore on the database, closed after the test."""
    stores: list[Store] = []

    async def open_one(configured: CacheSettings) -> FallbackStore:
        store = await open_store(configured, "kv", Backend.DATABASE)
        stores.append(store)
        assert isinstance(store, FallbackStore)
        return store

    yield open_one
    for store in stores:
        await store.close()


async def wait_until(condition: Callable[[], bool], within: float, what: str) -> float:
    """Seconds until ``condition()`` held; fails the test after ``within`` seconds."""
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < within, f"{what} not within {within}s"
        await asyncio.sleep(0.01)
    return time.monotonic() - began


def table_and_indexes(raw: RawTable) -> set[str]:
    """Which of the table and its two indexes exist."""
    exists = (
        "SELECT count(*) FROM sqlite_master WHERE name = ?"
        if raw.is_sqlite
        else "SELECT count(*) FROM pg_class WHERE oid = to_regclass(?)"
    )
    return {name for name in SCHEMA_NAMES if raw.scalar(exists, name)}


async def answers(store: Store) -> bool:
    try:
        await store.ping()
    except StoreUnavailable:
        return False
    return True


# -- a table dropped under a live store ---------------------------------------------------------------


async def test_every_call_creates_a_dropped_table_again(
    fresh_url: str, opened: Any, caplog: pytest.LogCaptureFixture
) -> None:
    store: DatabaseStore = await opened(builder(fresh_url)(unique_namespace(), "kv"))
    raw = RawTable(fresh_url)
    assert table_and_indexes(raw) == SCHEMA_NAMES
    await store.set("before", b"v", 0)
    calls: list[tuple[str, Callable[[], Any], Any]] = [
        ("get", lambda: store.get("before"), None),  # gone with the table
        ("set", lambda: store.set("k", b"v", 60), True),
        ("get_many", lambda: store.get_many(["k", "x"]), [None, None]),
        ("add", lambda: store.add("lock", b"mine", 60), True),
        ("delete", lambda: store.delete("k"), False),
        ("clear", store.clear, True),
        ("size", store.size, 0),
        ("ping", store.ping, None),
        ("delete_many", lambda: store._delete_many(["a", "b"]), None),
        ("sweep", store.sweep, 0),
    ]
    with caplog.at_level(logging.WARNING, logger="tina4_sidecar.store"):
        for name, call, answer in calls:
            raw.execute(f"DROP TABLE {TABLE}")
            assert await call() == answer, name
            assert table_and_indexes(raw) == SCHEMA_NAMES, name
    assert store.counters.errors == 0, store.counters.last_error
    recreated = [r.getMessage() for r in caplog.records if RECREATED in r.getMessage()]
    assert len(recreated) == len(calls), recreated
    assert store.engine.target in recreated[0]
    assert await store.set("after", b"kept", 0) is True
    assert await store.get("after") == b"kept"


async def test_a_fallback_store_goes_on_on_its_primary_when_the_table_is_dropped(
    fresh_url: str, tmp_path: Path, fallback: Any
) -> None:
    store: FallbackStore = await fallback(fallback_settings(fresh_url, tmp_path))
    raw = RawTable(fresh_url)
    await store.set("before", b"v", 0)
    raw.execute(f"DROP TABLE {TABLE}")
    assert await store.set("k", b"after the drop", 0) is True
    assert await store.delete("before") is False
    await asyncio.sleep(PROBE * 2)  # a health check would have switched to the file store by now
    assert (store.degraded, store.counters.errors) == (False, 0)
    assert not store.outage
    assert raw.exists(store.full_key("k"))


async def test_a_table_that_cannot_be_created_again_makes_the_store_unavailable(
    throwaway_postgres: pg.ThrowawayPostgres, tmp_path: Path, fallback: Any, opened: Any
) -> None:
    """A role that may use the table but not create it: its ping fails, and the file store serves."""
    server = throwaway_postgres
    owner = RawTable(server.url())
    await opened(DatabaseStore.from_settings(settings(server.url()), "kv"))  # creates the table
    owner.execute("DROP ROLE IF EXISTS t4s_user")
    owner.execute("CREATE ROLE t4s_user LOGIN PASSWORD 'user-secret'")
    owner.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")  # the default from PostgreSQL 15 on
    owner.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {TABLE} TO t4s_user")
    user_url = f"postgresql://t4s_user:user-secret@127.0.0.1:{server.port}/postgres"
    store: FallbackStore = await fallback(fallback_settings(user_url, tmp_path))
    assert await store.set("k", b"v", 0) is True
    try:
        owner.execute(f"DROP TABLE {TABLE}")
        assert store.primary is not None
        with pytest.raises(StoreUnavailable, match="permission denied for schema public"):
            await store.primary.ping()
        assert await store.get("k") is None
        await wait_until(lambda: store.degraded, 2.0, "the switch to the file store")
        assert await store.set("k", b"in a file", 0) is True
        assert await store.get("k") == b"in a file"
    finally:
        owner.execute(f"DROP TABLE IF EXISTS {TABLE}")
        owner.execute("DROP OWNED BY t4s_user")


async def test_the_replay_completes_when_the_table_went_missing_during_the_outage(
    throwaway_postgres: pg.ThrowawayPostgres, tmp_path: Path, fallback: Any
) -> None:
    server = throwaway_postgres
    store: FallbackStore = await fallback(fallback_settings(server.url(), tmp_path))
    raw = RawTable(server.url())
    await store.set("before", b"v", 0)
    raw.execute(f"DROP TABLE {TABLE}")  # lost in a crash, say: the store has not run a statement since
    await asyncio.to_thread(server.stop)
    try:
        assert await store.get("before") is None
        await wait_until(lambda: store.degraded, 2.0, "the switch to the file store")
        await store.delete("before")
        await store.set("written", b"in a file", 0)
        assert store.outage
    finally:
        await asyncio.to_thread(server.start)
    await wait_until(lambda: not store.degraded, 2 * PROBE + 2 * TIMEOUT + 1, "the switch back")
    assert not store.outage
    assert await store.set("after", b"back", 0) is True
    assert raw.exists(store.full_key("after"))


async def test_the_outage_is_replayed_on_postgres(
    throwaway_postgres: pg.ThrowawayPostgres, tmp_path: Path, fallback: Any
) -> None:
    server = throwaway_postgres
    store: FallbackStore = await fallback(fallback_settings(server.url(), tmp_path))
    raw = RawTable(server.url())
    for key in ("purged", "rewritten", "untouched"):
        await store.set(key, b"old", 0)
    await asyncio.to_thread(server.stop)
    try:
        assert await store.get("probe") is None
        await wait_until(lambda: store.degraded, 2.0, "the switch to the file store")
        await store.delete("purged")
        await store.set("rewritten", b"new, in a file", 0)
    finally:
        await asyncio.to_thread(server.start)
    await wait_until(lambda: not store.degraded, 2 * PROBE + 2 * TIMEOUT + 1, "the switch back")
    assert [raw.exists(store.full_key(key)) for key in ("purged", "rewritten", "untouched")] == [
        False,
        False,
        True,
    ]
    assert await store.get_many(["purged", "rewritten", "untouched"]) == [None, None, b"old"]


# -- the replay's bulk delete -------------------------------------------------------------------------


async def test_delete_many_removes_exactly_the_given_keys(fresh_url: str, opened: Any) -> None:
    build = builder(fresh_url)
    namespace = unique_namespace()
    store: DatabaseStore = await opened(build(namespace, "kv"))
    others: list[DatabaseStore] = [
        await opened(build(unique_namespace(), "kv")),
        await opened(build(namespace, "resp")),
    ]
    long_key, kept_long_key = (f"GET:https://shop.example/?q={os.urandom(3000).hex()}" for _ in "ab")

    def look_alike(key: str) -> str:
        """A key that reads like the row of ``key``, which is stored under its digest."""
        return "#sha256:" + hashlib.sha256(key.encode()).hexdigest()

    awkward = [long_key, look_alike(kept_long_key), "#sha256:short", "nul\x00byte", "lone\ud800surrogate"]
    kept = [kept_long_key, look_alike(long_key), "key-kept"]
    plain = [f"key-{i}" for i in range(1200)]  # more than one bulk statement of the replay holds
    raw = RawTable(fresh_url)
    for owner in (store, *others):
        raw.execute(
            f"INSERT INTO {TABLE} (cache_key, ns, value, expires_at) VALUES (?, ?, ?, NULL)",
            [(owner.row_key(key), owner.ns, b"v") for key in plain],
        )
        for key in awkward:
            assert await owner.set(key, b"v", 0) is True
    for key in kept:
        assert await store.set(key, b"kept", 0) is True

    await store._delete_many([*plain, *awkward, awkward[0], "never written"])  # a duplicate, a miss

    assert await store.get_many([*plain, *awkward]) == [None] * (len(plain) + len(awkward))
    assert await store.get_many(kept) == [b"kept"] * len(kept)
    for other in others:
        assert await other.size() == len(plain) + len(awkward)
        assert await other.get_many(awkward) == [b"v"] * len(awkward)
    assert raw.count() == 2 * (len(plain) + len(awkward)) + len(kept)
    assert store.counters.errors == 0
    # PostgreSQL in one statement; SQLite (in-process, no round trips) row by row.
    assert isinstance(store.engine, DeletesManyRows) is (not raw.is_sqlite)


# -- a crashed server -------------------------------------------------------------------------------


async def test_a_store_pings_again_soon_after_postgres_crashed_and_came_back(
    throwaway_postgres: pg.ThrowawayPostgres, opened: Any
) -> None:
    server = throwaway_postgres
    store: DatabaseStore = await opened(
        DatabaseStore.from_settings(settings(server.url(), cache_timeout=TIMEOUT), "kv")
    )
    await asyncio.gather(*(store.set(f"k{i}", b"v", 0) for i in range(8)))  # several pooled connections
    await asyncio.to_thread(server.kill)
    try:
        with pytest.raises(psycopg.Error):  # the replay must see that it failed
            await asyncio.wait_for(store._delete_many(["k0"]), 2 * TIMEOUT + 1)
        down_since = time.monotonic()
        # psycopg_pool retries a lost connection after 1, 2, 4 s...: without a reconnect_timeout,
        # the slots still retrying after 3.5 s would next try some 3 s after the restart.
        while time.monotonic() - down_since < 3.5:
            with pytest.raises(StoreUnavailable):
                await store.ping()
    finally:
        await asyncio.to_thread(server.start)
    began = time.monotonic()
    while not await answers(store):
        assert time.monotonic() - began < 2 * TIMEOUT, "no ping within twice the timeout"
    assert time.monotonic() - began < 2 * TIMEOUT
    assert await store.set("after", b"v", 0) is True
    assert await store.get("after") == b"v"


async def test_a_postgres_outage_logs_the_stores_warning_and_nothing_from_psycopg_pool(
    throwaway_postgres: pg.ThrowawayPostgres,
    tmp_path: Path,
    fallback: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = throwaway_postgres
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("psycopg.pool").level)
    setup_logging("info")  # the sidecar's logging, writing to this test's captured stderr
    try:
        store: FallbackStore = await fallback(fallback_settings(server.url(), tmp_path))
        await store.set("k", b"v", 0)
        await asyncio.to_thread(server.kill)
        try:
            assert await store.get("k") is None
            await wait_until(lambda: store.degraded, 2.0, "the switch to the file store")
            await asyncio.sleep(5 * PROBE)  # probes fail, the pool tries to reconnect
        finally:
            await asyncio.to_thread(server.start)
        await wait_until(lambda: not store.degraded, 2 * PROBE + 2 * TIMEOUT + 1, "the switch back")
    finally:
        root.handlers[:], level, pool_level = saved
        root.setLevel(level)
        logging.getLogger("psycopg.pool").setLevel(pool_level)
    lines = capsys.readouterr().err.splitlines()
    assert not [line for line in lines if "logger=psycopg.pool" in line], lines
    switched = [
        line for line in lines if "level=warning logger=tina4_sidecar.store" in line and "unavailable" in line
    ]
    assert len(switched) == 1, lines


# -- opening ------------------------------------------------------------------------------------------


async def test_stores_opening_one_new_sqlite_file_at_once_all_open(tmp_path: Path) -> None:
    """Switching a new file to WAL is refused at once, not after the busy timeout, while another
    connection is switching it: a race that one round of opens loses only now and then."""
    for round_ in range(50):
        url = f"sqlite:///{tmp_path}/round-{round_}.sqlite3"
        stores = [DatabaseStore.from_settings(settings(url), "kv") for _ in range(6)]
        try:
            await asyncio.gather(*(store.open() for store in stores))
        finally:
            await asyncio.gather(*(store.close() for store in stores))
