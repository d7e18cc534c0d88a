"""The request's way through the sidecar, one small function per step (Varnish-style).

    receive -> decide (rule? cacheable request?) -> lookup -> reuse?
        -> fresh:                  deliver HIT (and maybe refresh early, in the background)
        -> stale-while-revalidate: deliver stale, refresh once in the background
        -> miss (or must validate): wait for a running fetch of the same key (coalesce), or
                                   fetch (holding the store lock) -> storable? -> store while
                                   streaming -> deliver; the app failing -> deliver stale-if-error

Every step after ``receive`` is a function of one ``Transaction``. The rules (what is cached,
stored, reused, and the headers of each answer) are ``proxy/http``'s; this module only strings
them together. Requests the cache takes no part in are forwarded untouched (``pass_through``);
requests on a cached route that must not share an entry (cookies, credentials) are forwarded
and marked (``bypass``). Before any of that, an absolute-form target becomes the origin-form
request for the host it names, and a target the sidecar does not serve gets a 400.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace

import aiohttp
from aiohttp import web
from yarl import URL

from tina4_sidecar.proxy import deliver
from tina4_sidecar.proxy.admin.api import handle_admin
from tina4_sidecar.proxy.aiohttp_requests import unsupported_version
from tina4_sidecar.proxy.cluster_lock import acquire_lock, fresh_entry, wait_for_peer
from tina4_sidecar.proxy.flights import NOT_SHAREABLE, Shared
from tina4_sidecar.proxy.http import cache_headers as ch
from tina4_sidecar.proxy.http.cache_headers import Kind
from tina4_sidecar.proxy.http.cacheability import decide
from tina4_sidecar.proxy.http.entry import Entry
from tina4_sidecar.proxy.http.freshness import State, should_refresh_early, state_of
from tina4_sidecar.proxy.http.limits import oversized, refusal_body
from tina4_sidecar.proxy.http.request_head import (
    BadTarget,
    RequestHead,
    Target,
    normalized_host,
    parse_target,
)
from tina4_sidecar.proxy.http.reuse import NONE, Reuse, request_directives, reuse
from tina4_sidecar.proxy.http.storage import Storage
from tina4_sidecar.proxy.http.variants import request_values
from tina4_sidecar.proxy.lookup import lookup
from tina4_sidecar.proxy.origin.errors import gateway_error
from tina4_sidecar.proxy.origin.fetch import make_entry, origin_headers, revalidated, storage_for, store_entry
from tina4_sidecar.proxy.origin.forwarding import CHUNK, STREAM_ERRORS, abort_stream, bypass, pass_through
from tina4_sidecar.proxy.origin.refresh import refresh_in_background
from tina4_sidecar.proxy.origin.upstream import UPSTREAM_ERRORS, UpstreamUnavailable, close_watch, cut_short
from tina4_sidecar.proxy.origin.websocket import is_websocket_upgrade, proxy_websocket
from tina4_sidecar.proxy.responses import Response, StreamResponse
from tina4_sidecar.proxy.sidecar import Sidecar
from tina4_sidecar.proxy.transaction import Transaction


async def handle(sidecar: Sidecar, request: web.Request) -> web.StreamResponse:
    """receive: every request of every method enters here."""
    refused = unsupported_version(request)
    if refused is not None:
        return refused
    too_big = oversized(request.method, request.raw_path, request.headers, sidecar.limits)
    if too_big is not None:
        return head_refused(too_big)
    try:
        target = parse_target(request.method, request.raw_path)
    except BadTarget as exc:
        return bad_target(exc)
    if target.asterisk:
        return server_options()
    if target.authority is not None:
        request = in_origin_form(request, target, target.authority)
    host = served_host(request, target.authority)
    if host is None:
        return bad_host()
    if host != request.host:
        request = request.clone(host=host)
    if request.path.startswith(sidecar.settings.admin_prefix):
        return await handle_admin(sidecar, request)
    if request.path == sidecar.settings.manifest_path:
        return not_found()  # the rules are the sidecar's to read, not every client's
    if is_websocket_upgrade(request):
        return await proxy_websocket(request, sidecar.upstream, sidecar.trusted)
    tx = receive(sidecar, request)
    if not tx.decision.cached:
        return await pass_through(request, sidecar, tx.head)
    if tx.decision.bypass is not None:
        return await bypass(request, sidecar, tx.rule, tx.decision.bypass)
    return await look_up(tx)


def in_origin_form(request: web.Request, target: Target, authority: str) -> web.Request:
    """RFC 9112 section 3.2.2: an absolute-form target names the host, and the Host header is
    ignored. From here on the request is the origin-form one for that host, so the cache key, the
    Host and X-Forwarded-Host the app sees, and the app's URL all agree on one host."""
    # URL.build, not URL(text): a path such as "//evil/x" must stay a path, not become a host.
    url = URL.build(path=target.raw_path, query_string=target.query or "", encoded=True)
    return request.clone(rel_url=url, host=authority)


def served_host(request: web.Request, authority: str | None) -> str | None:
    """The one host the request is for, normalised (``http.request_head.normalized_host``); None
    for a request the sidecar must refuse: two Host lines, none on HTTP/1.1, or an invalid one
    (RFC 9112 section 3.2)."""
    if authority is not None:
        return normalized_host(authority, request.scheme)
    hosts = request.headers.getall("Host", ())
    if len(hosts) > 1 or (not hosts and request.version >= (1, 1)):
        return None
    return normalized_host(hosts[0] if hosts else request.host, request.scheme)


def head_refused(status: int) -> web.Response:
    """414 or 431 (the fast path answers the same for the heads it reads): the connection closes."""
    return Response(
        status=status,
        text=json.dumps(refusal_body(status)),
        content_type="application/json",
        headers={"Connection": "close"},
    )


def not_found() -> web.Response:
    body = json.dumps({"error": "not found", "status": 404})
    return Response(status=404, text=body, content_type="application/json")


def bad_host() -> web.Response:
    body = json.dumps({"error": "bad host", "status": 400, "detail": "one valid Host header is required"})
    return Response(status=400, text=body, content_type="application/json")


def bad_target(exc: BadTarget) -> web.Response:
    body = json.dumps({"error": "bad request target", "status": 400, "detail": str(exc)})
    return Response(status=400, text=body, content_type="application/json")


def server_options() -> web.Response:
    """``OPTIONS *`` asks about the server, not a resource: the sidecar answers it itself (the
    app's URL cannot carry the asterisk-form target)."""
    return Response(status=200)


def request_head(request: web.Request) -> RequestHead:
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


def receive(sidecar: Sidecar, request: web.Request) -> Transaction:
    head = request_head(request)
    rule = sidecar.rules.match(head.method, head.path)
    honor = sidecar.settings.honor_cache_control
    directives = request_directives(head.headers) if honor else NONE
    decision = decide(head, rule, honor, directives.no_store)
    return Transaction(sidecar, head, rule, decision, request.remote, request, directives)


async def look_up(tx: Transaction) -> web.StreamResponse:
    """lookup -> reuse: a HIT, a stale answer (refreshed in the background), or the miss path."""
    sidecar = tx.sidecar
    tx.key = sidecar.key_for(tx.head)
    tx.found = await lookup(sidecar, tx.key, tx.head)
    entry = tx.entry
    if entry is not None and tx.decision.credentials and not entry.shared_auth:
        tx.found = replace(tx.found, entry=None)  # the app never said this one may answer a user
        entry = None
    if entry is None:
        return await miss(tx)
    now = time.time()
    how = reuse(entry, now, tx.directives)
    if how is Reuse.FRESH:
        if should_refresh_early(entry, now, sidecar.settings.early_refresh_beta):
            refresh_in_background(tx)
        return tx.done("hit", deliver.answer(tx, entry, Kind.HIT))
    if how is Reuse.STALE:
        return tx.done("stale", deliver.answer(tx, entry, Kind.STALE))
    if how is Reuse.STALE_WHILE_REVALIDATE:
        refresh_in_background(tx)
        return tx.done("stale", deliver.answer(tx, entry, Kind.STALE))
    return await miss(tx)


async def miss(tx: Transaction) -> web.StreamResponse:
    """Coalesce with a running fetch of this key, or become the one fetch."""
    if tx.directives.only_if_cached:
        return tx.done("miss", not_cached())
    sidecar = tx.sidecar
    waiting = sidecar.flights.waiting_list(tx.variant_key)
    if waiting is not None:
        sidecar.metrics.coalesced_waiter(tx.route)
        shared = await asyncio.shield(waiting)
        if shared.entry is not None and usable_by(tx, shared.entry):
            return tx.done("miss", deliver.answer(tx, shared.entry, Kind.COLLAPSED))
        if shared.error is not None:
            return answer_failure(tx, shared.error, shared.status)
        return await fetch(tx)
    tx.flight = sidecar.flights.take_off(tx.variant_key)
    # The fetch is its own task: if this request is cancelled (the client hung up and the server
    # cancels handlers), the fetch still completes for the waiters and the store.
    leader = sidecar.keep(lead(tx))
    return await asyncio.shield(leader)


def usable_by(tx: Transaction, entry: Entry) -> bool:
    """Another request's entry answers this one: same variant, and shareable with its user."""
    if tx.decision.credentials and not entry.shared_auth:
        return False
    return entry.matches_vary(dict(request_values([name for name, _ in entry.vary], tx.head.headers)))


def not_cached() -> web.Response:
    """``only-if-cached`` (RFC 9111 section 5.2.1.7) without a usable entry: 504, never a fetch."""
    body = json.dumps({"error": "not cached", "status": 504})
    return Response(status=504, text=body, content_type="application/json")


async def lead(tx: Transaction) -> web.StreamResponse:
    try:
        return await fetch(tx)
    finally:
        tx.share(NOT_SHAREABLE)  # no-op when it landed already


async def fetch(tx: Transaction) -> web.StreamResponse:
    """Ask the app (once per cluster where the store has a lock), stream, store, deliver."""
    sidecar = tx.sidecar
    lock = await acquire_lock(sidecar, tx.variant_key)
    if lock is None:  # another sidecar is fetching this key: wait for its entry
        entry = await wait_for_peer(tx)
    else:  # double-checked: a fetch that ended between our lookup and our lock stored it already
        entry = await fresh_entry(tx)
    if entry is not None and usable_by(tx, entry):
        if lock is not None:
            await sidecar.store.delete(lock)
        tx.share(Shared(entry))
        return tx.done("miss", deliver.answer(tx, entry, Kind.COLLAPSED))
    try:
        return await fetch_and_stream(tx)
    finally:
        if lock is not None:
            await sidecar.store.delete(lock)


async def fetch_and_stream(tx: Transaction) -> web.StreamResponse:
    sidecar = tx.sidecar
    stale = tx.entry
    headers = origin_headers(tx)
    tx.request_time, started = time.time(), time.monotonic()
    try:
        async with sidecar.upstream.request("GET", tx.fetch_target, headers) as upstream:
            tx.response_time, tx.fetch_seconds = time.time(), time.monotonic() - started
            sidecar.metrics.origin_fetch(tx.route, upstream.status, tx.fetch_seconds)
            if upstream.status == 304 and stale is not None:
                return await revalidate(tx, stale, upstream)
            if upstream.status >= 500 and usable_after_error(stale):
                failed = UpstreamUnavailable(f"the app answered {upstream.status}")
                tx.share(Shared(error=failed, status=upstream.status))
                return answer_failure(tx, None, upstream.status)
            return await stream_and_store(tx, upstream)
    except UPSTREAM_ERRORS as exc:
        tx.share(Shared(error=exc))
        return answer_failure(tx, exc, None)


async def revalidate(tx: Transaction, stale: Entry, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    """The app's 304 for the stale entry: the updated entry stored and shared, when it still may be."""
    entry, shareable = revalidated(tx, stale, upstream.headers)
    sidecar = tx.sidecar
    if shareable and await store_entry(sidecar, tx.key, entry):
        tx.share(Shared(entry))
    elif not shareable:
        sidecar.near.drop(tx.key)
        await sidecar.store.delete(tx.variant_key)  # the app no longer lets it be shared
    return tx.done("miss", deliver.answer(tx, entry, Kind.REVALIDATED))


async def stream_and_store(tx: Transaction, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    """Stream the app's answer to the client while keeping it (up to the size limit) for the store.

    The fetch outlives its client: when the client goes away mid-body, reading goes on so the
    entry (and every coalesced waiter) still gets the response.
    """
    sidecar = tx.sidecar
    assert tx.request is not None
    limit = tx.object_limit
    storage = storage_for(tx, upstream.status, upstream.headers)
    length = upstream.content_length
    storable = isinstance(storage, Storage) and (length is None or length <= limit)
    headers = ch.miss_answer(
        upstream.headers, sidecar.settings.tag_header, sidecar.settings.honor_cache_control
    )
    stored_ttl = storage.ttl if storable and isinstance(storage, Storage) else None
    headers.extend(ch.miss_headers(upstream.headers.items(), sidecar.name, upstream.status, stored_ttl))
    response = StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
    client = ClientSink(tx.request, response, tx.head.method == "HEAD")
    await client.start()
    body: bytearray | None = bytearray() if storable else None
    # The last chunk is held back until the entry is stored: a client that has the whole
    # response and asks again at once then finds the entry.
    held = b""
    watch = close_watch(upstream)
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
        return abort_stream(tx.request, response, exc)
    if cut_short(watch):
        return abort_stream(
            tx.request, response, UpstreamUnavailable("the app reset the connection mid-body")
        )
    if body is not None and isinstance(storage, Storage):
        entry = await make_entry(tx, storage, upstream.status, upstream.headers, bytes(body))
        if entry is not None and await store_entry(sidecar, tx.key, entry):
            tx.share(Shared(entry))
    await client.write(held)
    await client.finish()
    return tx.done("miss", response)


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


def answer_failure(tx: Transaction, exc: Exception | None, status: int | None) -> web.StreamResponse:
    """The app failed: the stale entry within its stale-if-error window, else 502/504."""
    entry = tx.entry
    if entry is not None and usable_after_error(entry):
        return tx.done("stale", deliver.answer(tx, entry, Kind.STALE_ERROR, error_status=status))
    failure = exc if exc is not None else UpstreamUnavailable(f"the app answered {status}")
    return tx.done("error", gateway_error(tx.sidecar.upstream.base_url, failure))
