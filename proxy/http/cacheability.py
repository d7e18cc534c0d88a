"""The safety rules: which requests may use the cache, and which responses may be stored.

Serving one user's data to another is the worst bug this product can have, so the rules err on
the side of not caching (Varnish's builtin rules, Tina4's own rules, RFC 9111). Every field is
read from all its lines (``fields``): a later ``Cache-Control: private`` line counts as much as
the first.

Two modes. The default follows the app's ``ResponseCache`` rules: a rule says what is cached
and for how long, and the response can only forbid it. Standards mode
(``TINA4_SIDECAR_HONOR_CACHE_CONTROL``) caches as an RFC 9111 shared cache would, by the
response's own directives, also where no rule covers the route.
"""

from __future__ import annotations

from dataclasses import dataclass

from tina4_sidecar.config.rules import Rule
from tina4_sidecar.proxy.http import fields
from tina4_sidecar.proxy.http.fields import Headers
from tina4_sidecar.proxy.http.request_head import RequestHead

CACHEABLE_METHODS = frozenset({"GET", "HEAD"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PROPFIND", "SEARCH", "REPORT", "QUERY"})
"""Methods defined as safe (RFC 9110 section 9.2.1, WebDAV, the QUERY draft); every other one,
POST, PUT, PATCH, DELETE and methods whose safety is unknown alike, invalidates (RFC 9111 4.4)."""

HEURISTIC_STATUSES = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})
"""RFC 9110 section 15.1: heuristically cacheable by default."""

UNDERSTOOD_STATUSES = HEURISTIC_STATUSES | frozenset({302, 303, 307, 400, 403, 500, 502, 503, 504})
"""Statuses whose semantics the cache understands (RFC 9111 section 3: others are not stored)."""

_NEVER_SHARED = frozenset({"private", "no-store"})


@dataclass(frozen=True, slots=True)
class Decision:
    """What the cache does with a request, before any lookup."""

    cached: bool
    """The cache takes part: look the request up, store what is storable. False: forward it."""
    bypass: str | None = None
    """A cached route, but this request must not share entries: forwarded, marked, not stored."""
    credentials: bool = False
    """Standards mode: the request identifies a user, so only entries the app marked shareable
    (``public``, ``s-maxage``) may answer it, and only such answers are stored."""


NOT_CACHED = Decision(cached=False)


def decide(head: RequestHead, rule: Rule | None, honor: bool, no_store: bool = False) -> Decision:
    """Whether the cache takes part in ``head`` under ``rule`` (the first matching one, or None).

    A rule with caching but a TTL of 0 or less switches caching off for its route (Tina4's own
    meaning), in both modes. ``no_store``: the request's ``Cache-Control: no-store`` (standards)."""
    if head.method not in CACHEABLE_METHODS:
        return NOT_CACHED
    if rule is not None and rule.cache:
        if rule.ttl <= 0:
            return NOT_CACHED
    elif not honor:
        return NOT_CACHED
    if no_store:
        return Decision(cached=True, bypass="request-no-store")
    if has_body(head):  # forwarded with its body, never the leader of a shared fetch
        return Decision(cached=True, bypass="request-body")
    user = None if rule is not None and rule.cache and rule.public else credentials(head)
    if user is None:
        return Decision(cached=True)
    return Decision(cached=True, credentials=True) if honor else Decision(cached=True, bypass=user)


def has_body(head: RequestHead) -> bool:
    """A request that frames a body (a GET may, RFC 9110 section 9.3.1, though it means nothing)."""
    if fields.has(head.headers, "Transfer-Encoding"):
        return True
    return any(value.strip() not in ("", "0") for value in fields.lines(head.headers, "Content-Length"))


def credentials(head: RequestHead) -> str | None:
    """``authorization`` or ``cookie`` when the request identifies a user, else None."""
    if head.header("Authorization") is not None:
        return "authorization"
    if head.header("Cookie") is not None:
        return "cookie"
    return None


def bypass_reason(head: RequestHead, rule: Rule) -> str | None:
    """Why this request must not be answered from (or stored in) the cache; None when it may."""
    if head.method not in CACHEABLE_METHODS:
        return "method"
    return None if rule.public else credentials(head)


def unstorable_reason(status: int, headers: Headers, rule: Rule) -> str | None:
    """Default mode: why this response to a rule's route must not be stored; None when it may be."""
    if status not in rule.statuses:
        return "status"
    refused = never_stored(headers)
    if refused is not None:
        return refused
    if fields.pragma_no_cache(headers) or "no-cache" in fields.response_cache_control(headers):
        return "cache-control"
    return None


def never_stored(headers: Headers) -> str | None:
    """What no mode stores: a response that sets a cookie, is private or no-store (in any
    Cache-Control or Surrogate-Control line), or varies on everything."""
    if fields.has(headers, "Set-Cookie"):
        return "set-cookie"
    cache_control = fields.response_cache_control(headers)
    if not _NEVER_SHARED.isdisjoint(cache_control.arguments):  # private="..." too: never partly
        return "cache-control"
    if "no-store" in fields.surrogate_control(headers):
        return "surrogate-control"
    if "*" in fields.vary(headers):
        return "vary-star"
    return None


def standards_unstorable_reason(
    method: str, status: int, headers: Headers, request_headers: Headers, rule: Rule | None
) -> str | None:
    """Standards mode (RFC 9111 section 3): why a shared cache must not store this response.

    Freshness (explicit or heuristic) is decided by ``freshness``; this only says whether the
    response may be stored at all. Any final status may be, when it has explicit freshness
    (``storage`` asks for that where the status is not heuristically cacheable). A response to a
    request with credentials is stored only when it says it may be shared (section 3.5)."""
    if method not in CACHEABLE_METHODS:
        return "method"
    if rule is not None and status not in rule.statuses:
        return "status"
    if status < 200 or status in (206, 304):
        return "status"  # interim, partial (not kept) or a validation answer: never an entry of its own
    if "must-understand" in fields.response_cache_control(headers) and status not in UNDERSTOOD_STATUSES:
        return "status"  # RFC 9111 section 5.2.2.3
    refused = never_stored(headers)
    if refused is not None:
        return refused
    if "no-store" in fields.cache_control(request_headers):
        return "request-no-store"
    if (fields.has(request_headers, "Authorization") or fields.has(request_headers, "Cookie")) and not (
        shareable_with_credentials(headers)
    ):
        return "authorization"
    return None


def shareable_with_credentials(headers: Headers) -> bool:
    """The response says a shared cache may answer other users' credentialed requests with it
    (RFC 9111 section 3.5: ``public``, ``s-maxage``; ``must-revalidate`` is left out on purpose,
    as it says nothing about who may see the response)."""
    cache_control = fields.response_cache_control(headers)
    return "public" in cache_control or "s-maxage" in cache_control
