"""A large cached response, for checking that bodies over the sidecar's object limit stream through."""

from __future__ import annotations

import random
from typing import Any

from demo_routes import CALLS
from tina4_python.core.router import get


@get("/api/big", middleware=["ResponseCache:60"])
async def big(request: Any, response: Any) -> Any:
    """``?mb=20`` megabytes of seeded pseudo-random bytes (so the client can check every byte)."""
    CALLS["big"] += 1
    megabytes = min(int(request.query.get("mb", "20") or 20), 64)
    seed = int(request.query.get("seed", "1") or 1)
    return response(random.Random(seed).randbytes(megabytes * 1024 * 1024))


@get("/api/sized", middleware=["ResponseCache:300"])
async def sized(request: Any, response: Any) -> Any:
    """Exactly ``?bytes=N`` bytes (16 to 8 MiB) of JSON, ``{"pad":"xxx..."}``, for size benchmarks."""
    CALLS["sized"] += 1
    try:
        size = int(request.query.get("bytes", "1024") or 1024)
    except (TypeError, ValueError):
        return response({"error": "bytes must be an integer"}, 400)
    if not 16 <= size <= 8 * 1024 * 1024:
        return response({"error": "bytes must be between 16 and 8388608"}, 400)
    head, tail = b'{"pad":"', b'"}'
    return response(head + b"x" * (size - len(head) - len(tail)) + tail, 200, "application/json")
