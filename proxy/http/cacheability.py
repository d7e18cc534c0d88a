"""The safety rules: which requests may use the cache, and which responses may be stored.

Serving one user's data to another is the worst bug this product can have, so the rules
err on the side of not caching (Varnish's builtin rules, Tina4's own rules, RFC 9111).
"""

from __future__ import annotations

from collections.abc import Mapping

from tina4_sidecar.config.rules import Rule
from tina4_sidecar.proxy.http.request_head import RequestHead

CACHEABLE_METHODS = frozenset({"GET", "HEAD"})
_UNSTORABLE_DIRECTIVES = frozenset({"private", "no-store", "no-cache"})


def bypass_reason(head: RequestHead, rule: Rule) -> str | None:
    """Why this request must not be answered from (or stored in) the cache; None when it may."""
    if head.method not in CACHEABLE_METHODS:
        return "method"
    if not rule.public:
        if head.header("Authorization") is not None:
            return "authorization"
        if head.header("Cookie") is not None:
            return "cookie"
    return None


def unstorable_reason(status: int, headers: Mapping[str, str], rule: Rule) -> str | None:
    """Why this response must not be stored; None when it may be."""
    if status not in rule.statuses:
        return "status"
    if "Set-Cookie" in headers:
        return "set-cookie"
    directives = cache_control_directives(headers.get("Cache-Control", ""))
    if directives & _UNSTORABLE_DIRECTIVES:
        return "cache-control"
    if any(name == "*" for name in vary_names(headers)):
        return "vary-star"
    return None


def cache_control_directives(value: str) -> frozenset[str]:
    """Directive names of a Cache-Control value, lower-cased (arguments dropped)."""
    return frozenset(item.split("=", 1)[0].strip().lower() for item in value.split(",") if item.strip())


def vary_names(headers: Mapping[str, str]) -> list[str]:
    """Header names listed in every Vary field of the response, lower-cased."""
    getall = getattr(headers, "getall", None)
    values = getall("Vary", []) if getall is not None else [headers.get("Vary", "")]
    return [name.strip().lower() for value in values for name in value.split(",") if name.strip()]
