"""The persistent query cache on real shared stores, for SQLite and PostgreSQL data.

Stores: memory (in-process), Redis (a redis-server of the test session) and the ``database``
store on PostgreSQL (a fresh schema). The data lives in SQLite or in PostgreSQL (another fresh
schema). A second app instance is another process with its own ``Database`` on the same store,
except for the memory store, which no other process can see (there: a second instance in this
process). Reads served from a cache are told from reads that reached the database by changing
rows behind the library's back.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from tests.client.conftest import clean_env, unique_namespace
from tests.servers.postgres import SharedPostgres
from tests.servers.process import ServerProcess
from tests.servers.redis import server_url
from tina4_sidecar.client import Database, runtime
from tina4_sidecar.client.request_scope import current, request_scope

PRODUCT = "SELECT id, name FROM products WHERE id = ?"
PRODUCTS = (
    "SELECT p.id, p.name, p.price, c.name AS category FROM products p "
    "JOIN categories c ON c.id = p.category_id ORDER BY p.id"
)
CATEGORIES = "SELECT id, name FROM categories ORDER BY id"

SQLITE_SCHEMA = """
CREATE TABLE categories (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL NOT NULL,
    category_id INTEGER NOT NULL REFERENCES categories(id));
"""
POSTGRES_SCHEMA = """
CREATE TABLE categories (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price NUMERIC(10, 2) NOT NULL,
    category_id INTEGER NOT NULL REFERENCES categories(id));
CREATE TABLE kinds (id INTEGER PRIMARY KEY, at TIMESTAMPTZ, day DATE, span INTERVAL, blob BYTEA,
    doc JSONB, amounts NUMERIC[], ref UUID, clock TIME);
INSERT INTO kinds VALUES (1, '2026-03-22 14:30:00.123456+02', '2026-03-22', '1 day 02:03:04.5',
    '\\x00ff10', '{"$t4": "not a tag", "n": [1, 2.5, null]}', '{1.10, 2.20}',
    '12345678-1234-5678-1234-567812345678', '23:59:58.000001');
"""
SEED = [
    "INSERT INTO categories VALUES (1, 'Electronics'), (2, 'Fitness'), (3, 'Kitchen')",
    "INSERT INTO products VALUES (1, 'Keyboard', 79.99, 1), (2, 'Yoga Mat', 29.99, 2),"
    " (3, 'Grinder', 49.99, 3), (4, 'Kettle', 19.50, 3)",
]

WRITER = """
import sys
from tina4_sidecar.client import Database
db = Database(sys.argv[1], **({"options": sys.argv[3]} if sys.argv[3] else {}))
db.execute(sys.argv[2])
print(db.cache_stats()["backend"])
"""


def options_of(url: str) -> str:
    """libpq ``options`` of a test URL: Tina4 3.13 ignores URL parameters, so they go as a keyword."""
    return parse_qs(urlsplit(url).query).get("options", [""])[0]


def tina4_db(url: str) -> Database:
    options = options_of(url)
    return Database(url, options=options) if options else Database(url)


@dataclass
class Data:
    """The app's database, and a way to change it behind the cache's back."""

    engine: str
    url: str
    raw_url: str  # sqlite: the file; postgres: a psycopg URL on the same schema

    def open(self) -> Database:
        return tina4_db(self.url)

    def behind_the_back(self, sql: str) -> None:
        if self.engine == "sqlite":
            with sqlite3.connect(self.raw_url) as conn:
                conn.execute(sql)
        else:
            with psycopg.connect(self.raw_url, autocommit=True) as conn:
                conn.execute(sql)


@dataclass
class Store:
    name: str
    shared: bool  # other processes see it


@pytest.fixture(params=["sqlite", "postgres"])
def data(request: pytest.FixtureRequest, tmp_path: Path) -> Data:
    if request.param == "sqlite":
        path = tmp_path / "app.db"
        with sqlite3.connect(path) as conn:
            conn.executescript(SQLITE_SCHEMA)
            for sql in SEED:
                conn.execute(sql)
        return Data("sqlite", "sqlite:///" + str(path), str(path))
    shared: SharedPostgres = request.getfixturevalue("shared_postgres")
    url = shared.fresh_schema_url()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(POSTGRES_SCHEMA)
        for sql in SEED:
            conn.execute(sql)
    return Data("postgres", url, url)


@pytest.fixture(params=["memory", "redis", "database"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """The query cache on this store (``TINA4_DB_CACHE_BACKEND``/``URL``), request layer off."""
    env = {
        "TINA4_DB_CACHE": "true",
        "TINA4_AUTO_CACHING": "false",
        "TINA4_DB_CACHE_BACKEND": request.param,
        "TINA4_CACHE_NAMESPACE": unique_namespace(),
        "TINA4_CACHE_DIR": str(tmp_path / "cache"),
    }
    if request.param == "redis":
        redis: ServerProcess = request.getfixturevalue("client_redis")
        env["TINA4_DB_CACHE_URL"] = server_url(redis)
    elif request.param == "database":
        shared: SharedPostgres = request.getfixturevalue("shared_postgres")
        env["TINA4_DB_CACHE_URL"] = shared.fresh_schema_url()
    clean_env(monkeypatch, tmp_path / "work", env)
    runtime.reset()
    current().flush()
    try:
        yield Store(request.param, request.param != "memory")
    finally:
        runtime.reset()


def write_elsewhere(store: Store, data: Data, sql: str) -> None:
    """``sql`` through another app instance: another process when the store is shared."""
    if not store.shared:
        data.open().execute(sql)
        return
    done = subprocess.run(
        [sys.executable, "-c", WRITER, data.url, sql, options_of(data.url)],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == store.name  # it used the shared store, not a fallback


def test_results_are_shared_across_requests_and_a_write_elsewhere_invalidates_only_its_table(
    store: Store, data: Data
) -> None:
    reader = data.open()
    with request_scope():
        products, categories = reader.fetch_all(PRODUCTS), reader.fetch_all(CATEGORIES)
    data.behind_the_back("UPDATE products SET name = 'Sneaky' WHERE id = 1")
    data.behind_the_back("UPDATE categories SET name = 'Sneaky' WHERE id = 2")
    for _ in range(2):  # later requests: served from the store
        with request_scope():
            assert reader.fetch_all(PRODUCTS) == products
            assert reader.fetch_all(CATEGORIES) == categories
    assert data.open().fetch_all(CATEGORIES) == categories  # another instance shares them

    write_elsewhere(store, data, "UPDATE products SET price = price + 1 WHERE id = 4")

    with request_scope():
        fresh = reader.fetch_all(PRODUCTS)
        assert [p["name"] for p in fresh] == ["Sneaky", "Yoga Mat", "Grinder", "Kettle"]
        assert fresh[3]["price"] == products[3]["price"] + 1
        assert reader.fetch_all(CATEGORIES) == categories  # untouched table: still cached
    stats = reader.cache_stats()
    assert stats == {
        "enabled": True,
        "mode": "persistent",
        "hits": 5,
        "misses": 3,
        "size": 2,
        "ttl": 30,
        "backend": store.name,
    }
    reader.cache_clear()
    assert reader.cache_stats()["size"] == 0
    assert reader.fetch_all(CATEGORIES)[1]["name"] == "Sneaky"


def test_a_write_committed_after_the_query_ran_is_not_served_afterwards(store: Store, data: Data) -> None:
    """Reader: tokens, query (old rows) | writer commits and bumps | reader stores its entry."""
    reader, writer = data.open(), data.open()
    layer = reader._persistent
    real_save = layer.save

    def save_after_a_commit(key: str, snap: Any, tokens: Any, scopes: Any) -> bool:
        writer.execute("UPDATE products SET name = 'Committed' WHERE id = 1")
        return real_save(key, snap, tokens, scopes)

    layer.save = save_after_a_commit  # type: ignore[method-assign]
    assert reader.fetch_one(PRODUCT, [1])["name"] == "Keyboard"  # the in-flight read's old row
    layer.save = real_save  # type: ignore[method-assign]
    assert reader.fetch_one(PRODUCT, [1])["name"] == "Committed"  # its entry was never served
    assert reader.fetch_one(PRODUCT, [1])["name"] == "Committed"
    assert (reader.cache_stats()["hits"], reader.cache_stats()["misses"]) == (1, 2)


def test_a_result_whose_tokens_moved_while_it_was_read_is_never_served(store: Store, data: Data) -> None:
    """Reader: tokens | writer commits and bumps | query (new rows) -> stored, but as a stale entry."""
    reader, writer = data.open(), data.open()
    layer = reader._persistent
    real_lookup = layer.lookup

    def lookup_then_a_commit(key: str | None, scopes: Any) -> Any:
        found = real_lookup(key, scopes)
        if key is not None:
            writer.execute("UPDATE products SET name = 'Committed' WHERE id = 1")
        return found

    layer.lookup = lookup_then_a_commit  # type: ignore[method-assign]
    assert reader.fetch_one(PRODUCT, [1])["name"] == "Committed"
    layer.lookup = real_lookup  # type: ignore[method-assign]
    data.behind_the_back("UPDATE products SET name = 'Later' WHERE id = 1")
    assert reader.fetch_one(PRODUCT, [1])["name"] == "Later"  # a miss: its tokens had moved


def test_a_write_committed_while_a_postgres_query_runs_is_not_served_afterwards(
    store: Store, shared_postgres: SharedPostgres
) -> None:
    """Real concurrency: the reader's statement runs on one connection (its MVCC snapshot taken)
    while the writer commits on another; the reader's old rows must not outlive the write."""
    url = shared_postgres.fresh_schema_url()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(POSTGRES_SCHEMA)
        for sql in SEED:
            conn.execute(sql)
    slow = (
        "SELECT p.id, p.name, (SELECT count(*) FROM generate_series(1, 4000000)) AS n "
        "FROM products p WHERE p.id = ?"
    )
    reader, writer = tina4_db(url), tina4_db(url)
    seen: list[Any] = []
    thread = threading.Thread(target=lambda: seen.append(reader.fetch_one(slow, [1])))
    thread.start()
    with psycopg.connect(url, autocommit=True) as watcher:
        deadline = time.monotonic() + 10
        while not watcher.execute(
            "SELECT 1 FROM pg_stat_activity WHERE state = 'active' "
            "AND query LIKE '%generate_series(1, 4000000)%' AND pid <> pg_backend_pid()"
        ).fetchone():
            assert time.monotonic() < deadline, "the reader's query never started"
            time.sleep(0.005)
    writer.execute("UPDATE products SET name = 'Committed' WHERE id = 1")
    thread.join(30)
    assert seen
    assert seen[0]["name"] == "Keyboard"
    assert reader.fetch_one(slow, [1])["name"] == "Committed"


def test_postgres_types_come_back_from_the_store_unchanged(
    store: Store, shared_postgres: SharedPostgres
) -> None:
    url = shared_postgres.fresh_schema_url()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(POSTGRES_SCHEMA)
    reader = tina4_db(url)
    fresh = reader.fetch("SELECT * FROM kinds")
    hit = tina4_db(url).fetch("SELECT * FROM kinds")
    assert reader.cache_stats()["misses"] == 1
    assert hit.adapter is not fresh.adapter  # each instance's results point at its own connections
    assert {**vars(hit), "adapter": None} == {**vars(fresh), "adapter": None}
    row = hit.records[0]
    assert row["at"] == dt.datetime(2026, 3, 22, 12, 30, 0, 123456, tzinfo=dt.UTC)
    assert row["amounts"] == [Decimal("1.10"), Decimal("2.20")]
    assert row["blob"] == b"\x00\xff\x10"
    assert row["doc"] == {"$t4": "not a tag", "n": [1, 2.5, None]}
    for name, value in fresh.records[0].items():
        assert type(row[name]) is type(value), name
