"""The chapter's section 11 (combining the cache layers), on a real database, with our imports.

At import, the database that ``Database()`` opens (``TINA4_DATABASE_URL``, Tina4's default
``sqlite:///data/tina4.db`` in the working directory) gets ``categories`` and ``products``
tables, seeded once with 45 products (40 active): idempotent, so several uvicorn workers may
import this at once.

* ``GET /api/catalog?page=N``: the chapter's handler as written, with ``cache_get``/``cache_set``
  and ``Database`` from ``tina4_sidecar.client``: ResponseCache (the sidecar), then the
  key/value cache, then the query cache. One line differs: Tina4 3.13 keeps query-string values
  out of ``request.params`` (route parameters only), so the page comes from ``request.query``.
* ``GET /api/catalog/request-cache?pause=S``: runs the same COUNT twice in one request, first on
  a Database of its own, then, ``S`` seconds later, on a Database shared by every request of the
  process (Tina4's own cache lets such requests read and clear each other's entries); the second
  read comes from this request's scope. Says what the query cache did.
* ``POST /api/catalog/products``: adds an active product (``{"name": ..., "category_id": ...}``).
"""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from typing import Any

from tina4_python.core.router import get, noauth, post

from tina4_sidecar.client import Database, cache_get, cache_set

CATEGORIES = [(1, "Electronics"), (2, "Fitness"), (3, "Kitchen")]
SEED_PRODUCTS = 45


def seed_catalog(db: Database) -> None:
    """Create and fill the two tables unless they are there (safe to run concurrently)."""
    db.execute("CREATE TABLE IF NOT EXISTS categories (id INTEGER PRIMARY KEY, name VARCHAR(100) NOT NULL)")
    db.execute(
        "CREATE TABLE IF NOT EXISTS products (id INTEGER PRIMARY KEY, name VARCHAR(200) NOT NULL, "
        "price NUMERIC(10, 2) NOT NULL, category_id INTEGER NOT NULL REFERENCES categories(id), "
        "active INTEGER NOT NULL DEFAULT 1, created_at VARCHAR(32) NOT NULL)"
    )
    for category_id, name in CATEGORIES:
        db.execute(
            "INSERT INTO categories (id, name) SELECT ?, ? "
            "WHERE NOT EXISTS (SELECT 1 FROM categories WHERE id = ?)",
            [category_id, name, category_id],
        )
    for n in range(1, SEED_PRODUCTS + 1):
        db.execute(
            "INSERT INTO products (id, name, price, category_id, active, created_at) "
            "SELECT ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM products WHERE id = ?)",
            [
                n,
                f"Product {n}",
                5 + n,
                CATEGORIES[n % 3][0],
                0 if n % 9 == 0 else 1,
                f"2026-01-01T00:00:{n:02d}+00:00",
                n,
            ],
        )


SHARED_DB = Database()
seed_catalog(SHARED_DB)


@get("/api/catalog", middleware=["ResponseCache:60"])
async def get_catalog(request: Any, response: Any) -> Any:
    page = int(request.query.get("page", 1))
    cache_key = f"catalog:page:{page}"

    # Layer 1: key/value cache
    catalog = cache_get(cache_key)
    if catalog is not None:
        return response({**catalog, "cache": "kv"})

    # Layer 2: database query (request-scoped cache always on;
    # persistent cache too if TINA4_DB_CACHE=true)
    db = Database()
    limit = 20
    offset = (page - 1) * limit

    products = db.fetch_all(
        """SELECT p.*, c.name as category_name
           FROM products p
           JOIN categories c ON p.category_id = c.id
           WHERE p.active = 1
           ORDER BY p.created_at DESC
           LIMIT ? OFFSET ?""",
        [limit, offset],
    )
    total = db.fetch_one("SELECT COUNT(*) as count FROM products WHERE active = 1")

    catalog = {
        "products": products,
        "page": page,
        "total": total["count"],
        "pages": math.ceil(total["count"] / limit),
        "generated_at": datetime.now(UTC).isoformat(),
    }

    cache_set(cache_key, catalog, ttl=300)
    return response({**catalog, "cache": "none"})


COUNT_ACTIVE = "SELECT COUNT(*) AS count FROM products WHERE active = 1"


@get("/api/catalog/request-cache")
async def request_cache_probe(request: Any, response: Any) -> Any:
    pause = float(request.query.get("pause", 0) or 0)
    db = Database()  # a new object per request, as in the chapter; the scope is the request's
    first = db.fetch_one(COUNT_ACTIVE)
    if pause > 0:
        await asyncio.sleep(min(pause, 5.0))
    hits_before = SHARED_DB.cache_stats()["hits"]  # no await until the read: no other request between
    again = SHARED_DB.fetch_one(COUNT_ACTIVE)  # another object, shared by every request: same scope
    return response(
        {
            "first": first["count"],
            "again": again["count"],
            "first_was_a_miss": db.cache_stats()["misses"] == 1,
            "again_was_a_hit": SHARED_DB.cache_stats()["hits"] == hits_before + 1,
            "mode": db.cache_stats()["mode"],
        }
    )


@noauth()
@post("/api/catalog/products")
async def add_catalog_product(request: Any, response: Any) -> Any:
    body = request.body if isinstance(request.body, dict) else {}
    if not body.get("name"):
        return response({"error": "name is required"}, 400)
    row = SHARED_DB.fetch_one("SELECT COALESCE(MAX(id), 0) + 1 AS next_id FROM products", no_cache=True)
    SHARED_DB.insert(
        "products",
        {
            "id": row["next_id"],
            "name": str(body["name"]),
            "price": float(body.get("price", 1)),
            "category_id": int(body.get("category_id", 1)),
            "active": 1,
            "created_at": datetime.now(UTC).isoformat(),
        },
    )
    return response({"id": row["next_id"]}, 201)
