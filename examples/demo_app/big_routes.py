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
