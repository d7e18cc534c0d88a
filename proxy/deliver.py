"""Responses built from a stored entry: HIT, stale, collapsed, revalidated, and 304s.

Every one replays the entry's status, end-to-end headers and exact body bytes, then sets the
sidecar's own X-Cache, X-Cache-TTL, Age and Cache-Status. A request whose validators match the
entry gets a 304 instead of the body.
"""

from __future__ import annotations

import time

from aiohttp import web
from multidict import CIMultiDict

from tina4_sidecar.proxy.http import cache_headers as ch
from tina4_sidecar.proxy.http.conditional import headers_for_304, not_modified
from tina4_sidecar.proxy.http.entry import Entry
from tina4_sidecar.proxy.http.request_head import RequestHead


def from_entry(
    head: RequestHead,
    entry: Entry,
    *,
    x_cache: str,
    x_cache_ttl: int,
    cache_status: str,
    age: bool = True,
) -> web.Response:
    """The entry as a response (or a 304 when the client's copy is current)."""
    now = time.time()
    if entry.status == 200 and not_modified(
        head.headers, entry.header("ETag"), entry.header("Last-Modified")
    ):
        headers = CIMultiDict(headers_for_304(entry.headers))
        status, body = 304, b""
    else:
        headers = CIMultiDict(entry.headers)
        status, body = entry.status, entry.body
    headers["X-Cache"] = x_cache
    headers["X-Cache-TTL"] = str(x_cache_ttl)
    if age:
        headers["Age"] = str(entry.age(now))
    headers["Cache-Status"] = ch.append_member(headers.get("Cache-Status"), cache_status)
    response = web.Response(status=status, headers=headers)
    # aiohttp sends no body for HEAD but keeps this Content-Length: the GET entry's length.
    response.body = body
    return response


def hit(head: RequestHead, entry: Entry, name: str) -> web.Response:
    remaining = max(0, entry.remaining(time.time()))
    return from_entry(
        head, entry, x_cache=ch.HIT, x_cache_ttl=remaining, cache_status=ch.cache_status_hit(name, remaining)
    )


def stale(
    head: RequestHead, entry: Entry, name: str, *, error_status: int | None, after_error: bool
) -> web.Response:
    """An expired entry: within stale-while-revalidate (``hit; ttl=-N``) or served because the app
    failed (``fwd=stale; ttl=-N``)."""
    overdue = entry.remaining(time.time())
    member = (
        f"{ch.cache_status_fwd(name, 'stale', fwd_status=error_status)}; ttl={overdue}"
        if after_error
        else ch.cache_status_hit(name, overdue)
    )
    return from_entry(head, entry, x_cache=ch.HIT, x_cache_ttl=0, cache_status=member)


def collapsed(head: RequestHead, entry: Entry, name: str) -> web.Response:
    """A waiter answered by another request's fetch: the app ran once for both."""
    member = ch.cache_status_fwd(name, "uri-miss", fwd_status=entry.status, collapsed=True)
    return from_entry(head, entry, x_cache=ch.MISS, x_cache_ttl=entry.ttl, cache_status=member, age=False)


def revalidated(head: RequestHead, entry: Entry, name: str) -> web.Response:
    """A stale entry the app confirmed with a 304."""
    member = ch.cache_status_fwd(name, "stale", fwd_status=304, stored=True)
    return from_entry(head, entry, x_cache=ch.MISS, x_cache_ttl=entry.ttl, cache_status=member, age=False)
