"""Conditional requests answered from the cache: If-None-Match and If-Modified-Since -> 304.

A HIT whose validators match gets a 304 with the headers RFC 9110 section 15.4.5 keeps; an entry
stored without an ETag gets a strong one computed from its body, so clients can revalidate
cheaply even when the app sends no validator.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from tina4_sidecar.proxy.http.dates import parse_http_date

KEPT_ON_304 = ("cache-control", "content-location", "date", "etag", "expires", "vary", "last-modified")


def body_etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _opaque(tag: str) -> str:
    return tag.strip().removeprefix("W/")


def etag_matches(if_none_match: str, etag: str | None) -> bool:
    """Weak comparison (RFC 9110 section 13.1.2), as If-None-Match requires."""
    if etag is None:
        return False
    candidates = [item.strip() for item in if_none_match.split(",") if item.strip()]
    return "*" in candidates or any(_opaque(tag) == _opaque(etag) for tag in candidates)


def not_modified(request_headers: Mapping[str, str], etag: str | None, last_modified: str | None) -> bool:
    """True when the client's copy is current: answer 304 instead of the body."""
    if_none_match = request_headers.get("If-None-Match")
    if if_none_match is not None:
        return etag_matches(if_none_match, etag)  # IMS is ignored when INM is present
    since = parse_http_date(request_headers.get("If-Modified-Since"))
    modified = parse_http_date(last_modified)
    if since is None or modified is None:  # an invalid date is ignored (RFC 9110 section 13.1.3)
        return False
    return modified <= since


def headers_for_304(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(name, value) for name, value in headers if name.lower() in KEPT_ON_304]


NOT_UPDATED_BY_304 = frozenset({"content-length", "content-encoding", "transfer-encoding", "content-range"})
"""Never taken from a 304 onto the stored response (RFC 9111 section 3.2)."""


def freshened(stored: Iterable[tuple[str, str]], update: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The stored response's headers updated by a 304's (RFC 9111 section 4.3.4): each field the
    304 carries replaces the stored one, all its lines. What the 304 brings (a ``Set-Cookie``,
    ``private``) goes through the storability rules again before anything is stored."""
    update = list(update)
    names = {name.lower() for name, _ in update} - NOT_UPDATED_BY_304
    kept = [(name, value) for name, value in stored if name.lower() not in names]
    return kept + [(name, value) for name, value in update if name.lower() in names]
