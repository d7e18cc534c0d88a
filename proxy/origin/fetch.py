"""Fetching for the cache: what the app is asked, and the entry built from its answer.

A cacheable fetch is always a GET (a HEAD is filled from the GET), carries the normalised
Accept-Encoding its variant is keyed by, never carries the client's own conditional headers
(the cache needs the whole body), and carries the stale entry's validators instead, so an
unchanged resource comes back as a cheap 304.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from multidict import CIMultiDict, CIMultiDictProxy

from tina4_sidecar.config.rules import Rule
from tina4_sidecar.proxy.http import cache_headers as ch
from tina4_sidecar.proxy.http.cacheability import vary_names
from tina4_sidecar.proxy.http.conditional import CLIENT_CONDITIONALS, body_etag
from tina4_sidecar.proxy.http.entry import Entry
from tina4_sidecar.proxy.http.forward_headers import end_to_end, to_upstream
from tina4_sidecar.proxy.http.freshness import jittered, stale_windows, storage_ttl
from tina4_sidecar.proxy.http.request_head import RequestHead
from tina4_sidecar.proxy.http.variants import (
    encode_index,
    normalize_accept_encoding,
    request_values,
    variant_key,
)
from tina4_sidecar.proxy.sidecar import Sidecar
from tina4_sidecar.store.invalidation import read_tokens
from tina4_sidecar.store.response_key import TAG_EPOCH, tag_scope

# Never replayed from a 304 onto the stored response (RFC 9111 section 3.2).
_NOT_UPDATED_BY_304 = frozenset({"content-length", "content-encoding", "transfer-encoding", "content-range"})


def origin_headers(
    headers: CIMultiDictProxy[str], client_ip: str | None, head: RequestHead, stale: Entry | None
) -> CIMultiDict[str]:
    out = to_upstream(headers, client_ip, head.scheme, head.host)
    for name in CLIENT_CONDITIONALS:
        out.popall(name, None)
    out["Accept-Encoding"] = normalize_accept_encoding(head.header("Accept-Encoding"))
    if stale is not None and stale.status == 200:
        etag, modified = stale.header("ETag"), stale.header("Last-Modified")
        if etag is not None:
            out["If-None-Match"] = etag
        elif modified is not None:
            out["If-Modified-Since"] = modified
    return out


def response_vary_names(headers: Mapping[str, str]) -> list[str]:
    names = vary_names(headers)
    if "Content-Encoding" in headers and "accept-encoding" not in names:
        # A compressed body without Vary must still only reach clients that accept it.
        names.append("accept-encoding")
    return sorted(set(names))


async def make_entry(
    sidecar: Sidecar,
    head: RequestHead,
    rule: Rule,
    status: int,
    upstream_headers: CIMultiDictProxy[str],
    body: bytes,
    tokens: Mapping[str, str | None],
    fetch_seconds: float,
) -> Entry | None:
    """The entry to store, or None when a tag purge ran while the app was answering."""
    settings = sidecar.settings
    recorded = {name: token for name, token in tokens.items() if name != TAG_EPOCH}
    tags = (*rule.tags, *header_tags(upstream_headers.get(settings.tag_header, "")))
    if tags:
        tag_scopes = [tag_scope(tag) for tag in dict.fromkeys(tags)]
        current = await read_tokens(sidecar.store, [*tag_scopes, TAG_EPOCH])
        if current[TAG_EPOCH] != tokens.get(TAG_EPOCH):
            return None
        recorded.update((name, current[name]) for name in tag_scopes)
    headers = end_to_end(upstream_headers, drop=(*ch.OWN_HEADERS, settings.tag_header))
    if status == 200 and "ETag" not in headers:
        headers["ETag"] = body_etag(body)
    swr, sie = stale_windows(
        upstream_headers,
        settings.stale_while_revalidate
        if rule.stale_while_revalidate is None
        else rule.stale_while_revalidate,
        settings.stale_if_error if rule.stale_if_error is None else rule.stale_if_error,
    )
    return Entry(
        status=status,
        headers=tuple(headers.items()),
        body=body,
        stored_at=time.time(),
        ttl=jittered(rule.ttl, settings.ttl_jitter),
        vary=request_values(response_vary_names(upstream_headers), head.headers),
        tokens=tuple(recorded.items()),
        stale_while_revalidate=swr,
        stale_if_error=sie,
        fetch_seconds=fetch_seconds,
    )


def revalidated(stale: Entry, not_modified_headers: CIMultiDictProxy[str], fetch_seconds: float) -> Entry:
    """The stale entry made fresh by a 304, with the 304's updated headers (RFC 9111 4.3.4)."""
    updates = end_to_end(not_modified_headers, drop=ch.OWN_HEADERS)
    names = {name.lower() for name in updates} - _NOT_UPDATED_BY_304
    kept = [(name, value) for name, value in stale.headers if name.lower() not in names]
    fresh = [(name, value) for name, value in updates.items() if name.lower() in names]
    return Entry(
        status=stale.status,
        headers=(*kept, *fresh),
        body=stale.body,
        stored_at=time.time(),
        ttl=stale.ttl,
        vary=stale.vary,
        tokens=stale.tokens,
        stale_while_revalidate=stale.stale_while_revalidate,
        stale_if_error=stale.stale_if_error,
        fetch_seconds=fetch_seconds,
    )


async def store_entry(sidecar: Sidecar, primary: str, entry: Entry) -> bool:
    """Write the entry (and, for a varying response, the URL's vary index)."""
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
