"""The database store on real PostgreSQL and real SQLite: the shared contract, the chapter's table
name and Tina4's own layout refused under it, sweeping, outages and restarts, connection errors,
and which URL is used. MariaDB: ``test_database_mysql.py``."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.servers import postgres as pg
from tests.servers.process import free_port
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
from tina4_sidecar.config import Backend, CacheSettings, ConfigError
from tina4_sidecar.store.backends.database import TABLE, DatabaseStore, database_url, engine_for
from tina4_sidecar.store.backends.database_postgres import PostgresEngine
from tina4_sidecar.store.backends.database_sqlite import SqliteEngine, sqlite_path
from tina4_sidecar.store.contract import Store, StoreUnavailable
from tina4_sidecar.store.factory import open_store

shared_postgres = pg.shared_postgres
postgres_url = pg.postgres_url
throwaway_postgres = pg.throwaway_postgres

TINA4_TABLE_DDL = (
    "CREATE TABLE IF NOT EXISTS tina4_cache "
    "(cache_key VARCHAR(255) PRIMARY KEY, value TEXT, expires_at DOUBLE PRECISION)"
)
"""Tina4's own cache table, exactly as tina4_python.cache creates it in the app database."""


def settings(url: str | None = None, **values: Any) -> CacheSettings:
    values.setdefault("database_url", None)
    return CacheSettings(cache_backend=Backend.DATABASE, cache_url=url, _env_file=None, **values)  # type: ignore[call-arg]


def builder(url: str, **values: Any) -> Callable[[str, str], Store]:
    def build(namespace: str, layer: str) -> Store:
        return DatabaseStore.from_settings(settings(url, cache_namespace=namespace, **values), layer)

    return build


class RawTable:
    """The store's table through the engine's own driver, bypassing DatabaseStore (``?`` placeholders)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")

    def execute(self, statement: str, rows: Iterable[Sequence[Any]] = ((),)) -> None:
        if self.is_sqlite:
            with sqlite3.connect(sqlite_path(self.url), isolation_level=None) as lite:
                lite.executemany(statement, rows)
            return
        with psycopg.connect(self.url, autocommit=True) as conn, conn.cursor() as cursor:
            cursor.executemany(statement.replace("?", "%s"), rows)

    def scalar(self, statement: str, *params: Any) -> Any:
        if self.is_sqlite:
            with sqlite3.connect(sqlite_path(self.url)) as lite:
                row = lite.execute(statement, params).fetchone()
        else:
            with psycopg.connect(self.url, autocommit=True) as conn:
                row = conn.execute(statement.replace("?", "%s"), params).fetchone()
        return None if row is None else row[0]

    def write(self, raw_key: str, value: bytes, expires_at: float | None = None) -> None:
        """A row as another application's store would write it (``ns`` = the key up to its last colon)."""
        self.execute(
            f"INSERT INTO {TABLE} (cache_key, ns, value, expires_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (cache_key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
            [(raw_key, raw_key.rpartition(":")[0], value, expires_at)],
        )

    def exists(self, raw_key: str) -> bool:
        return int(self.scalar(f"SELECT count(*) FROM {TABLE} WHERE cache_key = ?", raw_key)) == 1

    def count(self) -> int:
        return int(self.scalar(f"SELECT count(*) FROM {TABLE}"))


class DatabaseContract(ContractSuite, AddSuite):
    """The contract on one engine; subclasses give ``url``."""

    backend_name = "database"

    @pytest.fixture
    def url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    async def make_store(self, url: str) -> AsyncIterator[StoreMaker]:
        async with store_factory(builder(url)) as make:
            yield make

    @pytest.fixture
    def store_spec(self, url: str) -> StoreSpec:
        return StoreSpec("database", url=url)

    @pytest.fixture
    def foreign_write(self, url: str) -> ForeignWrite:
        async def write(raw_key: str, value: bytes) -> None:
            RawTable(url).write(raw_key, value)

        return write

    @pytest.fixture
    def foreign_exists(self, url: str) -> ForeignExists:
        async def exists(raw_key: str) -> bool:
            return RawTable(url).exists(raw_key)

        return exists

    async def test_stats_name_the_engine_without_a_password(self, store: Store) -> None:
        extra = (await store.stats()).as_dict()
        assert extra["engine"] in ("postgresql", "sqlite")
        assert extra["target"].startswith(("postgresql://", "sqlite:///"))


class TestPostgresContract(DatabaseContract):
    @pytest.fixture
    def url(self, postgres_url: str) -> str:
        return postgres_url


class TestSqliteContract(DatabaseContract):
    @pytest.fixture
    def url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path}/cache.sqlite3"


@pytest.fixture(params=["postgresql", "sqlite"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database whose store table does not exist yet: a new schema, or a new SQLite file."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/fresh/cache.sqlite3"
    shared: pg.SharedPostgres = request.getfixturevalue("shared_postgres")
    return shared.fresh_schema_url()


async def test_the_table_is_the_chapters_tina4_cache_and_tina4s_own_layout_is_refused_loudly(
    fresh_url: str, opened: Any
) -> None:
    """The chapter: "a tina4_cache table". A ``tina4_cache`` of Tina4's own layout (its in-app cache
    ran before ``install()``) is refused at open with a message naming the table, so the fallback
    warns once, instead of every call failing on a missing column."""
    assert TABLE == "tina4_cache"
    if fresh_url.startswith("sqlite"):
        Path(sqlite_path(fresh_url)).parent.mkdir(parents=True, exist_ok=True)
    RawTable(fresh_url).execute(TINA4_TABLE_DDL)
    store = builder(fresh_url)(unique_namespace(), "kv")
    with pytest.raises(StoreUnavailable, match="tina4_cache"):
        await store.open()
    await store.close()


@pytest.fixture
async def opened() -> AsyncIterator[Callable[[Store], Any]]:
    """``await opened(store)`` opens a store and closes it after the test."""
    stores: list[Store] = []

    async def open_and_remember(store: Store) -> Store:
        await store.open()
        stores.append(store)
        return store

    yield open_and_remember
    for store in stores:
        await store.close()


# -- sharing and opening ----------------------------------------------------------------------------


async def test_two_stores_with_their_own_pools_share_entries(postgres_url: str, opened: Any) -> None:
    build = builder(postgres_url)
    namespace = unique_namespace()
    first, second = build(namespace, "kv"), build(namespace, "kv")
    await opened(first)
    await opened(second)
    assert isinstance(first, DatabaseStore)
    assert isinstance(second, DatabaseStore)
    assert isinstance(first.engine, PostgresEngine)
    assert isinstance(second.engine, PostgresEngine)
    assert first.engine._pool is not second.engine._pool
    await first.set("shared", b"from the first", 0)
    assert await second.get("shared") == b"from the first"
    await second.clear()
    assert await first.get("shared") is None


async def test_concurrent_open_on_a_fresh_database(fresh_url: str, opened: Any) -> None:
    build = builder(fresh_url)
    namespace = unique_namespace()
    stores = [build(namespace, layer) for layer in ("kv", "resp", "query", "meta", "kv", "resp")]
    await asyncio.gather(*(opened(store) for store in stores))
    await stores[0].set("k", b"v", 0)
    assert await stores[4].get("k") == b"v"
    assert RawTable(fresh_url).count() == 1


async def test_keys_a_text_column_cannot_hold_are_stored_under_a_digest(fresh_url: str, opened: Any) -> None:
    store: Store = await opened(builder(fresh_url)(unique_namespace(), "resp"))
    long_key = "GET:https://shop.example/search?q=" + os.urandom(3000).hex()  # incompressible
    digest_look_alike = "#sha256:" + hashlib.sha256(long_key.encode()).hexdigest()
    keys = [long_key, long_key + "&page=2", digest_look_alike, "nul\x00byte", "lone\ud800surrogate"]
    for index, key in enumerate(keys):
        assert await store.set(key, str(index).encode(), 60) is True
    assert await store.get_many(keys) == [b"0", b"1", b"2", b"3", b"4"]
    assert await store.delete(long_key) is True
    assert await store.get_many(keys) == [None, b"1", b"2", b"3", b"4"]
    assert store.counters.errors == 0
    if not RawTable(fresh_url).is_sqlite:  # why: PostgreSQL's btree index cannot hold such a key
        with pytest.raises(psycopg.errors.ProgramLimitExceeded):
            RawTable(fresh_url).write(store.full_key(long_key), b"raw")


async def test_add_with_keys_stored_under_a_digest(fresh_url: str, opened: Any) -> None:
    store: Store = await opened(builder(fresh_url)(unique_namespace(), "resp"))
    long_key = "GET:https://shop.example/search?q=" + os.urandom(3000).hex()
    keys = [
        long_key,
        long_key + "&page=2",
        "#sha256:" + hashlib.sha256(long_key.encode()).hexdigest(),
        "nul\x00",
    ]
    for index, key in enumerate(keys):
        assert await store.add(key, str(index).encode(), 60) is True
    for key in keys:
        assert await store.add(key, b"again", 60) is False
    assert await store.get_many(keys) == [b"0", b"1", b"2", b"3"]
    assert store.counters.errors == 0


async def test_add_overwrites_a_row_only_while_it_is_expired(fresh_url: str, opened: Any) -> None:
    store: Store = await opened(builder(fresh_url)(unique_namespace(), "kv"))
    assert isinstance(store, DatabaseStore)
    raw = RawTable(fresh_url)
    now = time.time()
    raw.write(store.full_key("expired"), b"old", expires_at=now - 1)  # not swept yet
    raw.write(store.full_key("live"), b"live", expires_at=now + 600)
    raw.write(store.full_key("forever"), b"forever", expires_at=None)

    assert await store.add("expired", b"new", 30) is True
    assert await store.add("live", b"clobbered", 30) is False
    assert await store.add("forever", b"clobbered", 30) is False

    def row(key: str) -> tuple[bytes, float | None]:
        value = raw.scalar(f"SELECT value FROM {TABLE} WHERE cache_key = ?", store.full_key(key))
        expires = raw.scalar(f"SELECT expires_at FROM {TABLE} WHERE cache_key = ?", store.full_key(key))
        return bytes(value), expires

    new_value, new_expiry = row("expired")
    assert new_value == b"new"
    assert new_expiry is not None
    assert abs(new_expiry - (now + 30)) < 5
    assert row("live") == (b"live", now + 600)  # neither value nor expiry touched
    assert row("forever") == (b"forever", None)
    assert raw.scalar(f"SELECT ns FROM {TABLE} WHERE cache_key = ?", store.full_key("expired")) == store.ns
    assert store.counters.errors == 0


# -- sweeping ---------------------------------------------------------------------------------------


async def test_sweep_removes_expired_rows_of_every_namespace_in_batches(fresh_url: str, opened: Any) -> None:
    build = builder(fresh_url)
    mine: Store = await opened(build(unique_namespace(), "kv"))
    other: Store = await opened(build(unique_namespace(), "resp"))
    assert isinstance(mine, DatabaseStore)
    await mine.set("expiring", b"x", 60)
    await mine.set("forever", b"f", 0)
    await other.set("expiring", b"x", 60)
    now = time.time()
    RawTable(fresh_url).execute(
        f"INSERT INTO {TABLE} (cache_key, ns, value, expires_at) VALUES (?, ?, ?, ?)",
        [(f"tina4:gone-app:kv:{i}", "tina4:gone-app:kv", b"old", now - 10) for i in range(2500)],
    )
    assert await mine.sweep() == 2500  # only the already expired rows
    assert await mine.sweep(now=time.time() + 120) == 2
    assert await mine.get("forever") == b"f"
    assert RawTable(fresh_url).count() == 1
    assert mine.counters.errors == 0


async def test_background_sweeper_runs_until_close(fresh_url: str, opened: Any) -> None:
    store = DatabaseStore(engine_for(settings(fresh_url)), unique_namespace(), "kv", sweep_interval=0.05)
    await opened(store)
    raw = RawTable(fresh_url)
    raw.write("tina4:gone-app:kv:old", b"old", expires_at=time.time() - 1)
    for _ in range(100):
        if not raw.exists("tina4:gone-app:kv:old"):
            break
        await asyncio.sleep(0.05)
    assert not raw.exists("tina4:gone-app:kv:old")
    await store.close()
    assert store._sweeper is None


# -- failures ---------------------------------------------------------------------------------------


async def test_postgres_stopped_and_restarted_mid_test(
    throwaway_postgres: pg.ThrowawayPostgres, opened: Any
) -> None:
    server = throwaway_postgres
    store: Store = await opened(DatabaseStore.from_settings(settings(server.url(), cache_timeout=0.3), "kv"))
    assert await store.set("before", b"kept", 0) is True

    await asyncio.to_thread(server.stop)
    try:
        assert await store.get("before") is None
        assert await store.get_many(["before", "x"]) == [None, None]
        assert await store.set("during", b"lost", 0) is False
        assert await store.add("during", b"lost", 0) is False
        assert await store.delete("before") is False
        assert await store.clear() is False
        assert await store.size() == 0
        assert store.counters.errors >= 7
        assert store.counters.last_error is not None
        with pytest.raises(StoreUnavailable):
            await store.ping()
    finally:
        await asyncio.to_thread(server.start)

    began = time.monotonic()
    while not await store.set("after", b"back", 0):
        assert time.monotonic() - began < 15, f"no reconnect: {store.counters.last_error}"
        await asyncio.sleep(0.1)
    assert await store.get("before") == b"kept"
    assert await store.get("after") == b"back"
    errors = store.counters.errors
    assert await store.add("lock", b"after the restart", 0) is True
    assert await store.size() == 3
    assert store.counters.errors == errors


async def test_wrong_password_is_a_clear_store_unavailable(throwaway_postgres: pg.ThrowawayPostgres) -> None:
    store = DatabaseStore.from_settings(settings(throwaway_postgres.url(password="wrong-guess")), "kv")
    with pytest.raises(StoreUnavailable, match="password authentication failed") as raised:
        await store.open()
    assert "wrong-guess" not in str(raised.value)
    assert f"postgresql://postgres@127.0.0.1:{throwaway_postgres.port}/postgres" in str(raised.value)


async def test_password_from_settings_when_the_url_has_none(
    throwaway_postgres: pg.ThrowawayPostgres, opened: Any
) -> None:
    url = f"postgres://127.0.0.1:{throwaway_postgres.port}/postgres"
    configured = settings(url, cache_username="postgres", cache_password=throwaway_postgres.password)
    store: Store = await opened(DatabaseStore.from_settings(configured, "kv"))
    assert await store.set("k", b"v", 0) is True


async def test_unknown_database_is_a_clear_store_unavailable(shared_postgres: pg.SharedPostgres) -> None:
    url = shared_postgres.url.rsplit("/", 1)[0] + "/t4s_no_such_database"
    with pytest.raises(StoreUnavailable, match='database "t4s_no_such_database" does not exist'):
        await DatabaseStore.from_settings(settings(url), "kv").open()


async def test_nothing_listening_is_a_clear_store_unavailable() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    began = time.monotonic()
    with pytest.raises(StoreUnavailable, match=r"cannot connect to postgresql://postgres@127\.0\.0\.1:"):
        await DatabaseStore.from_settings(settings(url), "kv").open()
    assert time.monotonic() - began < 5


async def test_open_store_falls_back_to_the_file_store_when_postgres_is_down(tmp_path: Path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    store = await open_store(settings(url, cache_dir=tmp_path), "kv")
    try:
        assert await store.set("k", b"v", 60) is True
        assert await store.get("k") == b"v"
    finally:
        await store.close()


async def test_a_locked_row_costs_one_timeout_not_a_hang(postgres_url: str, opened: Any) -> None:
    store: Store = await opened(builder(postgres_url, cache_timeout=0.3)(unique_namespace(), "kv"))
    await store.set("hot", b"v", 0)
    with psycopg.connect(postgres_url) as locker:
        locker.execute(f"SELECT 1 FROM {TABLE} WHERE cache_key = %s FOR UPDATE", (store.full_key("hot"),))
        began = time.monotonic()
        assert await store.set("hot", b"new", 0) is False
        assert time.monotonic() - began < 0.8
        assert await store.get("hot") == b"v"  # readers do not wait for row locks
    assert store.counters.errors == 1
    assert await store.set("hot", b"new", 0) is True


async def test_an_add_waits_for_a_locked_row_and_costs_one_timeout(postgres_url: str, opened: Any) -> None:
    # The wait is what makes add atomic: a conflicting row is locked before its expiry is checked.
    store: Store = await opened(builder(postgres_url, cache_timeout=0.3)(unique_namespace(), "kv"))
    RawTable(postgres_url).write(store.full_key("lock"), b"expired", expires_at=time.time() - 1)
    with psycopg.connect(postgres_url) as locker:
        locker.execute(f"SELECT 1 FROM {TABLE} WHERE cache_key = %s FOR UPDATE", (store.full_key("lock"),))
        began = time.monotonic()
        assert await store.add("lock", b"timed out", 30) is False
        assert time.monotonic() - began < 0.8
        # Held until the server's statement_timeout (the store's timeout) has cancelled the add:
        # released earlier, the add that its caller gave up on would still take the key.
        await asyncio.sleep(0.6)
    assert store.counters.errors == 1
    assert await store.add("lock", b"mine", 30) is True
    assert await store.get("lock") == b"mine"


async def test_a_clear_that_outlasts_its_caller_still_takes_effect(postgres_url: str, opened: Any) -> None:
    store: Store = await opened(builder(postgres_url, cache_timeout=0.3)(unique_namespace(), "kv"))
    await store.set("a", b"1", 0)
    await store.set("b", b"2", 0)
    with psycopg.connect(postgres_url) as locker:
        locker.execute(f"SELECT 1 FROM {TABLE} WHERE cache_key = %s FOR UPDATE", (store.full_key("a"),))
        assert await store.clear() is False  # the caller's bound: it waited on the locked row
    for _ in range(50):
        if await store.size() == 0:
            break
        await asyncio.sleep(0.05)
    assert await store.get_many(["a", "b"]) == [None, None]


async def test_sqlite_writer_lock_held_elsewhere_fails_writes_not_reads(tmp_path: Path, opened: Any) -> None:
    url = f"sqlite:///{tmp_path}/cache.sqlite3"
    store: Store = await opened(builder(url, cache_timeout=0.3)(unique_namespace(), "kv"))
    await store.set("k", b"v", 0)
    other = sqlite3.connect(tmp_path / "cache.sqlite3", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holding the write lock
        began = time.monotonic()
        assert await store.set("k", b"new", 0) is False
        assert time.monotonic() - began < 0.8
        assert await store.get("k") == b"v"  # WAL: readers go on
    finally:
        other.execute("ROLLBACK")
        other.close()
    await asyncio.sleep(0.4)  # the timed-out write finishes in its thread
    assert await store.set("k", b"new", 0) is True


# -- Tina4's own database cache next to ours --------------------------------------------------------


SHARE_WITH_OWN_TABLE = """
import asyncio, sys
from tina4_python.cache import _DatabaseBackend
from tina4_sidecar.store.backends.database import TABLE, DatabaseStore
from tina4_sidecar.config import Backend, CacheSettings

async def main(url: str) -> None:
    tina4 = _DatabaseBackend(url=url)
    settings = CacheSettings(cache_backend=Backend.DATABASE, cache_url=url, database_url=None, _env_file=None)
    store = DatabaseStore.from_settings(settings, "kv")
    await store.open()
    await store.set("page", b"from the sidecar", 60)
    assert await store.clear() is True
    assert tina4.get("page") == {"from": "tina4"}, tina4.get("page")
    await store.set("page", b"from the sidecar", 60)
    tina4.clear()  # Tina4 empties its whole table, which is not ours
    assert await store.get("page") == b"from the sidecar"
    await store.close()
    print("shared", TABLE)

asyncio.run(main(sys.argv[1]))
"""


async def test_tina4s_database_cache_and_the_store_share_a_sqlite_file(tmp_path: Path) -> None:
    """Tina4's in-app cache made its own ``tina4_cache`` in the app's file: the store refuses it at
    open with a message naming the table and the setting, and with ``TINA4_CACHE_TABLE`` set the two
    caches share the file without touching each other's entries."""
    from tina4_python.cache import _DatabaseBackend

    url = f"sqlite:///{tmp_path}/app.db"
    tina4 = _DatabaseBackend(url=url)
    assert tina4.is_available()
    tina4.set("page", {"from": "tina4"}, 60)

    store = builder(url)(unique_namespace(), "kv")
    with pytest.raises(StoreUnavailable, match=f"table {TABLE} .*set TINA4_CACHE_TABLE"):
        await store.open()
    await store.close()

    env = {**os.environ, "TINA4_CACHE_TABLE": "sidecar_cache"}
    done = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SHARE_WITH_OWN_TABLE,
        url,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(done.communicate(), 60)
    assert done.returncode == 0, err.decode()
    assert out.decode().split() == ["shared", "sidecar_cache"]
    tables = {
        row[0]
        for row in sqlite3.connect(f"{tmp_path}/app.db").execute(
            "SELECT name FROM sqlite_master WHERE type='table'"
        )
    }
    assert {"tina4_cache", "sidecar_cache"} <= tables


# -- which database ---------------------------------------------------------------------------------


def test_url_precedence_cache_url_then_database_url_then_sqlite(tmp_path: Path) -> None:
    pg_url = "postgresql://app@db.example:5432/app"
    both = settings(pg_url, database_url="sqlite:///app.db", cache_dir=tmp_path)
    assert database_url(both) == (pg_url, "TINA4_CACHE_URL")
    assert database_url(both, "sqlite:///query.db")[0] == "sqlite:///query.db"
    only_app = settings(None, database_url="postgres://db.example/app", cache_dir=tmp_path)
    assert database_url(only_app) == ("postgres://db.example/app", "TINA4_DATABASE_URL")
    engine = engine_for(only_app)
    assert isinstance(engine, PostgresEngine)
    assert engine.target == "postgresql://db.example/app"
    neither = engine_for(settings(None, cache_dir=tmp_path / "cache"))
    assert isinstance(neither, SqliteEngine)
    assert neither.path == f"{tmp_path}/cache/cache.sqlite3"


async def test_default_sqlite_file_is_created_under_the_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opened: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    store: Store = await opened(DatabaseStore.from_settings(settings(None), "kv"))
    assert await store.set("k", b"v", 0) is True
    assert (tmp_path / "data" / "cache" / "cache.sqlite3").is_file()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:pw@db.example:6543/app",
        "postgres://u:pw@db.example:6543/app",
        "pgsql://u:pw@db.example:6543/app",
        "postgresql+psycopg://u:pw@db.example:6543/app",
        "POSTGRESQL://u:pw@db.example:6543/app",
    ],
)
def test_postgres_url_forms(url: str) -> None:
    engine = engine_for(settings(url))
    assert isinstance(engine, PostgresEngine)
    params = conninfo_to_dict(engine.conninfo)
    assert params.items() >= {"host": "db.example", "port": "6543", "dbname": "app", "user": "u"}.items()
    assert engine.target == "postgresql://u@db.example:6543/app"


def test_credentials_from_settings_only_fill_what_the_url_lacks() -> None:
    lacking = engine_for(settings("postgresql://db.example/app", cache_username="al", cache_password="s3"))
    assert isinstance(lacking, PostgresEngine)
    assert conninfo_to_dict(lacking.conninfo).items() >= {"user": "al", "password": "s3"}.items()
    full = engine_for(settings("postgresql://bo:pw@db.example/app", cache_username="al", cache_password="s3"))
    assert isinstance(full, PostgresEngine)
    assert conninfo_to_dict(full.conninfo).items() >= {"user": "bo", "password": "pw"}.items()


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///data/cache.db", "data/cache.db"),
        ("sqlite:////var/cache/c.db", "/var/cache/c.db"),
        ("sqlite:/var/cache/c.db", "/var/cache/c.db"),
        ("sqlite3:///c.db", "c.db"),
        ("sqlite:c.db", "c.db"),
        ("sqlite::memory:", ":memory:"),
    ],
)
def test_sqlite_url_forms(url: str, path: str) -> None:
    engine = engine_for(settings(url))
    assert isinstance(engine, SqliteEngine)
    assert engine.path == path


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("oracle://scott:hunter2@db/app", "oracle://"),
        ("firebird://sys:hunter2@db:3050//var/app.fdb", "firebird://"),
        ("mongodb://u:hunter2@db/app", "mongodb://"),
        ("hunter2-not-a-url", "without a driver:// scheme"),
    ],
)
def test_other_engines_are_a_configuration_error(url: str, shown: str) -> None:
    with pytest.raises(ConfigError) as raised:
        DatabaseStore.from_settings(settings(url), "kv")
    assert isinstance(raised.value, ValueError)  # what open_store() documents for a bad URL
    message = str(raised.value)
    assert message.startswith("TINA4_CACHE_URL: ")
    assert shown in message
    assert "postgresql://" in message
    assert "sqlite:///" in message
    assert "hunter2" not in message


def test_unparsable_postgres_url_is_a_configuration_error_without_the_password() -> None:
    with pytest.raises(ConfigError, match="TINA4_CACHE_URL: libpq cannot parse") as raised:
        engine_for(settings("postgresql://app:hunter%zz2@db.example:5432/app"))
    assert "hunter" not in str(raised.value)


def test_empty_sqlite_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="TINA4_DATABASE_URL: the sqlite: URL names no file"):
        engine_for(settings(None, database_url="sqlite:///"))


@pytest.fixture(autouse=True)
def _no_cache_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings of these tests come from their arguments, not from the developer's shell."""
    for name in ("TINA4_CACHE_URL", "TINA4_DATABASE_URL", "TINA4_CACHE_USERNAME", "TINA4_CACHE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
