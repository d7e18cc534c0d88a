"""A small real Tina4 app for the operations tests: a session cookie, slow answers, echoed headers.

- ``/login?user=NAME`` (not cached): sets the session cookie ``tina4_session=NAME``.
- ``/page`` (ResponseCache:60): "hello NAME" for the session cookie's user, else "hello guest";
  the kind of page that must never be shared between users.
- ``/news/{name}`` and ``/docs/{name}`` (ResponseCache:300): plain cached pages with a counter.
- ``/slow?seconds=N`` (not cached) and ``/slow-cached`` (ResponseCache:60): answer after a while.
- ``/headers`` (not cached): the request headers the app received, as JSON.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tina4_python.core import run
from tina4_python.core.router import get

from tina4_sidecar.client import install

CALLS = {"page": 0, "news": 0}


def _session(request: Any) -> str | None:
    cookie = request.headers.get("cookie") or ""
    for piece in cookie.split(";"):
        name, _, value = piece.strip().partition("=")
        if name == "tina4_session" and value:
            return value
    return None


@get("/login")
async def login(request: Any, response: Any) -> Any:
    user = str(dict(request.query or {}).get("user", "alice"))
    response.header("Set-Cookie", f"tina4_session={user}; Path=/; HttpOnly")
    return response(json.dumps({"signed_in": user}), 200, "application/json")


@get("/page", middleware=["ResponseCache:60"])
async def page(request: Any, response: Any) -> Any:
    CALLS["page"] += 1
    user = _session(request) or "guest"
    return response(json.dumps({"hello": user, "call": CALLS["page"]}), 200, "application/json")


@get("/news/{name}", middleware=["ResponseCache:300"])
async def news(request: Any, response: Any) -> Any:
    CALLS["news"] += 1
    return response(json.dumps({"news": request.params.get("name"), "call": CALLS["news"]}), 200,
                    "application/json")  # fmt: skip


@get("/docs/{name}", middleware=["ResponseCache:300"])
async def docs(request: Any, response: Any) -> Any:
    CALLS["news"] += 1
    return response(json.dumps({"docs": request.params.get("name"), "call": CALLS["news"]}), 200,
                    "application/json")  # fmt: skip


@get("/slow")
async def slow(request: Any, response: Any) -> Any:
    await asyncio.sleep(float(dict(request.query or {}).get("seconds", 2)))
    return response(json.dumps({"slow": True, "padding": "x" * 5000}), 200, "application/json")


@get("/slow-cached", middleware=["ResponseCache:60"])
async def slow_cached(request: Any, response: Any) -> Any:
    await asyncio.sleep(1.5)
    return response(json.dumps({"slow": True}), 200, "application/json")


@get("/headers")
async def headers(request: Any, response: Any) -> Any:
    return response(
        json.dumps({k.lower(): v for k, v in dict(request.headers).items()}), 200, "application/json"
    )


install()

if __name__ == "__main__":
    run()
