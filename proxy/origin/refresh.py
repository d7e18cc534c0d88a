"""Background refreshes (stale-while-revalidate, early refresh): one per key, outliving the request.

A refresh is the miss path's fetch and store without a client: the same request for the app
(``fetch.origin_headers``), the same storage decision and the same 304 handling, on a copy of
the transaction that triggered it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from tina4_sidecar.proxy.cluster_lock import acquire_lock
from tina4_sidecar.proxy.flights import NOT_SHAREABLE, Shared
from tina4_sidecar.proxy.http.entry import Entry
from tina4_sidecar.proxy.http.storage import Storage
from tina4_sidecar.proxy.origin.fetch import make_entry, origin_headers, revalidated, storage_for, store_entry
from tina4_sidecar.proxy.origin.upstream import UPSTREAM_ERRORS, close_watch, cut_short
from tina4_sidecar.proxy.transaction import Transaction

log = logging.getLogger("tina4_sidecar.proxy")


def refresh_in_background(tx: Transaction) -> None:
    """One background fetch for this key (SWR or early refresh); it outlives the request."""
    sidecar = tx.sidecar
    if sidecar.flights.in_flight(tx.variant_key):
        return
    background = replace(tx, request=None, started=time.monotonic())
    background.flight = sidecar.flights.take_off(tx.variant_key)
    sidecar.keep(refresh(background, tx.fetch_target))


async def refresh(tx: Transaction, raw_target: str) -> None:
    sidecar = tx.sidecar
    outcome = NOT_SHAREABLE
    lock = await acquire_lock(sidecar, tx.variant_key)
    try:
        if lock is None:
            return  # another sidecar refreshes it
        outcome = await refetch(tx, raw_target)
    except Exception as exc:  # a refresh must never take the sidecar down; the stale entry stays
        log.warning("background refresh of %s failed: %s", raw_target, exc or type(exc).__name__)
    finally:
        tx.share(outcome)
        if lock is not None:
            await sidecar.store.delete(lock)


async def refetch(tx: Transaction, raw_target: str) -> Shared:
    sidecar = tx.sidecar
    limit = tx.object_limit
    headers = origin_headers(tx)
    tx.request_time, started = time.time(), time.monotonic()
    try:
        async with sidecar.upstream.request("GET", raw_target, headers) as upstream:
            tx.response_time, tx.fetch_seconds = time.time(), time.monotonic() - started
            sidecar.metrics.origin_fetch(tx.route, upstream.status, tx.fetch_seconds)
            stale = tx.entry
            entry: Entry | None
            if upstream.status == 304 and stale is not None:
                entry, shareable = revalidated(tx, stale, upstream.headers)
                if not shareable:
                    return NOT_SHAREABLE
            else:
                storage = storage_for(tx, upstream.status, upstream.headers)
                if not isinstance(storage, Storage):
                    return NOT_SHAREABLE
                watch = close_watch(upstream)
                body = await upstream.content.read(limit + 1)
                if len(body) > limit or cut_short(watch):
                    return NOT_SHAREABLE
                entry = await make_entry(tx, storage, upstream.status, upstream.headers, body)
    except UPSTREAM_ERRORS as exc:
        return Shared(error=exc)
    if entry is None or not await store_entry(sidecar, tx.key, entry):
        return NOT_SHAREABLE
    return Shared(entry)
