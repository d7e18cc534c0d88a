"""Forwarding untouched: requests no cached rule covers (pass) and those that must not share an
entry (bypass), streamed both ways; plus recording each answer's outcome."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import aiohttp
from aiohttp import web

from tina4_sidecar.config.rules import Rule
from tina4_sidecar.proxy.http import cache_headers as ch
from tina4_sidecar.proxy.http.cacheability import CACHEABLE_METHODS
from tina4_sidecar.proxy.http.forward_headers import end_to_end, to_upstream
from tina4_sidecar.proxy.http.request_head import RequestHead
from tina4_sidecar.proxy.origin.errors import gateway_error
from tina4_sidecar.proxy.origin.upstream import UPSTREAM_ERRORS
from tina4_sidecar.proxy.sidecar import Sidecar

log = logging.getLogger("tina4_sidecar.proxy")

CHUNK = 64 * 1024
STREAM_ERRORS = (aiohttp.ClientError, ConnectionError, TimeoutError)


async def bypass(request: web.Request, sidecar: Sidecar, rule: Rule, reason: str) -> web.StreamResponse:
    """A cached route that this request must not share: forwarded, marked, never stored."""
    started = time.monotonic()
    member = ch.cache_status_fwd(sidecar.name, "bypass", detail=reason)
    response = await forward(request, sidecar, {"X-Cache": ch.MISS}, member)
    return done(sidecar, "bypass", rule, started, response)


async def pass_through(request: web.Request, sidecar: Sidecar, head: RequestHead) -> web.StreamResponse:
    """No cached rule: forwarded untouched, both ways streamed."""
    started = time.monotonic()
    response = await forward(request, sidecar, None, None)
    if head.method not in CACHEABLE_METHODS and response.status < 400:
        await invalidate_after_write(sidecar, head)
    return done(sidecar, "pass", None, started, response)


async def invalidate_after_write(sidecar: Sidecar, head: RequestHead) -> None:
    """RFC 9111 section 4.4: a successful unsafe request invalidates the GET entry of its URL."""
    rule = sidecar.rules.match("GET", head.path)
    if rule is not None and rule.cache:
        key = sidecar.key_for(replace(head, method="GET"))
        sidecar.near.drop(key)
        await sidecar.store.delete(key)


async def forward(
    request: web.Request, sidecar: Sidecar, extra: dict[str, str] | None, status_member: str | None
) -> web.StreamResponse:
    headers = to_upstream(request.headers, request.remote, request.scheme, request.host)
    data = request.content if request.body_exists else None
    try:
        async with sidecar.upstream.request(request.method, request.raw_path, headers, data) as upstream:
            out = end_to_end(upstream.headers)
            if extra is not None:
                for name in (*ch.OWN_HEADERS, sidecar.settings.tag_header):
                    out.popall(name, None)
                out.update(extra)
            if status_member is not None:
                out["Cache-Status"] = ch.append_member(out.get("Cache-Status"), status_member)
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=out)
            await response.prepare(request)
            if request.method != "HEAD":
                try:
                    async for chunk in upstream.content.iter_chunked(CHUNK):
                        await response.write(chunk)
                except STREAM_ERRORS as exc:
                    return abort_stream(request, response, exc)
            await response.write_eof()
            return response
    except UPSTREAM_ERRORS as exc:
        return gateway_error(sidecar.upstream.base_url, exc)


def done(
    sidecar: Sidecar, outcome: str, rule: Rule | None, started: float, response: web.StreamResponse
) -> web.StreamResponse:
    sidecar.metrics.request(outcome, rule.path if rule is not None else None, time.monotonic() - started)
    return response


def abort_stream(
    request: web.Request, response: web.StreamResponse, exc: BaseException
) -> web.StreamResponse:
    """The body broke off after the headers went out: close the connection so the client sees
    a truncated response rather than a complete-looking wrong one. Nothing is stored."""
    log.warning("stream of %s %s broke off: %s", request.method, request.path, exc or type(exc).__name__)
    if request.transport is not None:
        request.transport.close()
    return response
