"""The request's way through the sidecar, one small function per step (Varnish-style).

    receive -> decide (rule? cacheable request?) -> lookup
        -> fresh:                  deliver HIT (and maybe refresh early, in the background)
        -> stale-while-revalidate: deliver stale, refresh once in the background
        -> miss (or stale):        wait for a running fetch of the same key (coalesce), or
                                   fetch (holding the store lock) -> storable? -> store while
                                   streaming -> deliver; the app failing -> deliver stale-if-error

Requests that no cached rule covers are forwarded untouched (``pass_through``); requests on a
cached route that must not share a cache entry (cookies, credentials) are forwarded and marked
(``bypass``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from tina4_sidecar.config.rules import Rule
from tina4_sidecar.proxy import cache_headers as ch
from tina4_sidecar.proxy import deliver
from tina4_sidecar.proxy.admin import handle_admin
from tina4_sidecar.proxy.cacheability import CACHEABLE_METHODS, bypass_reason, unstorable_reason
from tina4_sidecar.proxy.entry import Entry, EntryError
from tina4_sidecar.proxy.errors import gateway_error
from tina4_sidecar.proxy.flights import NOT_SHAREABLE, Shared
from tina4_sidecar.proxy.forward_headers import end_to_end, to_upstream
from tina4_sidecar.proxy.freshness import State, should_refresh_early, state_of
from tina4_sidecar.proxy.origin import make_entry, origin_headers, revalidated, store_entry
from tina4_sidecar.proxy.request_head import RequestHead
from tina4_sidecar.proxy.sidecar import Sidecar
from tina4_sidecar.proxy.upstream import UpstreamTimeout, UpstreamUnavailable
from tina4_sidecar.proxy.variants import decode_index, request_values, variant_key
from tina4_sidecar.proxy.websocket import is_websocket_upgrade, proxy_websocket
from tina4_sidecar.store.invalidation import read_tokens, still_valid, tokens_from
from tina4_sidecar.store.response_key import lookup_scopes

log = logging.getLogger("tina4_sidecar.proxy")

CHUNK = 64 * 1024
STREAM_ERRORS = (aiohttp.ClientError, ConnectionError, TimeoutError)
UPSTREAM_ERRORS = (UpstreamUnavailable, UpstreamTimeout)
LOCK_PREFIX = "~lock:"


async def handle(sidecar: Sidecar, request: web.Request) -> web.StreamResponse:
    """receive: every request of every method enters here."""
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


@dataclass(slots=True)
class Lookup:
    """What one lookup read: the URL's primary key, the key its variant lives under, the entry
    there (fresh or stale, never purged) and the invalidation tokens read with it."""

    primary: str
    key: str
    entry: Entry | None
    tokens: dict[str, str | None]


async def lookup(sidecar: Sidecar, primary: str, head: RequestHead) -> Lookup:
    scopes = lookup_scopes(head.raw_path, sidecar.query_filter.canonical(head.query))
    raw, *values = await sidecar.store.get_many([primary, *scopes])
    tokens = tokens_from(values, scopes)
    key = primary
    names = decode_index(raw) if raw is not None else None
    if names is not None:  # a varying URL: its variants live under their own keys
        key = variant_key(primary, request_values(names, head.headers))
        raw = await sidecar.store.get(key)
    entry = _decode(raw, key)
    if entry is None or not entry.matches_vary(
        dict(request_values([n for n, _ in entry.vary], head.headers))
    ):
        return Lookup(primary, key, None, tokens)
    recorded = dict(entry.tokens)
    unread = [name for name in recorded if name not in tokens]
    current = {**tokens, **(await read_tokens(sidecar.store, unread))} if unread else tokens
    if not still_valid(recorded, current):
        return Lookup(primary, key, None, tokens)
    return Lookup(primary, key, entry, tokens)


def _decode(raw: bytes | None, key: str) -> Entry | None:
    if raw is None:
        return None
    try:
        return Entry.decode(raw)
    except EntryError as exc:
        log.warning("unreadable cache entry for %s: %s", key, exc)
        return None


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
            return answer_failure(sidecar, head, rule, found, shared.error, None, started)
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
                share(Shared(error=UpstreamUnavailable(f"the app answered {upstream.status}")))
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


async def acquire_lock(sidecar: Sidecar, key: str) -> str | None:
    """The store lock on ``key``'s fetch, so one sidecar of several sharing a store asks the app.

    The memory store is one process's own: there the in-process waiting list is the lock. A store
    that cannot take a lock (failing) must not stop the fetch: the lock counts as ours."""
    lock = LOCK_PREFIX + key
    if sidecar.store.backend_name == "memory":
        return lock
    seconds = math.ceil(sidecar.settings.lock_seconds)
    if await sidecar.store.add(lock, secrets.token_hex(8).encode(), seconds):
        return lock
    return None if await sidecar.store.get(lock) is not None else lock


async def fresh_entry(sidecar: Sidecar, head: RequestHead, found: Lookup) -> Entry | None:
    """The key's entry if it is fresh now (another fetch may have stored it since ``found``)."""
    again = await lookup(sidecar, found.primary, head)
    return (
        again.entry if again.entry is not None and state_of(again.entry, time.time()) is State.FRESH else None
    )


async def wait_for_peer(sidecar: Sidecar, head: RequestHead, found: Lookup) -> Entry | None:
    """Another sidecar holds the lock: poll the store for its entry until the lock goes away."""
    deadline = time.monotonic() + sidecar.settings.lock_seconds
    delay = 0.005
    lock = LOCK_PREFIX + found.key
    while time.monotonic() < deadline:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)
        entry = await fresh_entry(sidecar, head, found)
        if entry is not None:
            return entry
        if await sidecar.store.get(lock) is None:
            return await fresh_entry(sidecar, head, found)
    return None


def refresh_in_background(
    request: web.Request, sidecar: Sidecar, head: RequestHead, rule: Rule, found: Lookup
) -> None:
    """One background fetch for this key (SWR or early refresh); it outlives the request."""
    if sidecar.flights.in_flight(found.key):
        return
    headers = origin_headers(request.headers, request.remote, head, found.entry)
    flight = sidecar.flights.take_off(found.key)
    sidecar.keep(refresh(sidecar, head, rule, found, request.raw_path, headers, flight))


async def refresh(
    sidecar: Sidecar,
    head: RequestHead,
    rule: Rule,
    found: Lookup,
    raw_path: str,
    headers: CIMultiDict[str],
    flight: asyncio.Future[Shared],
) -> None:
    outcome = NOT_SHAREABLE
    lock = await acquire_lock(sidecar, found.key)
    try:
        if lock is None:
            return  # another sidecar refreshes it
        outcome = await refetch(sidecar, head, rule, found, raw_path, headers)
    except Exception as exc:  # a refresh must never take the sidecar down; the stale entry stays
        log.warning("background refresh of %s failed: %s", raw_path, exc or type(exc).__name__)
    finally:
        sidecar.flights.land(found.key, flight, outcome)
        if lock is not None:
            await sidecar.store.delete(lock)


async def refetch(
    sidecar: Sidecar, head: RequestHead, rule: Rule, found: Lookup, raw_path: str, headers: CIMultiDict[str]
) -> Shared:
    limit = rule.max_bytes if rule.max_bytes is not None else sidecar.settings.max_object_bytes
    fetch_started = time.monotonic()
    try:
        async with sidecar.upstream.request("GET", raw_path, headers) as upstream:
            seconds = time.monotonic() - fetch_started
            sidecar.metrics.origin_fetch(rule.path, upstream.status, seconds)
            if upstream.status == 304 and found.entry is not None:
                entry: Entry | None = revalidated(found.entry, upstream.headers, seconds)
            elif unstorable_reason(upstream.status, upstream.headers, rule) is None:
                body = await upstream.content.read(limit + 1)
                if len(body) > limit:
                    return NOT_SHAREABLE
                entry = await make_entry(
                    sidecar, head, rule, upstream.status, upstream.headers, body, found.tokens, seconds
                )
            else:
                return NOT_SHAREABLE
    except UPSTREAM_ERRORS as exc:
        return Shared(error=exc)
    if entry is None or not await store_entry(sidecar, found.primary, entry):
        return NOT_SHAREABLE
    return Shared(entry)


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
