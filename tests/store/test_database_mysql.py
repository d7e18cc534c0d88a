"""The database store on a real MariaDB server (started for the session, its own datadir): the
shared contract, the sync twin over the same rows, a table dropped under a running store, and
the URL forms. Through PyMySQL (``store/backends/database_mysql.py`` says why)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pymysql  # type: ignore[import-untyped]
import pytest

from tests.servers import mariadb
from tests.servers.process import ServerProcess
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
from tests.store.test_database import builder, settings
from tina4_sidecar.store.backends.database import TABLE, DatabaseStore, engine_for
from tina4_sidecar.store.backends.database_mysql import MysqlEngine
from tina4_sidecar.store.contract import Store
from tina4_sidecar.store.sync.database import SyncDatabaseStore


@pytest.fixture(scope="module")
def mariadb_server() -> Iterator[ServerProcess]:
    with mariadb.serving() as server:
        yield server


@pytest.fixture
def url(mariadb_server: ServerProcess) -> str:
    return mariadb.server_url(mariadb_server)


def raw(url: str) -> pymysql.connections.Connection:  # type: ignore[type-arg]
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    return pymysql.connect(host="127.0.0.1", port=port, user="root", database="test", autocommit=True)


class TestMariadbContract(ContractSuite, AddSuite):
    backend_name = "database"

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
            with raw(url) as conn, conn.cursor() as cur:
                cur.execute(
                    f"INSERT INTO {TABLE} (cache_key, ns, value, expires_at) VALUES (%s, %s, %s, NULL) "
                    "ON DUPLICATE KEY UPDATE value = VALUES(value)",
                    (raw_key.encode(), raw_key.rpartition(":")[0].encode(), value),
                )

        return write

    @pytest.fixture
    def foreign_exists(self, url: str) -> ForeignExists:
        async def exists(raw_key: str) -> bool:
            with raw(url) as conn, conn.cursor() as cur:
                cur.execute(f"SELECT COUNT(*) FROM {TABLE} WHERE cache_key = %s", (raw_key.encode(),))
                row = cur.fetchone()
                return bool(row and row[0])

        return exists

    async def test_stats_name_the_engine_without_a_password(self, store: Store) -> None:
        extra = (await store.stats()).as_dict()
        assert extra["engine"] == "mysql"
        assert extra["target"].startswith("mysql://127.0.0.1:")


async def test_keys_differing_only_in_case_are_two_entries(url: str) -> None:
    """VARBINARY keys: MariaDB's default collation would make ``Key`` and ``key`` one row."""
    store = builder(url)(unique_namespace(), "kv")
    await store.open()
    try:
        assert await store.set("Key", b"upper", 60)
        assert await store.set("key", b"lower", 60)
        assert (await store.get("Key"), await store.get("key")) == (b"upper", b"lower")
        await store.clear()
    finally:
        await store.close()


async def test_the_sync_twin_reads_the_async_stores_rows_and_a_dropped_table_comes_back(url: str) -> None:
    namespace = unique_namespace()
    store = builder(url)(namespace, "kv")
    assert isinstance(store, DatabaseStore)
    await store.open()
    twin = SyncDatabaseStore(builder(url)(namespace, "kv"))  # type: ignore[arg-type]
    twin.open()
    try:
        assert await store.set("shared", b"async wrote", 60)
        assert twin.get("shared") == b"async wrote"
        assert twin.add("lock", b"one", 60) is True
        assert twin.add("lock", b"two", 60) is False
        assert await store.get("lock") == b"one"
        with raw(url) as conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE {TABLE}")
        assert twin.set("after", b"recreated", 60) is True  # the missing table is created again
        assert await store.get("after") == b"recreated"
        assert twin.size() == 1
    finally:
        twin.close()
        await store.clear()
        await store.close()


@pytest.mark.parametrize("scheme", ["mysql", "mariadb", "mysql+pymysql"])
def test_mysql_urls_pick_the_mysql_engine(scheme: str) -> None:
    engine = engine_for(settings(f"{scheme}://user:secret@db.example:3307/app"))
    assert isinstance(engine, MysqlEngine)
    assert engine.target == "mysql://db.example:3307/app"  # never the password
