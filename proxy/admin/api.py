"""The admin API: everything under ``TINA4_SIDECAR_ADMIN_PREFIX`` (default ``/__sidecar/``).

    GET  health    200 {"status": "ok"}                                  the process is alive
    GET  ready     200 or 503 {"status", "listening", "rules", "store", "app"}   can serve
    GET  stats     200 JSON: counters, hit rate, store, manifest          needs the token
    GET  metrics   200 Prometheus text (OpenMetrics if Accept asks)       needs the token
    POST purge     {"url"|"route"|"prefix"|"host"|"tag"|"all": ..., "soft"?} needs the token
    GET  inspect   ?url=/path[&host=h] one key's entry: TTL left, size, tags, variants
    PURGE /any/path  (the Varnish and Souin convention) purges that URL, with the admin token

Under ``--workers N`` ``stats`` and ``metrics`` report the whole sidecar, every worker summed
(``proxy/workers_view.py``), whichever worker answers.

Access. On the public listener ``health`` and ``ready`` answer anyone (load balancers, Docker's
HEALTHCHECK): they tell only ok or not, and which part failed. ``stats``, ``metrics`` and
``purge`` need ``Authorization: Bearer <TINA4_SIDECAR_ADMIN_TOKEN>``: 401 without it or with a
wrong one, and 404 when no token is configured (the admin API is off there). On the separate
admin listener (``TINA4_SIDECAR_ADMIN_LISTEN``) everything answers without a token, so bind it
to localhost or a private network. Requests under the prefix never reach the app; unknown admin
paths answer 404 and a wrong method 405, always as JSON, never cached (``no-store``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import SecretStr

from tina4_sidecar.proxy.admin.auth import TokenCheck, check_bearer
from tina4_sidecar.proxy.admin.inspect import inspect
from tina4_sidecar.proxy.admin.probes import probes_for
from tina4_sidecar.proxy.admin.purge import PurgeError, PurgeOrder, parse_purge, run_purge
from tina4_sidecar.proxy.admin.purge import order as make_order
from tina4_sidecar.proxy.control import CONTROL_TOKEN
from tina4_sidecar.proxy.metrics import Gauges
from tina4_sidecar.proxy.sidecar import Sidecar
from tina4_sidecar.proxy.workers_view import view_of

log = logging.getLogger("tina4_sidecar.admin")

MAX_PURGE_BODY = 16 * 1024
READ = frozenset({"GET", "HEAD"})
WRITE = frozenset({"POST"})

CONTROL_SECRET = SecretStr(CONTROL_TOKEN)

Answer = Callable[[Sidecar, web.BaseRequest], Awaitable[web.StreamResponse]]


async def handle_admin(sidecar: Sidecar, request: web.BaseRequest) -> web.StreamResponse:
    """A request under the admin prefix on the public listener: the token rules apply."""
    return await _dispatch(sidecar, request, trusted=False)


async def handle_admin_listener(sidecar: Sidecar, request: web.BaseRequest) -> web.StreamResponse:
    """Every request on the separate admin listener: no token needed, nothing forwarded."""
    prefix = sidecar.settings.admin_prefix
    if not request.path.startswith(prefix):
        return error(404, f"not found: this listener serves only the admin API under {prefix}")
    return await _dispatch(sidecar, request, trusted=True)


@dataclass(frozen=True)
class Endpoint:
    methods: frozenset[str]
    public: bool
    """True: answers on the public listener without the token."""
    answer: Answer


async def _dispatch(sidecar: Sidecar, request: web.BaseRequest, trusted: bool) -> web.StreamResponse:
    name = request.path[len(sidecar.settings.admin_prefix) :]
    endpoint = ENDPOINTS.get(name)
    if endpoint is None:
        known = ", ".join(ENDPOINTS)
        return error(404, f"no admin endpoint {request.path!r}; the admin API has {known}")
    if not trusted and not endpoint.public and not (endpoint.answer is purge and _control(request)):
        refused = _refuse(sidecar, request)
        if refused is not None:
            return refused
    if request.method not in endpoint.methods:
        allowed = ", ".join(sorted(endpoint.methods))
        return error(405, f"{request.method} not allowed here; use {allowed}", {"Allow": allowed})
    return await endpoint.answer(sidecar, request)


def _control(request: web.BaseRequest) -> bool:
    """The app's purges carry the control token this sidecar announced (``proxy/control.py``)."""
    return check_bearer(request.headers.get("Authorization"), CONTROL_SECRET) is TokenCheck.OK


def _refuse(sidecar: Sidecar, request: web.BaseRequest) -> web.Response | None:
    """None when the request carries the admin token; else the 404 or 401 to answer."""
    token = sidecar.settings.admin_token
    if token is None:
        return error(
            404,
            "the admin API is off on this listener: set TINA4_SIDECAR_ADMIN_TOKEN, "
            "or use the listener of TINA4_SIDECAR_ADMIN_LISTEN",
        )
    check = check_bearer(request.headers.get("Authorization"), token)
    if check is TokenCheck.OK:
        return None
    challenge = 'Bearer realm="tina4-sidecar"'
    if check is TokenCheck.INVALID:
        log.info(
            "admin request with a wrong token from %s: %s %s", request.remote, request.method, request.path
        )
        return error(401, "invalid admin token", {"WWW-Authenticate": f'{challenge}, error="invalid_token"'})
    return error(
        401,
        "admin token required: send Authorization: Bearer <TINA4_SIDECAR_ADMIN_TOKEN>",
        {"WWW-Authenticate": challenge},
    )


# -- the endpoints ------------------------------------------------------------------------------------


async def health(sidecar: Sidecar, request: web.BaseRequest) -> web.StreamResponse:
    return reply(200, {"status": "ok"})


async def ready(sidecar: Sidecar, request: web.BaseRequest) -> web.StreamResponse:
    """Can this sidecar serve? Listening, rules loaded once, the store (or its fallback) answers.
    The app's state is in the body; it fails readiness only with TINA4_SIDECAR_READY_REQUIRES_APP."""
    result = await probes_for(sidecar).readiness.get()
    rules = sidecar.manifest.rules_loaded
    ok = sidecar.serving and rules and result.store
    if sidecar.settings.ready_requires_app:
        ok = ok and result.app
    body = {
        "status": "ok" if ok else "unavailable",
        "listening": sidecar.serving,
        "rules": "loaded" if rules else "none yet",
        "store": "ok" if result.store else "failed",
        "fallback": bool(getattr(sidecar.store, "degraded", False)),
        "app": "ok" if result.app else "failed",
    }
    return reply(200 if ok else 503, body)


async def stats(sidecar: Sidecar, request: web.BaseRequest) -> web.StreamResponse:
    store = await probes_for(sidecar).store_stats.get()
    view = view_of(sidecar)
    counted = view.metrics.stats()
    manifest = sidecar.manifest
    body = {
        **{name: counted[name] for name in ("hits", "misses", "stale", "bypass", "pass", "errors")},
        "hit_rate": counted["hit_rate"],
        "size": store.size,
        "backend": store.backend,
        "fallback": store.fallback,
        "store": {**store.as_dict(), "last_error": sidecar.store.counters.last_error},
        "origin_fetches": counted["origin_fetches"],
        "coalesced": counted["coalesced"],
        "routes": counted["routes"],
        "manifest": {
            "path": sidecar.settings.manifest_path,
            "rules": len(sidecar.rules),
            "loaded_at": manifest.loaded_at,
            "last_error": manifest.last_error,
        },
        "uptime_seconds": counted["uptime_seconds"],
        "pid": os.getpid(),
        "workers": view.workers,
        "in_flight": view.in_flight,
    }
    return reply(200, body)


async def metrics(sidecar: Sidecar, request: web.BaseRequest) -> web.StreamResponse:
    probes = probes_for(sidecar)
    store = await probes.store_stats.get()
    readiness = await probes.readiness.get()
    view = view_of(sidecar)
    gauges = Gauges(
        entries=store.size,
        store_errors=store.errors,
        fallback=store.fallback,
        manifest_rules=len(sidecar.rules),
        manifest_ok=sidecar.manifest.last_error is None,
        manifest_loaded_at=sidecar.manifest.loaded_at,
        app_up=readiness.app,
        in_flight=view.in_flight,
        workers=len(view.workers),
    )
    body, content_type = view.metrics.exposition(gauges, request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})


async def purge(sidecar: Sidecar, request: web.BaseRequest) -> web.StreamResponse:
    body = await _read_body(request, MAX_PURGE_BODY)
    if body is None:
        return error(413, f"the purge body is larger than {MAX_PURGE_BODY} bytes")
    try:
        order = parse_purge(body)
    except PurgeError as exc:
        return error(400, str(exc))
    return await apply(sidecar, request, order)


async def apply(sidecar: Sidecar, request: web.BaseRequest, order: PurgeOrder) -> web.StreamResponse:
    sidecar.near.clear()  # the near cache cannot tell which prebuilt entries a purge covers
    if not await run_purge(sidecar.store, order, sidecar.query_filter):
        log.warning("admin purge %s failed: the store could not be written", order.as_json())
        return error(503, "the store could not be written: the purge may be incomplete, retry it")
    sidecar.metrics.purged(order.label)
    log.info("admin purge %s (from %s)", order.as_json(), request.remote)
    return reply(
        200,
        {
            "purged": order.as_json(),
            "done": order.describe(),
            "count": None,
            "note": "a token purge: in effect at once on every worker and sidecar sharing the store; "
            "the entries it covers are not counted",
        },
    )


async def purge_method(sidecar: Sidecar, request: web.BaseRequest) -> web.StreamResponse:
    """``PURGE /path?query`` on the public listener: every variant of that URL, with the admin
    token (or the app's control token); ``Soft-Purge: 1`` (Fastly's header) makes it soft."""
    if not _control(request):
        refused = _refuse(sidecar, request)
        if refused is not None:
            return refused
    soft = request.headers.get("Soft-Purge", "").strip() in ("1", "true")
    try:
        order = make_order("url", request.raw_path, soft)
    except PurgeError as exc:
        return error(400, str(exc))
    return await apply(sidecar, request, order)


ENDPOINTS: Mapping[str, Endpoint] = {
    "health": Endpoint(READ, public=True, answer=health),
    "ready": Endpoint(READ, public=True, answer=ready),
    "stats": Endpoint(READ, public=False, answer=stats),
    "metrics": Endpoint(READ, public=False, answer=metrics),
    "purge": Endpoint(WRITE, public=False, answer=purge),
    "inspect": Endpoint(READ, public=False, answer=inspect),
}


# -- helpers -----------------------------------------------------------------------------------------


def reply(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/json",
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return reply(status, {"error": message, "status": status}, headers)


async def _read_body(request: web.BaseRequest, limit: int) -> bytes | None:
    """The body, or None when it is larger than ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        return None
    body = bytearray()
    async for chunk in request.content.iter_chunked(limit + 1):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)
