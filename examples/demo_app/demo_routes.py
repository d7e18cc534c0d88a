"""The demo app's routes: the caching chapter's examples, and the cases the sidecar must get right.

Imported by ``app.py`` (Tina4's own server) and ``asgi.py`` (uvicorn). Handlers are deterministic
except ``generated_at`` (and the bytes of ``/api/binary``, which change per run), so that tests can
tell a cached answer from a fresh one; ``GET /api/calls`` counts handler runs in this process.

``DEMO_STEP_ASIDE=false`` keeps Tina4's in-app ResponseCache working (for the test that shows what
stepping aside prevents).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import random
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from tina4_python.cache import ResponseCache
from tina4_python.core.middleware import Middleware
from tina4_python.core.router import Router, cached, get, middleware, noauth, post

from tina4_sidecar.client import install

CALLS: Counter[str] = Counter()
_last_stamp_ns = 0

PRODUCTS = [
    {"id": 1, "name": "Wireless Keyboard", "price": 79.99},
    {"id": 2, "name": "USB-C Hub", "price": 49.99},
    {"id": 3, "name": "Monitor Stand", "price": 129.99},
]

STORE: list[dict[str, Any]] = [
    {"id": 1, "name": "Wireless Keyboard", "category": "Electronics", "price": 79.99, "in_stock": True},
    {"id": 2, "name": "Yoga Mat", "category": "Fitness", "price": 29.99, "in_stock": True},
    {"id": 3, "name": "Coffee Grinder", "category": "Kitchen", "price": 49.99, "in_stock": False},
    {"id": 4, "name": "Standing Desk", "category": "Electronics", "price": 549.99, "in_stock": True},
    {"id": 5, "name": "Running Shoes", "category": "Fitness", "price": 119.99, "in_stock": True},
    {"id": 6, "name": "Bluetooth Speaker", "category": "Electronics", "price": 39.99, "in_stock": True},
    {"id": 7, "name": "Resistance Bands", "category": "Fitness", "price": 14.99, "in_stock": True},
    {"id": 8, "name": "French Press", "category": "Kitchen", "price": 34.99, "in_stock": True},
]


def generated_at() -> str:
    """An ISO timestamp with microseconds, strictly increasing within this process."""
    global _last_stamp_ns
    _last_stamp_ns = max(time.time_ns(), _last_stamp_ns + 1000)
    return datetime.fromtimestamp(_last_stamp_ns / 1e9, UTC).isoformat(timespec="microseconds")


def _int_query(request: Any, name: str, default: int) -> int | None:
    value = request.query.get(name, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 1 else None


# -- The chapter, section 5 ---------------------------------------------------------------------


@get("/api/products", middleware=["ResponseCache:300"])
async def list_products(request: Any, response: Any) -> Any:
    CALLS["list_products"] += 1
    return response({"products": PRODUCTS, "generated_at": generated_at()})


@get("/api/products/{id:int}", middleware=["ResponseCache:300"])
async def get_product(request: Any, response: Any) -> Any:
    CALLS["get_product"] += 1
    product = next((p for p in PRODUCTS if p["id"] == request.params["id"]), None)
    if product is None:
        return response({"error": "no such product"}, 404)
    return response({"product": product, "generated_at": generated_at()})


@middleware(ResponseCache)
@get("/api/b")
async def route_b(request: Any, response: Any) -> Any:
    CALLS["route_b"] += 1
    return response({"ok": True, "generated_at": generated_at()})


@cached(max_age=120)
@get("/api/c")
async def route_c(request: Any, response: Any) -> Any:
    CALLS["route_c"] += 1
    return response({"ok": True, "generated_at": generated_at()})


# -- The chapter's exercise (section 12), with ResponseCache instead of the key/value API --------


@get("/api/store/products", middleware=["ResponseCache:300"])
async def list_store_products(request: Any, response: Any) -> Any:
    CALLS["list_store_products"] += 1
    category = request.query.get("category")
    page = _int_query(request, "page", 1)
    limit = _int_query(request, "limit", 20)
    if page is None or limit is None:
        return response({"error": "page and limit must be positive integers"}, 400)
    products = [p for p in STORE if category is None or p["category"].lower() == str(category).lower()]
    total = len(products)
    offset = (page - 1) * limit
    return response(
        {
            "products": products[offset : offset + limit],
            "page": page,
            "limit": limit,
            "total": total,
            "pages": math.ceil(total / limit),
            "generated_at": generated_at(),
            "source": "database",
        }
    )


@noauth()
@post("/api/store/products")
async def create_store_product(request: Any, response: Any) -> Any:
    CALLS["create_store_product"] += 1
    body = request.body if isinstance(request.body, dict) else {}
    if not body.get("name"):
        return response({"error": "Name is required"}, 400)
    product = {
        "id": max(p["id"] for p in STORE) + 1,
        "name": str(body["name"]),
        "category": str(body.get("category", "General")),
        "price": float(body.get("price", 0)),
        "in_stock": True,
    }
    STORE.append(product)
    return response({"message": "Product created", "product": product}, 201)


# -- Cases the sidecar must handle ---------------------------------------------------------------


@get("/api/slow", middleware=["ResponseCache:60"])
async def slow(request: Any, response: Any) -> Any:
    CALLS["slow"] += 1
    await asyncio.sleep(0.1)
    return response({"slow": True, "generated_at": generated_at()})


@get("/api/time")
async def current_time(request: Any, response: Any) -> Any:
    CALLS["current_time"] += 1
    return response({"generated_at": generated_at()})


@get("/api/binary", middleware=["ResponseCache:60"])
async def binary(request: Any, response: Any) -> Any:
    CALLS["binary"] += 1
    # Every byte value, then bytes that differ from one handler run to the next.
    noise = random.Random(CALLS["binary"]).randbytes(4096)
    return response(bytes(range(256)) + noise)


@get("/api/with-cookie", middleware=["ResponseCache:60"])
async def with_cookie(request: Any, response: Any) -> Any:
    CALLS["with_cookie"] += 1
    response.cookie("demo_visit", str(CALLS["with_cookie"]))
    return response({"cookie_set": True, "generated_at": generated_at()})


@get("/api/private", middleware=["ResponseCache:60"])
async def private(request: Any, response: Any) -> Any:
    CALLS["private"] += 1
    response.header("Cache-Control", "private")
    return response({"private": True, "generated_at": generated_at()})


@get("/api/whoami", middleware=["ResponseCache:60"])
async def whoami(request: Any, response: Any) -> Any:
    CALLS["whoami"] += 1
    return response(
        {
            "cookie": request.headers.get("cookie"),
            "authorization": request.headers.get("authorization"),
            "generated_at": generated_at(),
        }
    )


@get("/api/calls")
async def calls(request: Any, response: Any) -> Any:
    return response(dict(CALLS))


@noauth()
@post("/api/echo")
async def echo(request: Any, response: Any) -> Any:
    CALLS["echo"] += 1
    body = bytes(request.raw_body or b"")
    return response({"sha256": hashlib.sha256(body).hexdigest(), "length": len(body)})


# -- The annotation forms Tina4 itself leaves inert, which the manifest still honours ------------


async def router_string(request: Any, response: Any) -> Any:
    CALLS["router_string"] += 1
    return response({"form": "Router.get middleware string", "generated_at": generated_at()})


Router.get("/api/forms/router-string", router_string, middleware=["ResponseCache:45"])


@middleware("ResponseCache:30")
@get("/api/forms/decorator-string")
async def decorator_string(request: Any, response: Any) -> Any:
    CALLS["decorator_string"] += 1
    return response({"form": "@middleware string", "generated_at": generated_at()})


async def route_cached(request: Any, response: Any) -> Any:
    CALLS["route_cached"] += 1
    return response({"form": "RouteRef.cache()", "generated_at": generated_at()})


Router.get("/api/forms/route-cached", route_cached).cache()


@get("/api/forms/statuses", middleware=[ResponseCache(ttl=90, status_codes=[200, 404])])
async def statuses(request: Any, response: Any) -> Any:
    CALLS["statuses"] += 1
    return response({"error": "gone fishing", "generated_at": generated_at()}, 404)


@get("/api/forms/disabled", middleware=["ResponseCache:0"])
async def disabled(request: Any, response: Any) -> Any:
    CALLS["disabled"] += 1
    return response({"form": "ResponseCache:0", "generated_at": generated_at()})


# An uncached route registered first shadows the cached one after it, as in Tina4.
@get("/api/shadow/{name}")
async def shadow_any(request: Any, response: Any) -> Any:
    CALLS["shadow_any"] += 1
    return response({"name": request.params["name"], "generated_at": generated_at()})


@get("/api/shadow/fixed", middleware=["ResponseCache:300"])
async def shadow_fixed(request: Any, response: Any) -> Any:
    CALLS["shadow_fixed"] += 1
    return response({"never": "reached", "generated_at": generated_at()})


import catalog_routes  # noqa: E402, F401  (section 11: the cache layers combined, /api/catalog)
import store_routes  # noqa: E402, F401  (the key/value API examples, under /api/kv and /api/kvstore)


class WorkerPid:
    """Global middleware: ``X-Worker-Pid`` says which process answered (several uvicorn workers)."""

    @staticmethod
    def after_worker_pid(request: Any, response: Any) -> None:
        response.header("X-Worker-Pid", str(os.getpid()))


Middleware.use(WorkerPid)
install(step_aside=os.environ.get("DEMO_STEP_ASIDE", "true").lower() != "false")
import big_routes  # noqa: E402, F401  (a 20 MB cached response: /api/big)
import checksum_routes  # noqa: E402, F401  (/api/checked/{name}: bodies with X-Body-SHA256)
