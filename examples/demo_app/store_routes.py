"""The caching chapter's key/value examples (sections 7, 8, 10, 12-13) on the sidecar's client library.

Imported by ``demo_routes.py``. The only change from the chapter is the import line
(``from tina4_sidecar.client import ...`` instead of ``tina4_python.cache``), plus what the
library adds: the exercise's POST invalidates every cached listing with ONE call
(``invalidate_tag``) instead of looping over guessed hashed keys, and ``cache_get_or_set``
computes a value once for many concurrent requests. The values live in the store that
``TINA4_CACHE_BACKEND`` names, so several app processes on one Redis share them.

The exercise is served under ``/api/kvstore/...``: ``/api/store/products`` is the demo's
ResponseCache version of the same exercise.

Write routes are ``@noauth()`` because this is a demo; a real app protects them (above all
``/api/kvstore/purge``).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from tina4_python.core.router import get, noauth, post, put

from tina4_sidecar.client import (
    acache_get_or_set,
    cache_delete,
    cache_get,
    cache_set,
    cache_stats,
    invalidate_tag,
    purge_all,
    purge_route,
    purge_tag,
    purge_url,
)

KV_CALLS: Counter[str] = Counter()
PRODUCTS_TAG = "kvstore:products"

KV_PRODUCTS: list[dict[str, Any]] = [
    {"id": 1, "name": "Wireless Keyboard", "category": "Electronics", "price": 79.99, "in_stock": True},
    {"id": 2, "name": "Yoga Mat", "category": "Fitness", "price": 29.99, "in_stock": True},
    {"id": 3, "name": "Coffee Grinder", "category": "Kitchen", "price": 49.99, "in_stock": False},
    {"id": 4, "name": "Standing Desk", "category": "Electronics", "price": 549.99, "in_stock": True},
    {"id": 5, "name": "Running Shoes", "category": "Fitness", "price": 119.99, "in_stock": True},
    {"id": 6, "name": "Bluetooth Speaker", "category": "Electronics", "price": 39.99, "in_stock": True},
    {"id": 7, "name": "Resistance Bands", "category": "Fitness", "price": 14.99, "in_stock": True},
    {"id": 8, "name": "French Press", "category": "Kitchen", "price": 34.99, "in_stock": True},
]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _positive(request: Any, name: str, default: int) -> int | None:
    try:
        number = int(request.query.get(name, default))
    except (TypeError, ValueError):
        return None
    return number if number >= 1 else None


def _body(request: Any) -> dict[str, Any]:
    return request.body if isinstance(request.body, dict) else {}


# -- The exercise (sections 12 and 13) ------------------------------------------------------------


@get("/api/kvstore/products")
async def list_kv_products(request: Any, response: Any) -> Any:
    category = request.query.get("category")
    page, limit = _positive(request, "page", 1), _positive(request, "limit", 20)
    if page is None or limit is None:
        return response({"error": "page and limit must be positive integers"}, 400)
    # Every parameter is in the key (gotcha 4); readable instead of an md5.
    params = json.dumps({"category": category, "page": page, "limit": limit}, sort_keys=True)
    cache_key = f"kvstore:products:{params}"

    cached = cache_get(cache_key)
    if cached is not None:
        return response({**cached, "source": "cache"})

    KV_CALLS["list_kv_products"] += 1
    await asyncio.sleep(0.1)  # the chapter's "expensive database query"
    products = [p for p in KV_PRODUCTS if category is None or p["category"].lower() == category.lower()]
    total = len(products)
    offset = (page - 1) * limit
    result = {
        "products": products[offset : offset + limit],
        "page": page,
        "limit": limit,
        "total": total,
        "pages": math.ceil(total / limit),
        "generated_at": _now(),
    }
    cache_set(cache_key, result, ttl=300, tags=[PRODUCTS_TAG])
    return response({**result, "source": "database"})


@noauth()
@post("/api/kvstore/products")
async def create_kv_product(request: Any, response: Any) -> Any:
    body = _body(request)
    if not body.get("name"):
        return response({"error": "Name is required"}, 400)
    product = {
        "id": max(p["id"] for p in KV_PRODUCTS) + 1,
        "name": str(body["name"]),
        "category": str(body.get("category", "General")),
        "price": float(body.get("price", 0)),
        "in_stock": True,
    }
    KV_PRODUCTS.append(product)
    # One call drops every cached listing: each category, page and limit, in every process.
    invalidated = invalidate_tag(PRODUCTS_TAG)
    return response({"message": "Product created", "product": product, "cache_invalidated": invalidated}, 201)


@get("/api/kvstore/cache-stats")
async def kv_cache_stats(request: Any, response: Any) -> Any:
    return response(cache_stats())


# -- Section 7: cache-aside; section 8: event-based invalidation and write-through ---------------


def _find(product_id: int) -> dict[str, Any] | None:
    return next((p for p in KV_PRODUCTS if p["id"] == product_id), None)


def _update(product: dict[str, Any], body: dict[str, Any]) -> None:
    product["name"] = str(body.get("name", product["name"]))
    product["price"] = float(body.get("price", product["price"]))


@get("/api/kv/products/{product_id:int}")
async def get_kv_product(request: Any, response: Any) -> Any:
    product_id = request.params["product_id"]
    cache_key = f"product:{product_id}"

    product = cache_get(cache_key)
    if product is not None:
        return response({**product, "source": "cache"})

    KV_CALLS["get_kv_product"] += 1
    product = _find(product_id)
    if product is None:
        return response({"error": "Product not found"}, 404)
    cache_set(cache_key, product, ttl=600)
    return response({**product, "source": "database"})


@noauth()
@put("/api/kv/products/{product_id:int}")
async def update_kv_product(request: Any, response: Any) -> Any:
    """Event-based invalidation: write, then delete the cached copy."""
    product = _find(request.params["product_id"])
    if product is None:
        return response({"error": "Product not found"}, 404)
    _update(product, _body(request))
    deleted = cache_delete(f"product:{product['id']}")
    return response({**product, "cache_deleted": deleted})


@noauth()
@put("/api/kv/products/{product_id:int}/write-through")
async def write_through_kv_product(request: Any, response: Any) -> Any:
    """Write-through: write, then put the new data straight into the cache."""
    product = _find(request.params["product_id"])
    if product is None:
        return response({"error": "Product not found"}, 404)
    _update(product, _body(request))
    cache_set(f"product:{product['id']}", product, ttl=600)
    return response(product)


# -- What the client library adds -------------------------------------------------------------------


@get("/api/kv/report")
async def kv_report(request: Any, response: Any) -> Any:
    """An expensive value computed once, however many requests (and app processes) ask at once."""

    async def build() -> dict[str, Any]:
        KV_CALLS["kv_report"] += 1
        await asyncio.sleep(0.3)
        return {"report": "quarterly", "generated_at": _now()}

    return response(await acache_get_or_set("kv:report", build, ttl=60))


@get("/api/kv/calls")
async def kv_calls(request: Any, response: Any) -> Any:
    return response(dict(KV_CALLS))


@get("/api/kvstore/tagged", middleware=["ResponseCache:300"])
async def tagged_response(request: Any, response: Any) -> Any:
    """A response the sidecar caches under the tag ``catalog`` (``purge_tag("catalog")`` drops it)."""
    KV_CALLS["tagged_response"] += 1
    response.header("X-Cache-Tags", "catalog")
    return response({"tagged": "catalog", "generated_at": _now()})


@noauth()
@post("/api/kvstore/purge")
async def purge_responses(request: Any, response: Any) -> Any:
    """Purge the sidecar's cached responses from app code: ``{"route": "/api/products"}``, or
    ``{"url": ...}``, ``{"tag": ...}``, ``{"all": true}``. Reaches every sidecar on the shared store."""
    body = _body(request)
    if body.get("all") is True:
        done = purge_all()
    elif isinstance(body.get("route"), str):
        done = purge_route(body["route"])
    elif isinstance(body.get("url"), str):
        done = purge_url(body["url"])
    elif isinstance(body.get("tag"), str):
        done = purge_tag(body["tag"])
    else:
        return response({"error": "give one of route, url, tag (strings) or all: true"}, 400)
    return response({"purged": done})
