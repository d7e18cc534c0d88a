"""Forwarding untouched: requests no cached rule covers (pass) and those that must not share an
entry (bypass), streamed both ways; plus recording each answer's outcome."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from urllib.parse import unquote

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from tina4_sidecar.config.rules import Rule
from tina4_sidecar.proxy.http import cache_headers as ch
from tina4_sidecar.proxy.http.forward_headers import to_upstream
from tina4_sidecar.proxy.http.invalidation import invalidated_targets, invalidates
from tina4_sidecar.proxy.http.request_head import RequestHead
from tina4_sidecar.proxy.origin.errors import gateway_error
from tina4_sidecar.proxy.origin.upstream import UPSTREAM_ERRORS, UpstreamUnavailable, close_watch, cut_short
from tina4_sidecar.proxy.responses import StreamResponse
from tina4_sidecar.proxy.sidecar import Sidecar

log = logging.getLogger("tina4_sidecar.proxy")

CHUNK = 64 * 1024
STREAM_ERRORS = (aiohttp.ClientError, ConnectionError, TimeoutError)


async def bypass(
    request: web.Request, sidecar: Sidecar, rule: Rule | None, reason: str
) -> web.StreamResponse:
    """A cached route that this request must not share: forwarded, marked, never stored."""
    started = time.monotonic()
    response = await forward(request, sidecar, ch.cache_status_fwd(sidecar.name, "bypass", detail=reason))
    return done(sidecar, "bypass", rule, started, response)


async def pass_through(request: web.Request, sidecar: Sidecar, head: RequestHead) -> web.StreamResponse:
    """No cached rule: forwarded untouched, both ways streamed."""
    started = time.monotonic()
    response = await forward(request, sidecar, None)
    if invalidates(head.method, response.status):
        await invalidate_after_write(sidecar, head, response.headers)
    return done(sidecar, "pass", None, started, response)


async def invalidate_after_write(
    sidecar: Sidecar, head: RequestHead, response_headers: CIMultiDictProxy[str] | CIMultiDict[str]
) -> None:
    """RFC 9111 section 4.4: a successful unsafe request invalidates the GET entries of its URL and
    of the same-host URLs its Location and Content-Location name."""
    targets = invalidated_targets(head.method, 200, head.host, head.raw_path, head.query, response_headers)
    for raw_path, query in targets:
        target = replace(head, method="GET", raw_path=raw_path, path=unquote(raw_path), query=query)
        rule = sidecar.rules.match("GET", target.path)
        if (rule is not None and rule.cache) or sidecar.settings.honor_cache_control:
            key = sidecar.key_for(target)
            sidecar.near.drop(key)
            await sidecar.store.delete(key)


async def forward(request: web.Request, sidecar: Sidecar, marked: str | None) -> web.StreamResponse:
    headers = to_upstream(request.headers, request.remote, request.scheme, request.host, sidecar.trusted)
    data = request.content if request.body_exists else None
    try:
        async with sidecar.upstream.request(request.method, request.raw_path, headers, data) as upstream:
            out = ch.app_answer(upstream.headers, sidecar.settings.tag_header, marked)
            response = StreamResponse(status=upstream.status, reason=upstream.reason, headers=out)
            await response.prepare(request)
            if request.method != "HEAD":
                watch = close_watch(upstream)
                try:
                    async for chunk in upstream.content.iter_chunked(CHUNK):
                        await response.write(chunk)
                except STREAM_ERRORS as exc:
                    return abort_stream(request, response, exc)
                if cut_short(watch):
                    reset = UpstreamUnavailable("the app reset the connection mid-body")
                    return abort_stream(request, response, reset)
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
    log.warning("stream of %s %s broke off: %s", request.method, request.raw_path, exc or type(exc).__name__)
    if request.transport is not None:
        request.transport.close()
    return response
