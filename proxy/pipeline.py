"""The request's way through the sidecar, one small function per step (Varnish-style).

    receive -> decide (rule? cacheable request?) -> lookup
        -> hit:  deliver
        -> miss: fetch -> storable? -> store while streaming -> deliver

Requests that no cached rule covers are forwarded untouched (``pass_through``); requests on a
cached route that must not share a cache entry (cookies, credentials) are forwarded and marked
(``bypass``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from tina4_sidecar.config.rules import Rule
from tina4_sidecar.proxy import cache_headers as ch
from tina4_sidecar.proxy.cacheability import CACHEABLE_METHODS, bypass_reason, unstorable_reason, vary_names
from tina4_sidecar.proxy.entry import Entry, EntryError
from tina4_sidecar.proxy.errors import gateway_error
from tina4_sidecar.proxy.forward_headers import end_to_end, to_upstream
from tina4_sidecar.proxy.request_head import RequestHead
from tina4_sidecar.proxy.sidecar import Sidecar
from tina4_sidecar.proxy.upstream import UpstreamTimeout, UpstreamUnavailable
from tina4_sidecar.proxy.websocket import is_websocket_upgrade, proxy_websocket
from tina4_sidecar.store.invalidation import read_tokens, still_valid, tokens_from
from tina4_sidecar.store.response_key import TAG_EPOCH, lookup_scopes, tag_scope

log = logging.getLogger("tina4_sidecar.proxy")

CHUNK = 64 * 1024
STREAM_ERRORS = (aiohttp.ClientError, ConnectionError, TimeoutError)


async def handle(sidecar: Sidecar, request: web.Request) -> web.StreamResponse:
    """receive: every request of every method enters here."""
    if is_websocket_upgrade(request):
        return await proxy_websocket(request, sidecar.upstream)
    head = receive(request)
    rule = sidecar.rules.match(head.method, head.path)
    if rule is None or not rule.cache or rule.ttl <= 0 or head.method not in CACHEABLE_METHODS:
        return await pass_through(request, sidecar, head)
    reason = bypass_reason(head, rule)
    if reason is not None:
        return await bypass(request, sidecar, reason)
    key = sidecar.key_for(head)
    found = await lookup(sidecar, key, head)
    if found.entry is not None:
        return deliver_hit(request, sidecar, found.entry)
    return await fetch_and_store(request, sidecar, head, rule, key, found.tokens)


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
    """What a lookup read in its one round trip: the entry (if fresh and valid) and the tokens."""

    entry: Entry | None
    tokens: dict[str, str | None]


async def lookup(sidecar: Sidecar, key: str, head: RequestHead) -> Lookup:
    """The fresh, unpurged entry for this request's variant, and the invalidation tokens."""
    scopes = lookup_scopes(head.raw_path, sidecar.query_filter.canonical(head.query))
    raw, *values = await sidecar.store.get_many([key, *scopes])
    tokens = tokens_from(values, scopes)
    if raw is None:
        return Lookup(None, tokens)
    try:
        entry = Entry.decode(raw)
    except EntryError as exc:
        log.warning("unreadable cache entry for %s: %s", key, exc)
        return Lookup(None, tokens)
    if not entry.is_fresh(time.time()):
        return Lookup(None, tokens)
    if not entry.matches_vary({name: head.header(name) for name, _ in entry.vary}):
        return Lookup(None, tokens)
    recorded = dict(entry.tokens)
    unread = [name for name in recorded if name not in tokens]
    current = {**tokens, **(await read_tokens(sidecar.store, unread))} if unread else tokens
    if not still_valid(recorded, current):
        return Lookup(None, tokens)
    return Lookup(entry, tokens)


def deliver_hit(request: web.Request, sidecar: Sidecar, entry: Entry) -> web.Response:
    now = time.time()
    remaining = max(0, entry.remaining(now))
    headers = CIMultiDict(entry.headers)
    headers["X-Cache"] = ch.HIT
    headers["X-Cache-TTL"] = str(remaining)
    headers["Age"] = str(entry.age(now))
    headers["Cache-Status"] = ch.append_member(
        headers.get("Cache-Status"), ch.cache_status_hit(sidecar.settings.cache_status_name, remaining)
    )
    response = web.Response(status=entry.status, headers=headers)
    # aiohttp sends no body for HEAD but keeps this Content-Length: the GET entry's length.
    response.body = entry.body
    return response


async def fetch_and_store(
    request: web.Request,
    sidecar: Sidecar,
    head: RequestHead,
    rule: Rule,
    key: str,
    tokens: dict[str, str | None],
) -> web.StreamResponse:
    """miss: fetch from the app (HEAD as GET, to fill the entry), stream it out, store it."""
    limit = sidecar.settings.max_object_bytes
    upstream_headers = to_upstream(request.headers, request.remote, head.scheme, head.host)
    try:
        async with sidecar.upstream.request("GET", request.raw_path, upstream_headers) as upstream:
            headers = end_to_end(upstream.headers, drop=(*ch.OWN_HEADERS, sidecar.settings.tag_header))
            reason = unstorable_reason(upstream.status, upstream.headers, rule)
            too_big = upstream.content_length is not None and upstream.content_length > limit
            storable = reason is None and not too_big
            headers["X-Cache"] = ch.MISS
            if storable:
                headers["X-Cache-TTL"] = str(rule.ttl)
            headers["Cache-Status"] = ch.append_member(
                headers.get("Cache-Status"),
                ch.cache_status_fwd(
                    sidecar.settings.cache_status_name,
                    "uri-miss",
                    fwd_status=upstream.status,
                    stored=storable,
                ),
            )
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
            await response.prepare(request)
            body: bytearray | None = bytearray() if storable else None
            try:
                async for chunk in upstream.content.iter_chunked(CHUNK):
                    if body is not None:
                        body += chunk
                        if len(body) > limit:
                            body = None  # streamed through, not stored
                    if head.method != "HEAD":
                        await response.write(chunk)
            except STREAM_ERRORS as exc:
                return abort_stream(request, response, exc)
            if body is not None:
                tags = (*rule.tags, *header_tags(upstream.headers.get(sidecar.settings.tag_header, "")))
                await store(
                    sidecar, key, head, upstream.status, upstream.headers, bytes(body), rule.ttl, tokens, tags
                )
            await response.write_eof()
            return response
    except (UpstreamUnavailable, UpstreamTimeout) as exc:
        return gateway_error(sidecar.upstream.base_url, exc)


async def store(
    sidecar: Sidecar,
    key: str,
    head: RequestHead,
    status: int,
    upstream_headers: CIMultiDictProxy[str],
    body: bytes,
    ttl: int,
    tokens: dict[str, str | None],
    tags: tuple[str, ...],
) -> None:
    """Store the entry with the tokens read before the fetch (and those of its tags)."""
    recorded = {name: token for name, token in tokens.items() if name != TAG_EPOCH}
    if tags:
        tag_scopes = [tag_scope(tag) for tag in dict.fromkeys(tags)]
        now = await read_tokens(sidecar.store, [*tag_scopes, TAG_EPOCH])
        if now[TAG_EPOCH] != tokens.get(TAG_EPOCH):
            return  # a tag purge ran while the app was answering: this body may be stale already
        recorded.update((name, now[name]) for name in tag_scopes)
    headers = end_to_end(upstream_headers, drop=(*ch.OWN_HEADERS, sidecar.settings.tag_header))
    names = vary_names(headers)
    if "Content-Encoding" in headers and "accept-encoding" not in names:
        # A compressed body without Vary must still only reach clients that accept it.
        names.append("accept-encoding")
    entry = Entry(
        status=status,
        headers=tuple(headers.items()),
        body=body,
        stored_at=time.time(),
        ttl=ttl,
        vary=tuple((name, head.header(name)) for name in names),
        tokens=tuple(recorded.items()),
    )
    await sidecar.store.set(key, entry.encode(), ttl)


async def bypass(request: web.Request, sidecar: Sidecar, reason: str) -> web.StreamResponse:
    """A cached route that this request must not share: forwarded, marked, never stored."""
    member = ch.cache_status_fwd(sidecar.settings.cache_status_name, "bypass", detail=reason)
    return await forward(request, sidecar, {"X-Cache": ch.MISS}, member)


async def pass_through(request: web.Request, sidecar: Sidecar, head: RequestHead) -> web.StreamResponse:
    """No cached rule: forwarded untouched, both ways streamed."""
    response = await forward(request, sidecar, None, None)
    if head.method not in CACHEABLE_METHODS and response.status < 400:
        await invalidate_after_write(sidecar, head)
    return response


async def invalidate_after_write(sidecar: Sidecar, head: RequestHead) -> None:
    """RFC 9111 section 4.4: a successful unsafe request invalidates the GET entry of its URL."""
    rule = sidecar.rules.match("GET", head.path)
    if rule is not None and rule.cache:
        await sidecar.store.delete(sidecar.key_for(replace(head, method="GET")))


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
    except (UpstreamUnavailable, UpstreamTimeout) as exc:
        return gateway_error(sidecar.upstream.base_url, exc)


def header_tags(value: str) -> tuple[str, ...]:
    """Tags the app named in its tag header: comma or space separated."""
    return tuple(tag for tag in value.replace(",", " ").split() if tag)


def abort_stream(
    request: web.Request, response: web.StreamResponse, exc: BaseException
) -> web.StreamResponse:
    """The body broke off after the headers went out: close the connection so the client sees
    a truncated response rather than a complete-looking wrong one. Nothing is stored."""
    log.warning("stream of %s %s broke off: %s", request.method, request.path, exc or type(exc).__name__)
    if request.transport is not None:
        request.transport.close()
    return response
