"""The key/value API (spec section 7) on real stores: memory, file, Redis and PostgreSQL.

Values of every type, TTLs, delete, the exact stats, a clear that touches nothing but our
key/value layer (checked with each backend's own client), tags, and the sync API called from
inside a running event loop.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import time
import uuid
from typing import Any

import pytest

from tests.client.conftest import KvBackend, unique_namespace
from tests.servers.redis import raw_client
from tina4_sidecar.client import (
    acache_delete,
    acache_get,
    acache_get_or_set,
    acache_set,
    acache_stats,
    aclear_cache,
    ainvalidate_tag,
    cache_clear,
    cache_delete,
    cache_get,
    cache_get_or_set,
    cache_set,
    cache_stats,
    clear_cache,
    invalidate_tag,
    runtime,
)

VALUES: list[Any] = [
    {"id": 42, "name": "Wireless Keyboard", "price": 79.99, "in_stock": True},
    [1, "two", 3.5, None, False, {"nested": ["deep", {"deeper": []}]}],
    "0.92",
    "",
    "ünïcödé ✓ 漢字 \n\t\x00 \ud800",
    0,
    -7,
    2**70,
    3.14159,
    1e-300,
    True,
    False,
    {},
    [],
    b"",
    bytes(range(256)),
    b"\x00" * 1_000_000,
]


def test_every_value_type_round_trips_with_its_type(kv_backend: KvBackend) -> None:
    for index, value in enumerate(VALUES):
        assert cache_set(f"value:{index}", value, ttl=60) is True
    for index, value in enumerate(VALUES):
        found = cache_get(f"value:{index}")
        assert found == value
        assert type(found) is type(value)


def test_values_keep_their_types_and_tuples_come_back_as_lists(kv_backend: KvBackend) -> None:
    cache_set("tuple", (1, (2, 3)))
    cache_set("int-keys", {1: "one", None: "none"})
    cache_set("bytearray", bytearray(b"\x00\xff"))
    cache_set("memoryview", memoryview(b"abc"))
    row = {
        "price": decimal.Decimal("79.99"),
        "at": datetime.datetime(2026, 3, 22, 14, 30, tzinfo=datetime.UTC),
        "day": datetime.date(2026, 3, 22),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "tags": {"a", "b"},
        "raw": [b"nested bytes"],
        "big": 2**80,
    }
    cache_set("row", row)
    assert cache_get("tuple") == [1, [2, 3]]  # as from JSON, and from Tina4's network stores
    assert cache_get("int-keys") == {1: "one", None: "none"}
    assert cache_get("bytearray") == b"\x00\xff"  # bytearray and memoryview come back as bytes
    assert cache_get("memoryview") == b"abc"
    found = cache_get("row")
    assert found == row
    assert {k: type(v) for k, v in found.items()} == {k: type(v) for k, v in row.items()}


def test_a_cached_none_reads_as_a_miss_like_tina4(kv_backend: KvBackend) -> None:
    assert cache_set("nothing", None) is True
    assert cache_get("nothing") is None
    assert cache_delete("nothing") is True  # it was there


def test_objects_are_refused_naming_the_type(memory_backend: KvBackend) -> None:
    for value in ({"when": object()}, [len], {"nested": [object]}):
        with pytest.raises(TypeError, match="cannot cache a value of type"):
            cache_set("refused", value)
    assert cache_get("refused") is None


def test_arguments_are_lenient_as_in_tina4(memory_backend: KvBackend) -> None:
    assert cache_set(42, "int key") is True  # Tina4 takes any key
    assert cache_get(42) == "int key"
    assert cache_set("float", 1, ttl=0.2) is True  # rounded up to a whole second, never shorter
    assert cache_get("float") == 1
    assert cache_set("negative", 2, ttl=-1) is True  # Tina4: a TTL <= 0 never expires
    assert cache_get("negative") == 2
    with pytest.raises(TypeError, match="ttl"):
        cache_set("k", 1, ttl="soon")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="single str"):
        cache_set("k", 1, tags="products")
    with pytest.raises(ValueError, match="lock_ttl"):
        cache_get_or_set("k", lambda: 1, lock_ttl=0)


def test_ttl_default_zero_and_expiry(kv_backend: KvBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINA4_CACHE_TTL", "1")
    runtime.reset()  # the settings are read once; reset() re-reads them
    assert cache_set("explicit", "a", ttl=1)
    assert cache_set("default", "b")  # TINA4_CACHE_TTL
    assert cache_set("forever", "c", ttl=0)
    assert cache_set("long", "d", ttl=3600)
    if kv_backend.redis is not None:  # the TTL as the server holds it
        raw = raw_client(kv_backend.redis)
        prefix = f"{kv_backend.namespace}:kv:"
        assert raw.ttl(prefix + "default") == 1
        assert raw.ttl(prefix + "forever") == -1
        assert 3590 < raw.ttl(prefix + "long") <= 3600
    assert [cache_get(k) for k in ("explicit", "default", "forever", "long")] == ["a", "b", "c", "d"]
    time.sleep(1.1)
    assert [cache_get(k) for k in ("explicit", "default", "forever", "long")] == [None, None, "c", "d"]
    assert cache_delete("explicit") is False  # expired is gone


def test_default_ttl_is_sixty_seconds(kv_backend: KvBackend) -> None:
    cache_set("default", "x")
    if kv_backend.redis is not None:
        assert 55 < raw_client(kv_backend.redis).ttl(f"{kv_backend.namespace}:kv:default") <= 60
    assert runtime.settings().cache_ttl == 60


def test_delete_answers_whether_the_key_existed(kv_backend: KvBackend) -> None:
    cache_set("product:42", {"id": 42})
    assert cache_delete("product:42") is True
    assert cache_delete("product:42") is False
    assert cache_delete("never-set") is False
    assert cache_get("product:42") is None


def test_stats_have_exactly_the_spec_fields_and_count_what_callers_saw(kv_backend: KvBackend) -> None:
    name = kv_backend.name
    assert cache_stats() == {"hits": 0, "misses": 0, "size": 0, "backend": name}
    cache_set("a", 1)
    cache_set("b", 2, tags=["t"])  # its tag token lives in the meta layer: not in the size
    assert cache_get("a") == 1
    assert cache_get("b") == 2  # reads the tag token too: not a second hit
    assert cache_get("missing") is None
    assert cache_get_or_set("c", lambda: 3) == 3  # a miss (its lock is not counted)
    assert cache_get_or_set("c", lambda: 4) == 3  # a hit
    assert cache_stats() == {"hits": 3, "misses": 2, "size": 3, "backend": name}
    invalidate_tag("t")
    assert cache_get("b") is None
    assert cache_stats() == {"hits": 3, "misses": 3, "size": 2, "backend": name}
    clear_cache()
    assert cache_stats() == {"hits": 0, "misses": 0, "size": 0, "backend": name}


def test_cache_clear_removes_only_our_key_value_entries(kv_backend: KvBackend) -> None:
    other = unique_namespace()
    assert kv_backend.put("resp", "GET http://app/api/products", b"a response")
    assert kv_backend.put("query", "select-1", b"rows")
    assert kv_backend.put("kv", "shared-name", b"Jother app", namespace=other)
    cache_set("shared-name", "ours")
    cache_set("tagged", [1], tags=["t"])
    cache_get_or_set("computed", lambda: {"x": 1})
    assert cache_clear() is True  # Tina4's name for the key/value flush
    assert cache_get("shared-name") is None
    assert cache_get("computed") is None
    assert cache_stats()["size"] == 0
    assert kv_backend.peek("resp", "GET http://app/api/products") == b"a response"
    assert kv_backend.peek("query", "select-1") == b"rows"
    assert kv_backend.peek("kv", "shared-name", namespace=other) == b"Jother app"
    raw = kv_backend.raw_keys()
    if raw is not None:  # the backend's own client agrees
        ours = kv_backend.namespace
        assert f"{ours}:resp:GET http://app/api/products" in raw
        assert f"{ours}:query:select-1" in raw
        assert f"{other}:kv:shared-name" in raw
        assert not any(key.startswith(f"{ours}:kv:") for key in raw)


def test_clear_cache_flushes_values_query_results_and_responses(kv_backend: KvBackend) -> None:
    other = unique_namespace()
    assert kv_backend.put("query", "select-1", b"rows")
    assert kv_backend.put("kv", "shared-name", b"Mother app", namespace=other)
    cache_set("ours", 1)
    clear_cache()  # the chapter: flush everything (responses go through purge_all: tests/e2e)
    assert cache_get("ours") is None
    assert kv_backend.peek("query", "select-1") is None
    assert kv_backend.peek("kv", "shared-name", namespace=other) == b"Mother app"


def test_other_apps_and_tina4_itself_do_not_see_our_values(kv_backend: KvBackend) -> None:
    cache_set("product:42", {"id": 42})
    assert kv_backend.peek("kv", "product:42", namespace=unique_namespace()) is None
    raw = kv_backend.raw_keys()
    if raw is not None:
        assert f"{kv_backend.namespace}:kv:product:42" in raw
        assert "tina4:cache:product:42" not in raw  # Tina4's own key/value keys


def test_tags_invalidate_every_tagged_value_at_once(kv_backend: KvBackend) -> None:
    cache_set("p:1", {"id": 1}, tags=["products"])
    cache_set("p:2", {"id": 2}, tags=["products", "featured"])
    cache_set("c:1", {"id": 1}, tags=["categories"])
    cache_set("plain", "untagged")
    assert invalidate_tag("products") is True
    assert cache_get("p:1") is None
    assert cache_get("p:2") is None
    assert cache_get("c:1") == {"id": 1}
    assert cache_get("plain") == "untagged"
    cache_set("p:1", {"id": 1, "v": 2}, tags=["products", "featured"])
    assert cache_get("p:1") == {"id": 1, "v": 2}
    assert invalidate_tag("never-used") is True
    assert cache_get("p:1") == {"id": 1, "v": 2}
    invalidate_tag("featured")
    assert cache_get("p:1") is None


def test_a_lost_tag_token_causes_misses_never_stale_hits(kv_backend: KvBackend) -> None:
    cache_set("p:1", "v1", tags=["products"])
    assert kv_backend.with_store("meta", lambda store: store.delete("~tok:kvtag:products"))
    assert cache_get("p:1") is None


def test_a_tag_invalidated_while_computing_makes_the_stored_value_a_miss(kv_backend: KvBackend) -> None:
    def producer() -> str:
        invalidate_tag("products")  # a write elsewhere, while this value is computed
        return "computed from old data"

    assert cache_get_or_set("listing", producer, tags=["products"]) == "computed from old data"
    assert cache_get("listing") is None
    assert cache_get_or_set("listing", lambda: "fresh", tags=["products"]) == "fresh"
    assert cache_get("listing") == "fresh"


async def test_the_sync_api_works_inside_a_running_event_loop(kv_backend: KvBackend) -> None:
    asyncio.get_running_loop()  # as in Tina4's async handlers
    assert cache_set("product:42", {"id": 42}, ttl=300)
    assert cache_get("product:42") == {"id": 42}
    assert cache_get_or_set("computed", lambda: [1, 2]) == [1, 2]
    assert invalidate_tag("t") is True
    assert cache_delete("product:42") is True
    assert cache_stats()["hits"] == 1
    clear_cache()


async def test_the_async_twins(kv_backend: KvBackend) -> None:
    assert await acache_set("k", {"a": 1}, ttl=60, tags=["t"]) is True
    assert await acache_get("k") == {"a": 1}
    assert await ainvalidate_tag("t") is True
    assert await acache_get("k") is None
    assert await acache_set("k", b"bytes") is True
    assert await acache_delete("k") is True

    async def produce() -> dict[str, int]:
        await asyncio.sleep(0)
        return {"async": 1}

    assert await acache_get_or_set("async", produce) == {"async": 1}
    assert await acache_get_or_set("sync", lambda: {"sync": 1}) == {"sync": 1}
    assert await acache_get("async") == {"async": 1}
    assert await acache_stats() == {"hits": 2, "misses": 3, "size": 2, "backend": kv_backend.name}
    await aclear_cache()
    assert await acache_stats() == {"hits": 0, "misses": 0, "size": 0, "backend": kv_backend.name}


def test_keys_may_be_any_string(kv_backend: KvBackend) -> None:
    keys = ["with space", "ünï:cödé", "../../etc/passwd", "x" * 500, "~lock:kv:looks-internal", "a\nb"]
    for index, key in enumerate(keys):
        cache_set(key, index)
    assert [cache_get(key) for key in keys] == list(range(len(keys)))
