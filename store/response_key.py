"""Cache keys of HTTP responses, shared by the proxy (which stores) and the client (which purges).

The key is the method, scheme, host, path and query string of the request, with the query
parameters sorted by name (the values of a repeated name keep their order, because apps may
read them as a list) and the operator's ignored parameters (``utm_*`` ...) left out. HEAD
uses the GET key: a HEAD is answered from the GET entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from fnmatch import translate
from urllib.parse import unquote_plus


class QueryFilter:
    """Drops query parameters whose names match shell-style patterns such as ``utm_*``.

    Parameters are split on ``&`` only, as Tina4 parses query strings (``a=1;b=2`` is one
    parameter ``a`` with the value ``1;b=2`` there, so here too)."""

    def __init__(self, ignored: Iterable[str] = ()) -> None:
        patterns = [translate(name) for name in ignored]
        self._ignored = re.compile("|".join(patterns)) if patterns else None

    def canonical(self, raw_query: str) -> str:
        """The query string with parameters sorted by name and ignored ones removed."""
        if not raw_query:
            return ""
        parts = [part for part in raw_query.split("&") if part]
        if self._ignored is not None:
            parts = [part for part in parts if not self._ignored.fullmatch(_name(part))]
        parts.sort(key=_name)
        return "&".join(parts)

    def stripped(self, raw_query: str) -> str:
        """The query string without the ignored parameters, the others in their order: what the
        app is asked on a cached route, so it never sees (and reflects into the shared page) a
        parameter that is not part of the cache key."""
        if not raw_query or self._ignored is None:
            return raw_query
        parts = raw_query.split("&")
        return "&".join(part for part in parts if part and not self._ignored.fullmatch(_name(part)))


def _name(part: str) -> str:
    return unquote_plus(part.partition("=")[0])


def response_key(method: str, scheme: str, host: str, raw_path: str, canonical_query: str) -> str:
    """``GET http://example.com/api/products?page=1`` style key for a response."""
    verb = "GET" if method in ("GET", "HEAD") else method
    query = f"?{canonical_query}" if canonical_query else ""
    return f"{verb} {scheme}://{host.lower()}{raw_path}{query}"


TAG_EPOCH = "~tok:tag-epoch"
"""Changes on every tag purge. Tags of a response are known only once the app has answered, so
their tokens are read after the fetch; a fetch that saw another epoch is not stored."""


def url_scope(raw_path: str, canonical_query: str) -> str:
    """Token key of one URL (all hosts, all variants): purged by ``purge_url``."""
    return f"~tok:url:{raw_path}?{canonical_query}"


def route_scope(raw_path: str) -> str:
    """Token key of a path with every query string: purged by ``purge_route``."""
    return f"~tok:route:{raw_path}"


def tag_scope(tag: str) -> str:
    return f"~tok:tag:{tag}"


MAX_PREFIX_DEPTH = 8
"""Path prefixes a response is purgeable by: its first ``MAX_PREFIX_DEPTH`` directories."""


def prefix_scope(prefix: str) -> str:
    """Token key of every path under ``prefix`` (a directory, ending in ``/``): ``purge_prefix``."""
    return f"~tok:prefix:{prefix}"


def path_prefixes(raw_path: str) -> list[str]:
    """``/api/store/products`` -> ``["/api/", "/api/store/"]`` (the root is ``purge_all``'s)."""
    prefixes: list[str] = []
    end = raw_path.find("/", 1)
    while end > 0 and len(prefixes) < MAX_PREFIX_DEPTH:
        prefixes.append(raw_path[: end + 1])
        end = raw_path.find("/", end + 1)
    return prefixes


def host_scope(host: str) -> str:
    """Token key of every response of one host (``purge_host``)."""
    return f"~tok:host:{host.lower()}"


def lookup_scopes(raw_path: str, canonical_query: str, host: str | None = None) -> list[str]:
    """The tokens a lookup reads with the entry, in one round trip; the epoch is last on purpose
    (see ``TAG_EPOCH``)."""
    scopes = ["~tok:all"]
    if host is not None:
        scopes.append(host_scope(host))
    scopes += [prefix_scope(prefix) for prefix in path_prefixes(raw_path)]
    return [*scopes, route_scope(raw_path), url_scope(raw_path, canonical_query), TAG_EPOCH]
