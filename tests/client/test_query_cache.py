"""The database query cache of ``tina4_sidecar.client.Database`` on a real SQLite database.

Whether a read was served from a cache is observed honestly: the test changes the rows behind the
library's back (a plain ``sqlite3`` connection, which no cache hears about). A cached read still
shows the old rows; a read that reached the database shows the new ones.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import datetime as dt
import sqlite3
import time
import uuid
import zoneinfo
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from tina4_python.database.adapter import DatabaseResult

from tests.client.conftest import clean_env, unique_namespace
from tina4_sidecar.client import Database, runtime
from tina4_sidecar.client.query.snapshot import (
    FETCH,
    ONE,
    Unencodable,
    decode_result,
    encode_result,
    snapshot,
)
from tina4_sidecar.client.request_scope import begin_request, current, request_scope

PRODUCT = "SELECT id, name FROM products WHERE id = ?"
PRODUCTS = "SELECT p.id, p.name, c.name AS category FROM products p JOIN categories c ON c.id = p.category_id"
CATEGORIES = "SELECT id, name FROM categories ORDER BY id"
STATS_FIELDS = ["enabled", "mode", "hits", "misses", "size", "ttl", "backend"]

SCHEMA = """
CREATE TABLE categories (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE products (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL NOT NULL, picture BLOB,
    category_id INTEGER NOT NULL REFERENCES categories(id) ON DELETE CASCADE
);
INSERT INTO categories VALUES (1, 'Electronics'), (2, 'Fitness'), (3, 'Kitchen');
INSERT INTO products VALUES
    (1, 'Keyboard', 79.99, x'00ff10', 1), (2, 'Yoga Mat', 29.99, NULL, 2),
    (3, 'Grinder', 49.99, NULL, 3), (4, 'Kettle', 19.5, NULL, 3);
"""


class Catalog:
    """A SQLite file with the chapter's two tables, and a connection behind the cache's back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with sqlite3.connect(path) as conn:
            conn.executescript(SCHEMA)
        self.url = "sqlite:///" + str(path)  # sqlite:////abs/path: Tina4's absolute form

    def behind_the_back(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        conn = sqlite3.connect(self.path, timeout=10)
        try:
            conn.execute(sql, params)
            conn.commit()
        finally:
            conn.close()


@pytest.fixture
def configure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """``configure(TINA4_DB_CACHE="true", ...)``: only these ``TINA4_*`` variables, a fresh namespace."""

    def apply(**env: str) -> None:
        base = {
            "TINA4_CACHE_NAMESPACE": unique_namespace(),
            "TINA4_CACHE_DIR": str(tmp_path / "cache"),
        }
        clean_env(monkeypatch, tmp_path / "work", {**base, **env})
        runtime.reset()
        current().flush()

    apply()
    try:
        yield apply
    finally:
        runtime.reset()


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(tmp_path / "catalog.db")


# -- the request-scoped layer ---------------------------------------------------------------------


def test_request_layer_is_on_by_default_and_dedupes_within_one_request(
    configure: Callable[..., None], catalog: Catalog
) -> None:
    db = Database(catalog.url)
    assert db.cache_stats() == {
        "enabled": True,
        "mode": "request",
        "hits": 0,
        "misses": 0,
        "size": 0,
        "ttl": 5,
        "backend": "memory",
    }
    with request_scope():
        first = db.fetch_one(PRODUCT, [1])
        catalog.behind_the_back("UPDATE products SET name = 'Renamed' WHERE id = 1")
        again = db.fetch_one(PRODUCT, [1])
        assert first == again == {"id": 1, "name": "Keyboard"}
        other = Database(catalog.url)  # a handler and a middleware, each with its own Database
        assert other.fetch_one(PRODUCT, [1]) == {"id": 1, "name": "Keyboard"}
        assert db.cache_stats()["size"] == 1
    with request_scope():  # the next request starts empty
        assert db.fetch_one(PRODUCT, [1]) == {"id": 1, "name": "Renamed"}
    assert (db.cache_stats()["hits"], db.cache_stats()["misses"]) == (1, 2)


def test_tina4s_request_start_gives_each_request_a_scope_of_its_own(
    configure: Callable[..., None], catalog: Catalog
) -> None:
    from tina4_python.database.connection import Database as Tina4Database

    Database(catalog.url)  # installs the hook, as install() does

    def request_start() -> Any:
        Tina4Database.reset_request_caches()  # what Tina4's dispatcher calls at each request start
        return current()

    first = contextvars.copy_context().run(request_start)
    second = contextvars.copy_context().run(request_start)
    assert first is not second
    assert first.in_request
    assert second.in_request
    assert not current().in_request  # the test itself runs outside any request


async def test_concurrent_requests_never_see_each_others_entries(
    configure: Callable[..., None], catalog: Catalog
) -> None:
    db = Database(catalog.url)  # ONE object shared by both requests (Tina4's cache breaks here)
    a_cached, b_done = asyncio.Event(), asyncio.Event()

    async def request_a() -> tuple[Any, Any]:
        begin_request()
        first = db.fetch_one(PRODUCT, [1])
        a_cached.set()
        await b_done.wait()
        return first, db.fetch_one(PRODUCT, [1])

    async def request_b() -> Any:
        begin_request()
        await a_cached.wait()
        catalog.behind_the_back("UPDATE products SET name = 'Renamed' WHERE id = 1")
        seen = db.fetch_one(PRODUCT, [1])  # A's entry is not B's: a miss
        db.execute("UPDATE products SET price = 1 WHERE id = 2")  # B's write flushes B, not A
        b_done.set()
        return seen

    (a_first, a_again), b_seen = await asyncio.gather(
        asyncio.create_task(request_a()), asyncio.create_task(request_b())
    )
    assert a_first == a_again == {"id": 1, "name": "Keyboard"}
    assert b_seen == {"id": 1, "name": "Renamed"}


def test_a_write_in_a_request_is_seen_by_the_next_read_in_it(
    configure: Callable[..., None], catalog: Catalog
) -> None:
    db = Database(catalog.url)
    with request_scope():
        assert db.fetch_one(PRODUCT, [1])["name"] == "Keyboard"
        db.update("products", {"name": "Updated"}, "id = ?", [1])
        assert db.fetch_one(PRODUCT, [1])["name"] == "Updated"
        db.execute("UPDATE products SET name = ? WHERE id = ?", ["Executed", 1])
        assert db.fetch_one(PRODUCT, [1])["name"] == "Executed"
        returned = db.fetch("UPDATE products SET name = 'Returning' WHERE id = 1 RETURNING name")
        assert returned.records == [{"name": "Returning"}]
        assert db.fetch_one(PRODUCT, [1])["name"] == "Returning"
        db.insert("products", {"id": 9, "name": "New", "price": 1, "category_id": 1})
        assert db.fetch_one(PRODUCT, [9]) == {"id": 9, "name": "New"}
        db.delete("products", {"id": 9})
        assert db.fetch_one(PRODUCT, [9]) is None


def test_outside_a_request_entries_live_the_safety_ttl(
    configure: Callable[..., None], catalog: Catalog
) -> None:
    configure(TINA4_AUTO_CACHING_TTL="1")
    db = Database(catalog.url)
    assert db.cache_stats()["ttl"] == 1
    assert db.fetch_one(PRODUCT, [1])["name"] == "Keyboard"
    catalog.behind_the_back("UPDATE products SET name = 'Renamed' WHERE id = 1")
    assert db.fetch_one(PRODUCT, [1])["name"] == "Keyboard"
    time.sleep(1.05)
    assert db.fetch_one(PRODUCT, [1])["name"] == "Renamed"


def test_auto_caching_off_caches_nothing(configure: Callable[..., None], catalog: Catalog) -> None:
    configure(TINA4_AUTO_CACHING="false")
    db = Database(catalog.url)
    with request_scope():
        db.fetch_one(PRODUCT, [1])
        catalog.behind_the_back("UPDATE products SET name = 'Renamed' WHERE id = 1")
        assert db.fetch_one(PRODUCT, [1])["name"] == "Renamed"
    assert db.cache_stats() == {
        "enabled": False,
        "mode": "off",
        "hits": 0,
        "misses": 0,
        "size": 0,
        "ttl": 5,
        "backend": "memory",
    }


# -- results: the same types, and no way to poison the cache --------------------------------------


@pytest.mark.parametrize("persistent", [False, True], ids=["request", "persistent"])
def test_a_hit_equals_a_fresh_result_and_cannot_be_poisoned(
    configure: Callable[..., None], catalog: Catalog, persistent: bool
) -> None:
    if persistent:
        configure(TINA4_DB_CACHE="true", TINA4_AUTO_CACHING="false")
    db = Database(catalog.url)
    sql = "SELECT * FROM products ORDER BY id"
    fresh = db.fetch(sql, limit=3)
    pristine = copy.deepcopy(fresh.records)
    fresh.records[0]["name"] = "poisoned by the first caller"
    hit = db.fetch(sql, limit=3)
    assert type(hit) is DatabaseResult
    assert hit.records == pristine
    assert (hit.count, hit.limit, hit.offset, hit.sql, hit.adapter) == (4, 3, 0, fresh.sql, fresh.adapter)
    assert type(hit.records[0]["picture"]) is bytes
    assert hit.records[0]["picture"] == b"\x00\xff\x10"
    hit.records.append({"id": 99})
    hit.records[1]["price"] = -1
    assert db.fetch(sql, limit=3).records == pristine
    assert db.fetch(sql, limit=3) == db.fetch(sql, limit=3)

    rows = db.fetch_all(sql)
    assert type(rows) is list
    assert len(rows) == 4
    rows.clear()
    assert len(db.fetch_all(sql)) == 4

    row = db.fetch_one(PRODUCT, [2])
    row["name"] = "poisoned"
    assert db.fetch_one(PRODUCT, [2]) == {"id": 2, "name": "Yoga Mat"}
    assert db.fetch_one(PRODUCT, [404]) is None
    assert db.fetch_one(PRODUCT, [404]) is None
    stats = db.cache_stats()
    assert (stats["hits"], stats["misses"]) == (7, 4)


def test_the_encoding_carries_every_type_a_driver_returns() -> None:
    rows = [
        {
            "decimal": Decimal("12345678901234567890.0100"),
            "aware": dt.datetime(2026, 3, 22, 14, 30, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "naive": dt.datetime(2026, 3, 22, 14, 30),
            "day": dt.date(2026, 3, 22),
            "clock": dt.time(23, 59, 58, 1),
            "span": dt.timedelta(days=-1, seconds=5, microseconds=7),
            "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
            "blob": b"\x00\x01\xff",
            "array": [Decimal("1.1"), None, [dt.date(2026, 1, 1)]],
            "json": {"$t4": "not a tag", "x": [1, {"y": b"nested"}]},
            "float": float("inf"),
            "big": 2**80,
            "text": "naïve ☃ \udcff",
        }
    ]
    fresh = DatabaseResult(records=rows, count=1, limit=10, offset=0, sql="SELECT", adapter=None).with_rows()
    back = decode_result(FETCH, encode_result(FETCH, fresh), None)
    assert back == fresh
    assert back._returns_rows
    for name, value in rows[0].items():
        assert type(back.records[0][name]) is type(value), name
    assert type(back.records[0]["array"][2][0]) is dt.date
    mixed = [  # a column of one type is tagged once, a mixed one per value
        {"price": Decimal("1.5"), "mixed": Decimal("2"), "at": None},
        {"price": None, "mixed": 3, "at": dt.datetime(2026, 1, 1)},
        {"price": Decimal("-0"), "mixed": None, "at": dt.datetime(2026, 1, 2)},
    ]
    fresh = DatabaseResult(records=mixed, count=3, sql="SELECT")
    back = decode_result(FETCH, encode_result(FETCH, fresh), None)
    assert back.records == mixed
    assert [type(r["mixed"]) for r in back.records] == [Decimal, int, type(None)]
    assert decode_result(ONE, encode_result(ONE, {"v": memoryview(b"ab")}), None)["v"] == memoryview(b"ab")
    assert decode_result(ONE, encode_result(ONE, None), None) is None


def test_a_snapshot_hands_out_independent_copies_of_mutable_values() -> None:
    rows = [{"doc": {"tags": ["a"]}, "raw": bytearray(b"x"), "view": memoryview(b"v"), "n": 1}]
    fresh = DatabaseResult(records=rows, count=1, sql="SELECT")
    snap = snapshot(FETCH, fresh)
    fresh.records[0]["doc"]["tags"].append("poisoned by the first caller")
    first = snap.result(None)
    first.records[0]["doc"]["tags"].append("poisoned by a hit")
    first.records[0]["raw"][0] = 0
    again = snap.result(None)
    assert again.records == [
        {"doc": {"tags": ["a"]}, "raw": bytearray(b"x"), "view": memoryview(b"v"), "n": 1}
    ]
    assert again.records[0]["view"] is not first.records[0]["view"]


@pytest.mark.parametrize(
    "value",
    [
        {1, 2},
        (1, 2),
        dt.datetime(2026, 1, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Berlin")),
        {1: "int key"},
        object(),
    ],
)
def test_a_value_the_encoding_cannot_carry_faithfully_is_not_cached(value: Any) -> None:
    with pytest.raises(Unencodable):
        encode_result(ONE, {"v": value})


# -- the persistent layer (the store's memory backend here; shared stores in test_query_cache_stores)


def test_no_cache_reads_and_writes_neither_layer(configure: Callable[..., None], catalog: Catalog) -> None:
    configure(TINA4_DB_CACHE="true")
    db = Database(catalog.url)
    with request_scope():
        assert db.fetch_one(PRODUCT, [1], no_cache=True)["name"] == "Keyboard"
        assert db.fetch(PRODUCTS, no_cache=True).count == 4
        assert db.fetch_all(PRODUCTS, no_cache=True)[0]["category"] == "Electronics"
        stats = db.cache_stats()
        assert (stats["hits"], stats["misses"], stats["size"]) == (0, 0, 0)
        assert db.fetch_one(PRODUCT, [1])["name"] == "Keyboard"  # a miss, now cached in both layers
        catalog.behind_the_back("UPDATE products SET name = 'Renamed' WHERE id = 1")
        assert db.fetch_one(PRODUCT, [1], no_cache=True)["name"] == "Renamed"
        assert db.fetch_one(PRODUCT, [1])["name"] == "Keyboard"
    with request_scope():
        assert db.fetch_one(PRODUCT, [1])["name"] == "Keyboard"  # from the persistent layer
        db.fetch("UPDATE products SET price = 2 WHERE id = 1 RETURNING id", no_cache=True)  # still a write
        assert db.fetch_one(PRODUCT, [1])["name"] == "Renamed"
    stats = db.cache_stats()
    assert (stats["hits"], stats["misses"]) == (2, 2)


def test_cache_stats_has_exactly_the_chapters_fields_and_cache_clear_empties_both_layers(
    configure: Callable[..., None], catalog: Catalog
) -> None:
    configure(TINA4_DB_CACHE="true", TINA4_DB_CACHE_TTL="45")
    db, other = Database(catalog.url), Database(catalog.url)
    with request_scope():
        db.fetch_all(PRODUCTS)
        db.fetch_all(PRODUCTS)
        db.fetch_all(CATEGORIES)
        stats = db.cache_stats()
        assert list(stats) == STATS_FIELDS
        assert stats == {
            "enabled": True,
            "mode": "persistent",
            "hits": 1,
            "misses": 2,
            "size": 2,
            "ttl": 45,
            "backend": "memory",
        }
        catalog.behind_the_back("UPDATE categories SET name = 'Gadgets' WHERE id = 1")
        db.cache_clear()
        assert db.cache_stats() == {**stats, "hits": 0, "misses": 0, "size": 0}
        assert db.fetch_all(CATEGORIES)[0]["name"] == "Gadgets"  # the request layer was emptied too
    assert other.fetch_all(PRODUCTS)[0]["category"] == "Gadgets"  # and the shared layer for all


def test_persistent_layer_invalidates_per_table(configure: Callable[..., None], catalog: Catalog) -> None:
    configure(TINA4_DB_CACHE="true", TINA4_AUTO_CACHING="false")
    reader, writer = Database(catalog.url), Database(catalog.url)
    products, categories = reader.fetch_all(PRODUCTS), reader.fetch_all(CATEGORIES)
    catalog.behind_the_back("UPDATE products SET name = 'Sneaky' WHERE id = 1")
    catalog.behind_the_back("UPDATE categories SET name = 'Sneaky' WHERE id = 2")
    assert reader.fetch_all(PRODUCTS) == products
    assert reader.fetch_all(CATEGORIES) == categories
    writer.execute("UPDATE products SET price = price + 1 WHERE id = 4")  # through the library
    assert reader.fetch_all(PRODUCTS)[0]["name"] == "Sneaky"  # products: a miss
    assert reader.fetch_all(CATEGORIES) == categories  # categories: still the cached rows
    writer.insert("categories", {"id": 4, "name": "Garden"})
    assert [c["name"] for c in reader.fetch_all(CATEGORIES)] == ["Electronics", "Sneaky", "Kitchen", "Garden"]


def test_transactions_keep_uncommitted_rows_out_and_invalidate_at_commit(
    configure: Callable[..., None], catalog: Catalog
) -> None:
    configure(TINA4_DB_CACHE="true", TINA4_AUTO_CACHING="false")
    db, other = Database(catalog.url), Database(catalog.url)
    assert other.fetch_one(PRODUCT, [1])["name"] == "Keyboard"
    db.start_transaction()
    db.execute("UPDATE products SET name = 'Uncommitted' WHERE id = 1")
    assert db.fetch_one(PRODUCT, [1])["name"] == "Uncommitted"  # its own write, not the cache
    assert db.fetch_one(PRODUCT, [1])["name"] == "Uncommitted"
    assert other.fetch_one(PRODUCT, [1])["name"] == "Keyboard"  # the cached committed row
    db.commit()
    assert other.fetch_one(PRODUCT, [1])["name"] == "Uncommitted"
    assert db.cache_stats()["misses"] == 0  # reads inside the transaction bypassed the cache

    other.fetch_all(CATEGORIES)
    hits = other.cache_stats()["hits"]

    def abandoned_transaction() -> None:
        with db.transaction():
            db.execute("UPDATE categories SET name = 'Rolled back' WHERE id = 1")
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        abandoned_transaction()
    assert other.fetch_all(CATEGORIES)[0]["name"] == "Electronics"
    assert other.cache_stats()["hits"] == hits + 1  # a rollback changes nothing: still cached


def test_views_triggers_and_cascades_invalidate_what_they_change(
    configure: Callable[..., None], catalog: Catalog
) -> None:
    configure(TINA4_DB_CACHE="true", TINA4_AUTO_CACHING="false")
    db, reader = Database(catalog.url), Database(catalog.url)
    db.execute("CREATE VIEW cheap AS SELECT id, name FROM products WHERE price < 50")
    db.execute("CREATE TABLE audit (product_id INTEGER, price REAL)")
    db.execute(
        "CREATE TRIGGER price_log AFTER UPDATE OF price ON products "
        "BEGIN INSERT INTO audit VALUES (NEW.id, NEW.price); END"
    )
    cheap = reader.fetch_all("SELECT * FROM cheap ORDER BY id")
    assert reader.fetch_all("SELECT * FROM audit") == []
    reader.fetch_all(CATEGORIES)
    catalog.behind_the_back("UPDATE categories SET name = 'Sneaky' WHERE id = 2")

    db.update("products", {"price": 10.0}, "id = ?", [1])  # the trigger writes audit
    assert reader.fetch_all("SELECT * FROM audit") == [{"product_id": 1, "price": 10.0}]
    assert [r["id"] for r in reader.fetch_all("SELECT * FROM cheap ORDER BY id")] == [
        1,
        *[r["id"] for r in cheap],
    ]
    # a trigger may write anything: the database-wide token moved, so categories is read again
    assert reader.fetch_all(CATEGORIES)[1]["name"] == "Sneaky"

    products = reader.fetch_all(PRODUCTS)
    db.delete("categories", {"id": 3})  # ON DELETE CASCADE removes products 3 and 4
    assert len(reader.fetch_all(PRODUCTS)) == len(products) - 2


def test_a_write_it_cannot_attribute_invalidates_every_table(
    configure: Callable[..., None], catalog: Catalog
) -> None:
    configure(TINA4_DB_CACHE="true", TINA4_AUTO_CACHING="false")
    db = Database(catalog.url)
    db.fetch_all(CATEGORIES)
    catalog.behind_the_back("UPDATE categories SET name = 'Sneaky' WHERE id = 1")
    assert db.fetch_all(CATEGORIES)[0]["name"] == "Electronics"
    db.execute("CREATE TABLE scratch (x INTEGER)")
    assert db.fetch_all(CATEGORIES)[0]["name"] == "Sneaky"


def test_tina4s_own_query_cache_stays_off(configure: Callable[..., None], catalog: Catalog) -> None:
    configure(TINA4_DB_CACHE="true", TINA4_AUTO_CACHING="true", TINA4_DB_CACHE_BACKEND="file")
    db = Database(catalog.url)
    assert db._db._cache_backend is None
    assert db._db.cache_stats()["mode"] == "off"
    db.fetch_all(PRODUCTS)
    assert db._db._query_cache == {}
