"""Fetching for the cache: what the app is asked, and the entry built from its answer.

A cacheable fetch is always a GET (a HEAD is filled from the GET), carries the normalised
Accept-Encoding its variant is keyed by, never carries the client's own conditional headers
(the cache needs the whole body), and carries the stale entry's validators instead, so an
unchanged resource comes back as a cheap 304. What is stored, and for how long, is
``http.storage``'s decision; this module turns it into an ``Entry`` and writes it.
"""

from __future__ import annotations

import time
from dataclasses import replace
from email.utils import formatdate

from multidict import CIMultiDict, CIMultiDictProxy

from tina4_sidecar.proxy.http import cache_headers as ch
from tina4_sidecar.proxy.http import fields
from tina4_sidecar.proxy.http.conditional import body_etag, freshened
from tina4_sidecar.proxy.http.entry import Entry
from tina4_sidecar.proxy.http.forward_headers import end_to_end, fill_request
from tina4_sidecar.proxy.http.freshness import jittered, storage_ttl
from tina4_sidecar.proxy.http.storage import Exchange, Storage, decide
from tina4_sidecar.proxy.http.variants import (
    encode_index,
    normalize_accept_encoding,
    request_values,
    variant_key,
)
from tina4_sidecar.proxy.sidecar import Sidecar
from tina4_sidecar.proxy.transaction import Transaction
from tina4_sidecar.store.invalidation import read_tokens
from tina4_sidecar.store.response_key import TAG_EPOCH, tag_scope


def origin_headers(tx: Transaction) -> CIMultiDict[str]:
    head = tx.head
    stale = tx.entry
    validators = (
        (stale.header("ETag"), stale.header("Last-Modified"))
        if stale and stale.status == 200
        else (None, None)
    )
    accept_encoding = normalize_accept_encoding(", ".join(fields.lines(head.headers, "Accept-Encoding")))
    return fill_request(
        _proxy(head.headers),
        tx.client_ip,
        head.scheme,
        head.host,
        tx.sidecar.trusted,
        accept_encoding,
        validators,
    )


def _proxy(headers: object) -> CIMultiDictProxy[str]:
    if isinstance(headers, CIMultiDictProxy):
        return headers
    return CIMultiDictProxy(CIMultiDict(headers))  # type: ignore[arg-type]


def storage_for(tx: Transaction, status: int, headers: fields.Headers) -> Storage | str:
    """The storage decision for the app's answer to this transaction's fetch."""
    settings = tx.sidecar.settings
    exchange = Exchange("GET", tx.head.headers, status, headers, tx.request_time, tx.response_time)
    storage = decide(
        exchange,
        tx.rule,
        settings.honor_cache_control,
        settings.stale_while_revalidate,
        settings.stale_if_error,
    )
    if isinstance(storage, Storage) and storage.rule_ttl:
        storage = _with_ttl(storage, jittered(storage.ttl, settings.ttl_jitter))
    return storage


def _with_ttl(storage: Storage, ttl: int) -> Storage:
    return replace(storage, ttl=ttl)


def response_vary_names(headers: fields.Headers) -> list[str]:
    names = fields.vary(headers)
    if fields.has(headers, "Content-Encoding") and "accept-encoding" not in names:
        # A compressed body without Vary must still only reach clients that accept it.
        names.append("accept-encoding")
    return sorted(set(names))


def stored_headers(
    sidecar: Sidecar, upstream_headers: fields.Headers, body: bytes | None
) -> CIMultiDict[str]:
    """The end-to-end headers an entry keeps: without the cache's own, the tag header and what is
    meant for the surrogate only, with a ``Date`` (the app's, else now) and, for a 200, an ETag."""
    headers = end_to_end(
        _proxy(upstream_headers), drop=(*ch.OWN_HEADERS, *ch.SURROGATE_ONLY, sidecar.settings.tag_header)
    )
    if "Date" not in headers:
        headers["Date"] = formatdate(usegmt=True)
    if body is not None and "ETag" not in headers:
        headers["ETag"] = body_etag(body)
    return headers


def entry_tags(tx: Transaction, upstream_headers: fields.Headers) -> tuple[str, ...]:
    """The tags an entry of this answer is purged by: the rule's, and the app's tag header's."""
    rule_tags = tx.rule.tags if tx.rule is not None else ()
    header = ", ".join(fields.lines(upstream_headers, tx.sidecar.settings.tag_header))
    return (*rule_tags, *header_tags(header))


def untagged_entry(
    tx: Transaction, storage: Storage, status: int, upstream_headers: fields.Headers, body: bytes
) -> Entry:
    """The entry of an answer without tags: it records the tokens the lookup read (no store read)."""
    return _entry(tx, storage, status, upstream_headers, body, {})


async def make_entry(
    tx: Transaction, storage: Storage, status: int, upstream_headers: fields.Headers, body: bytes
) -> Entry | None:
    """The entry to store, or None when a tag purge ran while the app was answering."""
    tags = entry_tags(tx, upstream_headers)
    if not tags:
        return untagged_entry(tx, storage, status, upstream_headers, body)
    tokens = tx.found.tokens if tx.found is not None else {}
    tag_scopes = [tag_scope(tag) for tag in dict.fromkeys(tags)]
    current = await read_tokens(tx.sidecar.store, [*tag_scopes, TAG_EPOCH])
    if current[TAG_EPOCH] != tokens.get(TAG_EPOCH):
        return None
    return _entry(tx, storage, status, upstream_headers, body, {name: current[name] for name in tag_scopes})


def _entry(
    tx: Transaction,
    storage: Storage,
    status: int,
    upstream_headers: fields.Headers,
    body: bytes,
    tag_tokens: dict[str, str | None],
) -> Entry:
    tokens = tx.found.tokens if tx.found is not None else {}
    recorded = {name: token for name, token in tokens.items() if name != TAG_EPOCH} | tag_tokens
    headers = stored_headers(tx.sidecar, upstream_headers, body if status == 200 else None)
    return entry_from(tx, storage, status, tuple(headers.items()), body, tuple(recorded.items()))


def entry_from(
    tx: Transaction,
    storage: Storage,
    status: int,
    headers: tuple[tuple[str, str], ...],
    body: bytes,
    tokens: tuple[tuple[str, str | None], ...],
) -> Entry:
    return Entry(
        status=status,
        headers=headers,
        body=body,
        stored_at=time.time(),
        ttl=storage.ttl,
        vary=request_values(response_vary_names(headers), tx.head.headers),
        tokens=tokens,
        stale_while_revalidate=storage.stale_while_revalidate,
        stale_if_error=storage.stale_if_error,
        fetch_seconds=tx.fetch_seconds,
        initial_age=storage.initial_age,
        revalidate=storage.revalidate,
        no_stale=storage.no_stale,
        shared_auth=storage.shared_auth,
    )


def revalidated(tx: Transaction, stale: Entry, not_modified: fields.Headers) -> tuple[Entry, bool]:
    """The stale entry updated by the app's 304 (RFC 9111 section 4.3.4), and whether it may be
    stored and shared again: the 304's headers go through the storability rules like a fresh
    answer's, so a 304 that sets a cookie or turns the response private is answered to its
    own client only, and never merged into the shared entry."""
    update = end_to_end(_proxy(not_modified), drop=(*ch.OWN_HEADERS, *ch.SURROGATE_ONLY))
    merged = freshened(stale.headers, update.items())
    storage = storage_for(tx, stale.status, merged)
    if not isinstance(storage, Storage):
        answer = Entry(stale.status, tuple(merged), stale.body, time.time(), 0, vary=stale.vary)
        return answer, False
    kept = tuple((name, value) for name, value in merged if name.lower() != "set-cookie")
    return entry_from(tx, storage, stale.status, kept, stale.body, stale.tokens), True


async def store_entry(sidecar: Sidecar, primary: str, entry: Entry, near_has_it: bool = False) -> bool:
    """Write the entry (and, for a varying response, the URL's vary index). The near cache's copy
    of the key is dropped first, unless ``near_has_it`` (a fast-path fill put this entry there)."""
    if not near_has_it:
        sidecar.near.drop(primary)
    ttl = storage_ttl(entry)
    names = [name for name, _ in entry.vary]
    if not names:
        return await sidecar.store.set(primary, entry.encode(), ttl)
    await sidecar.store.set(primary, encode_index(names), ttl)
    return await sidecar.store.set(variant_key(primary, entry.vary), entry.encode(), ttl)


def header_tags(value: str) -> tuple[str, ...]:
    """Tags the app named in its tag header: comma or space separated."""
    return tuple(tag for tag in value.replace(",", " ").split() if tag)
