"""Background refreshes (stale-while-revalidate, early refresh): one per key, outliving the request."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from multidict import CIMultiDict

from tina4_sidecar.config.rules import Rule
from tina4_sidecar.proxy.cluster_lock import acquire_lock
from tina4_sidecar.proxy.flights import NOT_SHAREABLE, Shared
from tina4_sidecar.proxy.http.cacheability import unstorable_reason
from tina4_sidecar.proxy.http.entry import Entry
from tina4_sidecar.proxy.http.request_head import RequestHead
from tina4_sidecar.proxy.lookup import Lookup
from tina4_sidecar.proxy.origin.fetch import make_entry, origin_headers, revalidated, store_entry
from tina4_sidecar.proxy.origin.upstream import UPSTREAM_ERRORS
from tina4_sidecar.proxy.sidecar import Sidecar

log = logging.getLogger("tina4_sidecar.proxy")


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
