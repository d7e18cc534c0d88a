"""The request's way through the sidecar, one small function per step (Varnish-style).

    receive -> decide (rule? cacheable request?) -> lookup
        -> fresh:                  deliver HIT (and maybe refresh early, in the background)
        -> stale-while-revalidate: deliver stale, refresh once in the background
        -> miss (or stale):        wait for a running fetch of the same key (coalesce), or
                                   fetch (holding the store lock) -> storable? -> store while
                                   streaming -> deliver; the app failing -> deliver stale-if-error

Requests that no cached rule covers are forwarded untouched (``pass_through``); requests on a
cached route that must not share a cache entry (cookies, credentials) are forwarded and marked
(``bypass``). Before any of that, an absolute-form target becomes the origin-form request for the
host it names, and a target the sidecar does not serve (CONNECT, another scheme) gets a 400.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import aiohttp
from aiohttp import web
from yarl import URL

from tina4_sidecar.config.rules import Rule
from tina4_sidecar.proxy import deliver
from tina4_sidecar.proxy.admin.api import handle_admin
from tina4_sidecar.proxy.aiohttp_requests import unsupported_version
from tina4_sidecar.proxy.cluster_lock import acquire_lock, fresh_entry, wait_for_peer
from tina4_sidecar.proxy.flights import NOT_SHAREABLE, Shared
from tina4_sidecar.proxy.http import cache_headers as ch
from tina4_sidecar.proxy.http.cacheability import CACHEABLE_METHODS, bypass_reason, unstorable_reason
from tina4_sidecar.proxy.http.entry import Entry
from tina4_sidecar.proxy.http.forward_headers import end_to_end
from tina4_sidecar.proxy.http.freshness import State, should_refresh_early, state_of
from tina4_sidecar.proxy.http.request_head import BadTarget, RequestHead, Target, parse_target
from tina4_sidecar.proxy.http.variants import request_values
from tina4_sidecar.proxy.lookup import Lookup, lookup
from tina4_sidecar.proxy.origin.errors import gateway_error
from tina4_sidecar.proxy.origin.fetch import make_entry, origin_headers, revalidated, store_entry
from tina4_sidecar.proxy.origin.forwarding import (
    CHUNK,
    STREAM_ERRORS,
    abort_stream,
    bypass,
    done,
    pass_through,
)
from tina4_sidecar.proxy.origin.refresh import refresh_in_background
from tina4_sidecar.proxy.origin.upstream import UPSTREAM_ERRORS, UpstreamUnavailable
from tina4_sidecar.proxy.origin.websocket import is_websocket_upgrade, proxy_websocket
from tina4_sidecar.proxy.sidecar import Sidecar


async def handle(sidecar: Sidecar, request: web.Request) -> web.StreamResponse:
    """receive: every request of every method enters here."""
    refused = unsupported_version(request)
    if refused is not None:
        return refused
    try:
        target = parse_target(request.method, request.raw_path)
    except BadTarget as exc:
        return bad_target(exc)
    if target.asterisk:
        return server_options()
    if target.authority is not None:
        request = in_origin_form(request, target, target.authority)
    if request.path.startswith(sidecar.settings.admin_prefix):
        return await handle_admin(sidecar, request)
    if is_websocket_upgrade(request):
        return await proxy_websocket(request, sidecar.upstream)
    head = receive(request)
    rule = sidecar.rules.match(head.method, head.path)
    if rule is None or not rule.cache or rule.ttl <= 0 or head.method not in CACHEABLE_METHODS:
        return await pass_through(request, sidecar, head)
    reason = bypass_reason(head, rule)
    if reason is not None:
        return await bypass(request, sidecar, rule, reason)
    started = time.monotonic()
    found = await lookup(sidecar, sidecar.key_for(head), head)
    state = state_of(found.entry, time.time()) if found.entry is not None else State.DEAD
    if state is State.FRESH and found.entry is not None:
        if should_refresh_early(found.entry, time.time(), sidecar.settings.early_refresh_beta):
            refresh_in_background(request, sidecar, head, rule, found)
        return done(sidecar, "hit", rule, started, deliver.hit(head, found.entry, sidecar.name))
    if state is State.STALE_REVALIDATE and found.entry is not None:
        refresh_in_background(request, sidecar, head, rule, found)
        response = deliver.stale(head, found.entry, sidecar.name, error_status=None, after_error=False)
        return done(sidecar, "stale", rule, started, response)
    return await miss(request, sidecar, head, rule, found, started)


def in_origin_form(request: web.Request, target: Target, authority: str) -> web.Request:
    """RFC 9112 section 3.2.2: an absolute-form target names the host, and the Host header is
    ignored. From here on the request is the origin-form one for that host, so the cache key, the
    Host and X-Forwarded-Host the app sees, and the app's URL all agree on one host."""
    # URL.build, not URL(text): a path such as "//evil/x" must stay a path, not become a host.
    url = URL.build(path=target.raw_path, query_string=target.query or "", encoded=True)
    return request.clone(rel_url=url, host=authority)


def bad_target(exc: BadTarget) -> web.Response:
    body = json.dumps({"error": "bad request target", "status": 400, "detail": str(exc)})
    return web.Response(status=400, text=body, content_type="application/json")


def server_options() -> web.Response:
    """``OPTIONS *`` asks about the server, not a resource: the sidecar answers it itself (the
    app's URL cannot carry the asterisk-form target)."""
    return web.Response(status=200)


def receive(request: web.Request) -> RequestHead:
    url = request.rel_url
    return RequestHead(
        method=request.method,
        scheme=request.scheme,
        host=request.host,
        path=request.path,
        raw_path=url.raw_path,
        query=url.raw_query_string,
        headers=request.headers,
    )


async def miss(
    request: web.Request, sidecar: Sidecar, head: RequestHead, rule: Rule, found: Lookup, started: float
) -> web.StreamResponse:
    """Coalesce with a running fetch of this key, or become the one fetch."""
    waiting = sidecar.flights.waiting_list(found.key)
    if waiting is not None:
        sidecar.metrics.coalesced_waiter(rule.path)
        shared = await asyncio.shield(waiting)
        if shared.entry is not None and shared.entry.matches_vary(
            dict(request_values([n for n, _ in shared.entry.vary], head.headers))
        ):
            return done(sidecar, "miss", rule, started, deliver.collapsed(head, shared.entry, sidecar.name))
        if shared.error is not None:
            return answer_failure(sidecar, head, rule, found, shared.error, shared.status, started)
        return await fetch(request, sidecar, head, rule, found, started, flight=None)
    flight = sidecar.flights.take_off(found.key)
    # The fetch is its own task: if this request is cancelled (the client hung up and the server
    # cancels handlers), the fetch still completes for the waiters and the store.
    leader = sidecar.keep(lead(request, sidecar, head, rule, found, started, flight))
    return await asyncio.shield(leader)


async def lead(
    request: web.Request,
    sidecar: Sidecar,
    head: RequestHead,
    rule: Rule,
    found: Lookup,
    started: float,
    flight: asyncio.Future[Shared],
) -> web.StreamResponse:
    try:
        return await fetch(request, sidecar, head, rule, found, started, flight=flight)
    finally:
        sidecar.flights.land(found.key, flight, NOT_SHAREABLE)  # no-op when it landed already


async def fetch(
    request: web.Request,
    sidecar: Sidecar,
    head: RequestHead,
    rule: Rule,
    found: Lookup,
    started: float,
    flight: asyncio.Future[Shared] | None,
) -> web.StreamResponse:
    """Ask the app (once per cluster where the store has a lock), stream, store, deliver."""

    def share(outcome: Shared) -> None:
        if flight is not None:
            sidecar.flights.land(found.key, flight, outcome)

    lock = await acquire_lock(sidecar, found.key)
    if lock is None:  # another sidecar is fetching this key: wait for its entry
        entry = await wait_for_peer(sidecar, head, found)
    else:  # double-checked: a fetch that ended between our lookup and our lock stored it already
        entry = await fresh_entry(sidecar, head, found)
    if entry is not None:
        if lock is not None:
            await sidecar.store.delete(lock)
        share(Shared(entry))
        return done(sidecar, "miss", rule, started, deliver.collapsed(head, entry, sidecar.name))
    try:
        return await fetch_and_stream(request, sidecar, head, rule, found, started, share)
    finally:
        if lock is not None:
            await sidecar.store.delete(lock)


async def fetch_and_stream(
    request: web.Request,
    sidecar: Sidecar,
    head: RequestHead,
    rule: Rule,
    found: Lookup,
    started: float,
    share: Callable[[Shared], None],
) -> web.StreamResponse:
    stale = found.entry
    headers = origin_headers(request.headers, request.remote, head, stale)
    fetch_started = time.monotonic()
    try:
        async with sidecar.upstream.request("GET", request.raw_path, headers) as upstream:
            seconds = time.monotonic() - fetch_started
            sidecar.metrics.origin_fetch(rule.path, upstream.status, seconds)
            if upstream.status == 304 and stale is not None:
                entry = revalidated(stale, upstream.headers, seconds)
                await store_entry(sidecar, found.primary, entry)
                share(Shared(entry))
                return done(sidecar, "miss", rule, started, deliver.revalidated(head, entry, sidecar.name))
            if upstream.status >= 500 and usable_after_error(stale):
                failed = UpstreamUnavailable(f"the app answered {upstream.status}")
                share(Shared(error=failed, status=upstream.status))
                return answer_failure(sidecar, head, rule, found, None, upstream.status, started)
            return await stream_and_store(
                request, sidecar, head, rule, found, upstream, seconds, share, started
            )
    except UPSTREAM_ERRORS as exc:
        share(Shared(error=exc))
        return answer_failure(sidecar, head, rule, found, exc, None, started)


async def stream_and_store(
    request: web.Request,
    sidecar: Sidecar,
    head: RequestHead,
    rule: Rule,
    found: Lookup,
    upstream: aiohttp.ClientResponse,
    seconds: float,
    share: Callable[[Shared], None],
    started: float,
) -> web.StreamResponse:
    """Stream the app's answer to the client while keeping it (up to the size limit) for the store.

    The fetch outlives its client: when the client goes away mid-body, reading goes on so the
    entry (and every coalesced waiter) still gets the response.
    """
    limit = rule.max_bytes if rule.max_bytes is not None else sidecar.settings.max_object_bytes
    length = upstream.content_length
    storable = unstorable_reason(upstream.status, upstream.headers, rule) is None and (
        length is None or length <= limit
    )
    headers = end_to_end(upstream.headers, drop=(*ch.OWN_HEADERS, sidecar.settings.tag_header))
    headers["X-Cache"] = ch.MISS
    if storable:
        headers["X-Cache-TTL"] = str(rule.ttl)
    headers["Cache-Status"] = ch.append_member(
        headers.get("Cache-Status"),
        ch.cache_status_fwd(sidecar.name, "uri-miss", fwd_status=upstream.status, stored=storable),
    )
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
    client = ClientSink(request, response, head.method == "HEAD")
    await client.start()
    body: bytearray | None = bytearray() if storable else None
    # The last chunk is held back until the entry is stored: a client that has the whole
    # response and asks again at once then finds the entry.
    held = b""
    try:
        async for chunk in upstream.content.iter_chunked(CHUNK):
            if body is not None:
                body += chunk
                if len(body) > limit:
                    body = None  # streamed through, not stored
            await client.write(held)
            held = chunk
            if client.gone and body is None:
                break
    except STREAM_ERRORS as exc:
        return abort_stream(request, response, exc)
    if body is not None:
        entry = await make_entry(
            sidecar, head, rule, upstream.status, upstream.headers, bytes(body), found.tokens, seconds
        )
        if entry is not None and await store_entry(sidecar, found.primary, entry):
            share(Shared(entry))
    await client.write(held)
    await client.finish()
    return done(sidecar, "miss", rule, started, response)


class ClientSink:
    """The client's end of a streamed response; remembers a client that went away."""

    def __init__(self, request: web.Request, response: web.StreamResponse, head_only: bool) -> None:
        self.request, self.response, self.head_only = request, response, head_only
        self.gone = False

    async def start(self) -> None:
        try:
            await self.response.prepare(self.request)
        except ConnectionError:
            self.gone = True

    async def write(self, chunk: bytes) -> None:
        if self.gone or self.head_only or not chunk:
            return
        try:
            await self.response.write(chunk)
        except ConnectionError:
            self.gone = True

    async def finish(self) -> None:
        if not self.gone:
            try:
                await self.response.write_eof()
            except ConnectionError:
                self.gone = True


def usable_after_error(entry: Entry | None) -> bool:
    return entry is not None and state_of(entry, time.time()) is not State.DEAD


def answer_failure(
    sidecar: Sidecar,
    head: RequestHead,
    rule: Rule,
    found: Lookup,
    exc: Exception | None,
    status: int | None,
    started: float,
) -> web.StreamResponse:
    """The app failed: the stale entry within its stale-if-error window, else 502/504."""
    if found.entry is not None and usable_after_error(found.entry):
        response = deliver.stale(head, found.entry, sidecar.name, error_status=status, after_error=True)
        return done(sidecar, "stale", rule, started, response)
    failure = exc if exc is not None else UpstreamUnavailable(f"the app answered {status}")
    return done(sidecar, "error", rule, started, gateway_error(sidecar.upstream.base_url, failure))
