"""The drop-in promise: Tina4's documented cache and query-cache behaviours, run as the same code
against ``tina4_python`` (its ``cache`` module and its ``Database``) and against
``tina4_sidecar.client``, expecting the same result.

Each test takes ``impl``, one of the two implementations, and does exactly what an app written
against Tina4 does. Where the chapter (``../shared/seed/tina4-caching-chapter.txt``) says
otherwise than Tina4 3.13 does, the test asserts the chapter's behaviour for ours and Tina4's
own for Tina4 (the README's "Differences from Tina4" lists each one): ``clear_cache()`` flushes
the key/value entries too, ``TINA4_AUTO_CACHING`` defaults to true, and the persistent memory
query cache is shared by every ``Database()`` of the process.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.client.conftest import clean_env, unique_namespace


@dataclass
class Impl:
    name: str
    cache_get: Callable[..., Any]
    cache_set: Callable[..., Any]
    cache_delete: Callable[..., Any]
    cache_clear: Callable[..., Any]
    cache_stats: Callable[..., Any]
    sweep: Callable[..., Any]
    clear_cache: Callable[..., Any]
    Database: Any
    reset: Callable[[], None]


def _tina4() -> Impl:
    import tina4_python.cache as cache
    from tina4_python.database import Database

    def reset() -> None:
        cache._default_backend = None
        cache._default_ttl = None
        cache._default_cache = None

    return Impl(
        "tina4",
        cache.cache_get,
        cache.cache_set,
        cache.cache_delete,
        cache.cache_clear,
        cache.cache_stats,
        cache.sweep,
        cache.clear_cache,
        Database,
        reset,
    )


def _ours() -> Impl:
    from tina4_sidecar import client
    from tina4_sidecar.client import runtime
    from tina4_sidecar.client.request_scope import ambient, current

    def reset() -> None:
        runtime.reset()
        current().flush()
        ambient().flush()

    return Impl(
        "ours",
        client.cache_get,
        client.cache_set,
        client.cache_delete,
        client.cache_clear,
        client.cache_stats,
        client.sweep,
        client.clear_cache,
        client.Database,
        reset,
    )


@pytest.fixture(params=["tina4", "ours"])
def impl(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Impl]:
    clean_env(
        monkeypatch,
        tmp_path / "work",
        {"TINA4_CACHE_DIR": str(tmp_path / "cache"), "TINA4_CACHE_NAMESPACE": unique_namespace()},
    )
    found = _tina4() if request.param == "tina4" else _ours()
    found.reset()
    yield found
    found.reset()


@pytest.fixture
def app_db(tmp_path: Path) -> str:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, price REAL)")
        conn.execute("INSERT INTO products VALUES (1, 'Keyboard', 79.99), (2, 'Mat', 29.99)")
    return "sqlite:///" + str(path)


PRODUCT = {"id": 42, "name": "Wireless Keyboard", "price": 79.99, "in_stock": True}

# -- key/value: chapter section 7 ---------------------------------------------------------------


def test_set_then_get_returns_the_value_and_a_missing_key_is_none(impl: Impl) -> None:
    impl.cache_set("product:42", PRODUCT, ttl=300)
    impl.cache_set("exchange_rate:USD_EUR", "0.92", ttl=3600)
    impl.cache_set("app:config", {"theme": "dark", "lang": "en"})  # no TTL: TINA4_CACHE_TTL
    assert impl.cache_get("product:42") == PRODUCT
    assert impl.cache_get("exchange_rate:USD_EUR") == "0.92"
    assert impl.cache_get("app:config") == {"theme": "dark", "lang": "en"}
    assert impl.cache_get("product:43") is None


def test_delete_answers_whether_the_key_existed(impl: Impl) -> None:
    impl.cache_set("product:42", PRODUCT, ttl=300)
    assert impl.cache_delete("product:42") is True
    assert impl.cache_get("product:42") is None
    assert impl.cache_delete("product:42") is False


def test_an_entry_expires_at_its_ttl_and_sweep_counts_what_it_removed(impl: Impl) -> None:
    impl.cache_set("short", "x", ttl=1)
    impl.cache_set("long", "y", ttl=300)
    impl.cache_set("forever", "z", ttl=0)  # gotcha 6: 0 means no expiry
    assert impl.cache_get("short") == "x"
    time.sleep(1.1)
    assert impl.sweep() == 1
    assert impl.cache_get("short") is None
    assert (impl.cache_get("long"), impl.cache_get("forever")) == ("y", "z")


def test_lenient_arguments_non_str_keys_and_float_ttls(impl: Impl) -> None:
    impl.cache_set(42, "answer", ttl=2.5)
    impl.cache_set(("a", 1), "tuple key", ttl=60)
    assert impl.cache_get(42) == "answer"
    assert impl.cache_get(("a", 1)) == "tuple key"


def test_stats_fields_and_counts_then_cache_clear_resets_them(impl: Impl) -> None:
    impl.cache_set("a", 1, ttl=60)
    impl.cache_set("b", 2, ttl=60)
    impl.cache_get("a")
    impl.cache_get("missing")
    assert impl.cache_stats() == {"hits": 1, "misses": 1, "size": 2, "backend": "memory"}
    impl.cache_clear()
    assert impl.cache_stats() == {"hits": 0, "misses": 0, "size": 0, "backend": "memory"}
    assert impl.cache_get("a") is None


def test_the_memory_store_evicts_the_least_recently_used(impl: Impl, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINA4_CACHE_MAX_ENTRIES", "3")
    impl.reset()
    for key in ("k1", "k2", "k3"):
        impl.cache_set(key, key, ttl=60)
    impl.cache_get("k1")  # now k2 is the least recently used
    impl.cache_set("k4", "k4", ttl=60)
    assert [impl.cache_get(k) for k in ("k1", "k2", "k3", "k4")] == ["k1", None, "k3", "k4"]
    assert impl.cache_stats()["size"] == 3


def test_database_rows_with_decimal_datetime_date_and_uuid_come_back_as_themselves(impl: Impl) -> None:
    row = {
        "price": Decimal("79.99"),
        "at": dt.datetime(2026, 3, 22, 14, 30, tzinfo=dt.UTC),
        "day": dt.date(2026, 3, 22),
        "ref": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    }
    impl.cache_set("row", row, ttl=60)
    got = impl.cache_get("row")
    assert got == row
    assert [type(v) for v in got.values()] == [Decimal, dt.datetime, dt.date, uuid.UUID]


def test_empty_backend_means_memory_and_a_bad_name_is_a_value_error(
    impl: Impl, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TINA4_CACHE_BACKEND", "")
    impl.reset()
    impl.cache_set("k", "v", ttl=60)
    assert impl.cache_stats()["backend"] == "memory"
    monkeypatch.setenv("TINA4_CACHE_BACKEND", "redsi")
    impl.reset()
    with pytest.raises(ValueError, match="redsi"):
        impl.cache_set("k", "v", ttl=60)


def test_clear_cache_flushes_everything_as_the_chapter_says(impl: Impl) -> None:
    impl.cache_set("k", "v", ttl=60)
    impl.cache_get("k")
    impl.clear_cache()
    if impl.name == "ours":  # the chapter: "Flush everything with clear_cache()"
        assert impl.cache_get("k") is None
        assert impl.cache_stats()["hits"] == 0
    else:  # Tina4 3.13: only its ResponseCache (README, differences)
        assert impl.cache_get("k") == "v"


# -- the database query cache: chapter sections 2 to 4 -------------------------------------------


def test_query_cache_defaults_follow_the_chapter(impl: Impl, app_db: str) -> None:
    stats = impl.Database(app_db).cache_stats()
    mode = "request" if impl.name == "ours" else "off"  # chapter: TINA4_AUTO_CACHING=true by default
    assert stats == {
        "enabled": impl.name == "ours",
        "mode": mode,
        "hits": 0,
        "misses": 0,
        "size": 0,
        "ttl": 5,
        "backend": "memory",
    }


def test_request_scoped_layer_dedupes_reads_and_a_write_flushes_it(
    impl: Impl, app_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TINA4_AUTO_CACHING", "true")
    db = impl.Database(app_db)
    first = db.fetch_all("SELECT * FROM products ORDER BY id")
    again = db.fetch_all("SELECT * FROM products ORDER BY id")
    assert (
        first
        == again
        == [
            {"id": 1, "name": "Keyboard", "price": 79.99},
            {"id": 2, "name": "Mat", "price": 29.99},
        ]
    )
    assert db.fetch_one("SELECT * FROM products WHERE id = ?", [2]) == {
        "id": 2,
        "name": "Mat",
        "price": 29.99,
    }
    stats = db.cache_stats()
    assert (stats["mode"], stats["hits"], stats["misses"], stats["size"]) == ("request", 1, 2, 2)
    db.execute("UPDATE products SET name = ? WHERE id = ?", ["Keys", 1])
    assert db.fetch_all("SELECT * FROM products ORDER BY id")[0]["name"] == "Keys"


def test_no_cache_reads_live_data(impl: Impl, app_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINA4_AUTO_CACHING", "true")
    db = impl.Database(app_db)
    assert db.fetch_one("SELECT name FROM products WHERE id = ?", [1])["name"] == "Keyboard"
    with sqlite3.connect(app_db.removeprefix("sqlite:///")) as conn:
        conn.execute("UPDATE products SET name = 'Behind' WHERE id = 1")
    assert db.fetch_one("SELECT name FROM products WHERE id = ?", [1])["name"] == "Keyboard"
    assert db.fetch_one("SELECT name FROM products WHERE id = ?", [1], no_cache=True)["name"] == "Behind"
    fresh = db.fetch("SELECT name FROM products", params=None, limit=100, offset=0, no_cache=True)
    assert [r["name"] for r in fresh.records] == ["Behind", "Mat"]
    assert db.fetch_all("SELECT name FROM products", params=None, limit=0, offset=0, no_cache=True)[0] == {
        "name": "Behind"
    }


def test_cache_new_request_and_reset_request_caches_start_the_request_layer_empty(
    impl: Impl, app_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TINA4_AUTO_CACHING", "true")
    db = impl.Database(app_db)
    db.fetch_all("SELECT * FROM products")
    db.cache_new_request()
    db.fetch_all("SELECT * FROM products")
    assert (db.cache_stats()["hits"], db.cache_stats()["misses"]) == (0, 2)
    impl.Database.reset_request_caches()
    db.fetch_all("SELECT * FROM products")
    db.fetch_all("SELECT * FROM products")
    assert (db.cache_stats()["hits"], db.cache_stats()["misses"]) == (1, 3)


def test_settings_are_read_in_every_database(
    impl: Impl, app_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TINA4_DB_CACHE", "true")
    monkeypatch.setenv("TINA4_DB_CACHE_TTL", "7")
    assert impl.Database(app_db).cache_stats()["ttl"] == 7
    monkeypatch.setenv("TINA4_DB_CACHE_TTL", "9")
    stats = impl.Database(app_db).cache_stats()
    assert (stats["mode"], stats["ttl"], stats["backend"]) == ("persistent", 9, "memory")
    monkeypatch.setenv("TINA4_DB_CACHE", "false")
    monkeypatch.setenv("TINA4_AUTO_CACHING", "false")
    assert impl.Database(app_db).cache_stats()["mode"] == "off"


def test_persistent_layer_serves_later_reads_and_cache_clear_empties_it(
    impl: Impl, app_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TINA4_DB_CACHE", "true")
    monkeypatch.setenv("TINA4_AUTO_CACHING", "false")
    db = impl.Database(app_db)
    sql = "SELECT * FROM products ORDER BY name"
    assert [r["name"] for r in db.fetch_all(sql)] == ["Keyboard", "Mat"]
    with sqlite3.connect(app_db.removeprefix("sqlite:///")) as conn:
        conn.execute("UPDATE products SET name = 'Behind' WHERE id = 2")
    assert [r["name"] for r in db.fetch_all(sql)] == ["Keyboard", "Mat"]  # within the TTL: cached
    stats = db.cache_stats()
    assert (stats["hits"], stats["misses"], stats["size"]) == (1, 1, 1)
    db.cache_clear()
    stats = db.cache_stats()
    assert (stats["hits"], stats["misses"], stats["size"]) == (0, 0, 0)
    assert [r["name"] for r in db.fetch_all(sql)] == ["Behind", "Keyboard"]
    db.execute("INSERT INTO products VALUES (3, 'Apple', 1.0)")  # a write invalidates
    assert db.fetch_all(sql)[0]["name"] == "Apple"


def test_persistent_memory_cache_is_shared_by_every_database_of_the_process(
    impl: Impl, app_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chapter's handler makes a new ``Database()`` per request and says later requests are
    served from the cache; Tina4 3.13 gives each ``Database()`` a memory store of its own."""
    monkeypatch.setenv("TINA4_DB_CACHE", "true")
    monkeypatch.setenv("TINA4_AUTO_CACHING", "false")
    impl.Database(app_db).fetch_all("SELECT * FROM products")
    second = impl.Database(app_db)
    second.fetch_all("SELECT * FROM products")
    assert second.cache_stats()["hits"] == (1 if impl.name == "ours" else 0)
