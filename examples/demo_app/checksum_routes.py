"""A cached route whose every body can be verified by the client that receives it, and a fault switch.

``GET /api/checked/{name}`` (and ``/api/checked-short/{name}``, 2 s TTL, and
``/api/checked-live/{name}``, not cached) answers JSON naming the requested name, query string,
the request's Cookie and Authorization (so a body served to the wrong user shows it) and a fresh
nonce, with ``X-Body-SHA256`` set to the sha256 of the exact body bytes. The fault suite
(``tests/faults``) checks each response against both: the header and the URL/user it asked for.

With ``DEMO_FAULTS=true`` in the environment, ``POST /api/fault`` with a JSON body such as
``{"app": "slow", "slow_seconds": 3}`` or ``{"manifest": "garbage"}`` injects faults into this
process: ``app`` makes the checked routes sleep before answering (``slow``) or answer 500/503
(``error``, marked ``X-Fault: error``); ``manifest`` makes the cache manifest answer ``404``,
``500`` or ``garbage`` (200 with bodies that are not a manifest). ``"ok"`` ends a fault. The
switch is a module-level variable, so it reaches only the process that got the POST: Tina4's
built-in server (one process, as the tests run it), not each of several uvicorn workers. Without
``DEMO_FAULTS`` the route does not exist.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import json
import os
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from demo_routes import CALLS, generated_at
from tina4_python.core.router import Router, get, noauth, post

from tina4_sidecar.client.manifest import MANIFEST_HANDLER_MARK

APP_MODES = ("ok", "slow", "error")
MANIFEST_MODES = ("ok", "404", "500", "garbage")
FAULTS = {"app": "ok", "manifest": "ok"}
SLOW = {"seconds": 3.0}

# Bodies a broken app could send with 200 instead of its manifest; each is refused by the sidecar.
GARBAGE_MANIFESTS = itertools.cycle(
    [
        b'{"version": 1, "routes": [{"path": ',  # cut off
        b"<html><body>502 Bad Gateway</body></html>",
        b'{"version": 999, "routes": "everything"}',
        b"\x00\xff\xfe binary \x89PNG",
        b'{"version": 1, "routes": [{"method": "GET", "path": 5}]}',
    ]
)
_ERROR_STATUSES = itertools.cycle([500, 503])

type Handler = Callable[[Any, Any], Awaitable[Any]]


@get("/api/checked/{name}", middleware=["ResponseCache:60"])
async def checked(request: Any, response: Any) -> Any:
    """The name, query, user headers and a nonce, with the body's sha256 in ``X-Body-SHA256``."""
    CALLS["checked"] += 1
    return await _faulty(request, response)


@get("/api/checked-short/{name}", middleware=["ResponseCache:2"])
async def checked_short(request: Any, response: Any) -> Any:
    """The same with a 2 s TTL: its entries expire while the app is down (stale-if-error)."""
    CALLS["checked_short"] += 1
    return await _faulty(request, response)


@get("/api/checked-live/{name}")
async def checked_live(request: Any, response: Any) -> Any:
    """The same, not cached: every request reaches the app."""
    CALLS["checked_live"] += 1
    return await _faulty(request, response)


async def _faulty(request: Any, response: Any) -> Any:
    """The checked answer, after the injected app fault (if any)."""
    mode = FAULTS["app"]
    if mode == "slow":
        await asyncio.sleep(SLOW["seconds"])
    elif mode == "error":
        status = next(_ERROR_STATUSES)
        response.header("X-Fault", "error")
        return response(json.dumps({"fault": "error", "status": status}).encode(), status, "application/json")
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


async def set_fault(request: Any, response: Any) -> Any:
    """``{"app": mode, "slow_seconds": s, "manifest": mode}``: any subset; answers the modes in force."""
    try:
        wanted = json.loads(bytes(request.raw_body or b"{}"))
        app, manifest = wanted.get("app", FAULTS["app"]), wanted.get("manifest", FAULTS["manifest"])
        seconds = float(wanted.get("slow_seconds", SLOW["seconds"]))
    except (ValueError, TypeError, AttributeError) as exc:
        return response.json({"error": f"bad fault request: {exc}"}, 400)
    if app not in APP_MODES or manifest not in MANIFEST_MODES:
        return response.json({"error": f"app is one of {APP_MODES}, manifest one of {MANIFEST_MODES}"}, 400)
    FAULTS.update(app=app, manifest=manifest)
    SLOW["seconds"] = seconds
    return response.json({**FAULTS, "slow_seconds": seconds})


def _faulty_manifest(serve: Handler) -> Handler:
    """The manifest route's handler with the injected manifest fault in front of it."""

    @functools.wraps(serve)  # keeps the mark that leaves the manifest route out of the manifest
    async def manifest(request: Any, response: Any) -> Any:
        mode = FAULTS["manifest"]
        if mode in ("404", "500"):
            body = json.dumps({"fault": "manifest", "status": int(mode)}).encode()
            return response(body, int(mode), "application/json")
        if mode == "garbage":
            return response(next(GARBAGE_MANIFESTS), 200, "application/json")
        return await serve(request, response)

    return manifest


def _install_fault_switch() -> None:
    noauth()(post("/api/fault")(set_fault))
    for route in Router.get_routes():
        # Tina4 reads route["handler"] at every request, so replacing it takes effect at once.
        if getattr(route["handler"], MANIFEST_HANDLER_MARK, False):
            route["handler"] = _faulty_manifest(route["handler"])


if os.environ.get("DEMO_FAULTS", "").lower() in ("1", "true", "yes"):
    _install_fault_switch()
