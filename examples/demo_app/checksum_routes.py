"""A cached route whose every body can be verified by the client that receives it.

``GET /api/checked/{name}`` (and ``/api/checked-short/{name}``, 2 s TTL) answers JSON naming
the requested name, query string, the request's Cookie and Authorization (so a body served to
the wrong user shows it) and a fresh nonce, with ``X-Body-SHA256`` set to the sha256 of the
exact body bytes. The fault suite (``tests/faults``) checks each response against both: the
header and the URL/user it asked for.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

from demo_routes import CALLS, generated_at
from tina4_python.core.router import get


@get("/api/checked/{name}", middleware=["ResponseCache:60"])
async def checked(request: Any, response: Any) -> Any:
    """The name, query, user headers and a nonce, with the body's sha256 in ``X-Body-SHA256``."""
    CALLS["checked"] += 1
    return _checked(request, response)


@get("/api/checked-short/{name}", middleware=["ResponseCache:2"])
async def checked_short(request: Any, response: Any) -> Any:
    """The same with a 2 s TTL: its entries expire while the app is down (stale-if-error)."""
    CALLS["checked_short"] += 1
    return _checked(request, response)


def _checked(request: Any, response: Any) -> Any:
    payload = {
        "name": str(request.params.get("name")),
        "query": {str(key): str(value) for key, value in dict(request.query).items()},
        "cookie": request.headers.get("cookie"),
        "authorization": request.headers.get("authorization"),
        "nonce": secrets.token_hex(16),
        "generated_at": generated_at(),
    }
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    response.header("X-Body-SHA256", hashlib.sha256(body).hexdigest())
    return response(body, 200, "application/json")
