"""A small real Tina4 app for the security regression tests: the answers a review found abusable.

- ``/sec/split/{name}`` (ResponseCache:60): a site-wide middleware adds
  ``Cache-Control: public, max-age=60`` before the handler runs; when the request carries an
  ``X-Api-Key`` the handler appends a second line (``?second=private``, ``no-store``,
  ``no-cache``), and the body names the key. Also ``Pragma``, ``Vary: *`` and
  ``Surrogate-Control: no-store`` on a later line (``?second=pragma|vary|surrogate``).
- ``/sec/lang`` (ResponseCache:60, ``Vary: Accept-Language``): the body is the Accept-Language
  this app sees (Tina4 keeps the last of repeated headers).
- ``/sec/utm`` (ResponseCache:60): the body reflects ``utm_campaign`` and the whole query string.
- ``/sec/host`` (ResponseCache:60) and ``/sec/host/{p:path}``: the body is the Host and path seen.
- ``/sec/me`` (not cached): a signed-in user's page, the Cookie echoed; ``/sec/calls`` counts them.
- ``/sec/forwarded`` (not cached): the forwarding headers the app received.
- ``/sec/slow?seconds=N`` (not cached): answers after N seconds (2 by default).
- ``/sec/tagged`` (not cached): sends the cache's own ``X-Cache-Tags`` and ``Surrogate-Control``.
- ``/sec/no-content`` (not cached): a 204 with a body, which Tina4's server sends as it is.
- ``/sec/revalidate`` (ResponseCache:1, ETag "v1"): a 304 for ``If-None-Match: "v1"``, with
  ``Set-Cookie`` and ``Cache-Control: private`` when ``?mode=cookie``/``private`` was set by
  ``POST /sec/revalidate-mode``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tina4_python.core import run
from tina4_python.core.middleware import Middleware
from tina4_python.core.router import get, noauth, post

from tina4_sidecar.client import install

SECOND_LINES = {
    "private": ("Cache-Control", "private"),
    "no-store": ("Cache-Control", "no-store"),
    "no-cache": ("Cache-Control", "no-cache"),
    "pragma": ("Pragma", "no-cache"),
    "vary": ("Vary", "*"),
    "surrogate": ("Surrogate-Control", "no-store"),
}
REVALIDATE = {"mode": "plain"}
CALLS = {"me": 0}


class SiteCaching:
    """What many sites do: one middleware that marks every page cacheable."""

    @staticmethod
    def before_site_caching(request: Any, response: Any) -> Any:
        if request.path.startswith("/sec/split"):
            response.header("Cache-Control", "public, max-age=60")
            response.header("Vary", "Accept-Encoding")
            response.header("Surrogate-Control", "max-age=60")
        return request, response


Middleware.use(SiteCaching)


def query(request: Any) -> dict[str, Any]:
    return dict(getattr(request, "query", None) or {})


@get("/sec/split/{name}", middleware=["ResponseCache:60"])
async def split(request: Any, response: Any) -> Any:
    key = request.headers.get("x-api-key")
    if key is not None:
        second = str(query(request).get("second", "private"))
        response.header(*SECOND_LINES[second])
    return response(json.dumps({"name": request.params.get("name"), "user": key or "anonymous"}), 200,
                    "application/json")  # fmt: skip


@get("/sec/lang", middleware=["ResponseCache:60"])
async def lang(request: Any, response: Any) -> Any:
    response.header("Vary", "Accept-Language")
    return response(f"<p>{request.headers.get('accept-language')}</p>", 200, "text/html")


@get("/sec/utm", middleware=["ResponseCache:60"])
async def utm(request: Any, response: Any) -> Any:
    seen = query(request)
    body = json.dumps({"campaign": seen.get("utm_campaign"), "query": seen})
    return response(body, 200, "application/json")


@get("/sec/host", middleware=["ResponseCache:60"])
async def host(request: Any, response: Any) -> Any:
    return response(json.dumps({"host": request.headers.get("host"), "path": request.path}), 200,
                    "application/json")  # fmt: skip


@get("/sec/host/{p:path}", middleware=["ResponseCache:60"])
async def host_path(request: Any, response: Any) -> Any:
    return response(json.dumps({"host": request.headers.get("host"), "path": request.path}), 200,
                    "application/json")  # fmt: skip


@get("/sec/me")
async def me(request: Any, response: Any) -> Any:
    CALLS["me"] += 1
    return response(json.dumps({"cookie": request.headers.get("cookie")}), 200, "application/json")


@get("/sec/slow")
async def slow(request: Any, response: Any) -> Any:
    await asyncio.sleep(float(query(request).get("seconds", "2")))
    return response("slow answer", 200, "text/plain")


@get("/sec/forwarded")
async def forwarded(request: Any, response: Any) -> Any:
    names = ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded", "host")
    return response(json.dumps({name: request.headers.get(name) for name in names}), 200, "application/json")


@get("/sec/calls")
async def calls(request: Any, response: Any) -> Any:
    return response(json.dumps(CALLS), 200, "application/json")


@get("/sec/tagged")
async def tagged(request: Any, response: Any) -> Any:
    response.header("X-Cache-Tags", "internal-tag")
    response.header("Surrogate-Control", "max-age=60")
    return response("tagged, not cached", 200, "text/plain")


@get("/sec/no-content")
async def no_content(request: Any, response: Any) -> Any:
    return response("a body a 204 must not have", 204, "text/plain")


@get("/sec/revalidate", middleware=["ResponseCache:1"])
async def revalidate(request: Any, response: Any) -> Any:
    mode = REVALIDATE["mode"]
    if request.headers.get("if-none-match") == '"v1"':
        if mode == "cookie":
            response.header("Set-Cookie", "session=third-user")
        elif mode == "private":
            response.header("Cache-Control", "private")
        response.header("ETag", '"v1"')
        return response("", 304)
    response.header("ETag", '"v1"')
    return response(json.dumps({"mode": mode}), 200, "application/json")


@noauth()
@post("/sec/revalidate-mode")
async def revalidate_mode(request: Any, response: Any) -> Any:
    REVALIDATE["mode"] = str((request.body or {}).get("mode", "plain"))
    return response(json.dumps(REVALIDATE), 200, "application/json")


install()

if __name__ == "__main__":
    run()
