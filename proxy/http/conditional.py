"""Conditional requests answered from the cache: If-None-Match and If-Modified-Since -> 304.

A HIT whose validators match gets a 304 with the headers RFC 9110 section 15.4.5 keeps; an entry
stored without an ETag gets a strong one computed from its body, so clients can revalidate
cheaply even when the app sends no validator.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from email.utils import parsedate_to_datetime

KEPT_ON_304 = ("cache-control", "content-location", "date", "etag", "expires", "vary", "last-modified")
CLIENT_CONDITIONALS = ("If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range")


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
    since = request_headers.get("If-Modified-Since")
    if since is None or last_modified is None:
        return False
    try:
        return parsedate_to_datetime(last_modified) <= parsedate_to_datetime(since)
    except (TypeError, ValueError, IndexError):
        return False


def headers_for_304(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(name, value) for name, value in headers if name.lower() in KEPT_ON_304]
