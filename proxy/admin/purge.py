"""Purge orders of the admin API: the JSON body, checked, and its run on the sidecar's store.

One of ``{"url": "/api/products?page=1"}`` (every variant of one URL), ``{"route":
"/api/store/products"}`` (a path with all its query strings), ``{"tag": "catalog"}`` or
``{"all": true}``. The purge writes an invalidation token into the store
(``store/response_purge.py``), so it reaches every sidecar that shares the store (on Redis and
Valkey also their near caches, through the store's announcement: ``store/push.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from tina4_sidecar.store.contract import Store
from tina4_sidecar.store.response_key import QueryFilter
from tina4_sidecar.store.response_purge import purge_all, purge_route, purge_tag, purge_url

KINDS = ("url", "route", "tag", "all")
EXPECTED = 'expected one of {"url": "/path?query"}, {"route": "/path"}, {"tag": "name"} or {"all": true}'
MAX_TEXT = 2048


class PurgeError(ValueError):
    """A body that orders no valid purge; the message says what is expected."""


@dataclass(frozen=True)
class PurgeOrder:
    kind: str
    value: str | bool

    def as_json(self) -> dict[str, str | bool]:
        return {self.kind: self.value}


def parse_purge(body: bytes) -> PurgeOrder:
    """The purge that ``body`` orders; PurgeError with a clear message otherwise."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise PurgeError(f"the body is not JSON; {EXPECTED}") from None
    if not isinstance(data, dict):
        raise PurgeError(f"the body must be a JSON object; {EXPECTED}")
    unknown = sorted(str(name) for name in data if name not in KINDS)
    if unknown:
        raise PurgeError(f"unknown field {', '.join(map(repr, unknown))}; {EXPECTED}")
    named = [kind for kind in KINDS if kind in data]
    if len(named) != 1:
        raise PurgeError(f"name exactly one of url, route, tag or all; {EXPECTED}")
    kind = named[0]
    value = data[kind]
    if kind == "all":
        if value is not True:
            raise PurgeError('"all" must be true')
        return PurgeOrder(kind, True)
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
        raise PurgeError(f'"{kind}" must be a non-empty string of at most {MAX_TEXT} characters')
    text = value.strip()
    if kind == "tag":
        if any(char in text for char in ", \t"):
            raise PurgeError('"tag" is one tag name, without commas or spaces')
    else:
        _check_path(kind, text)
    return PurgeOrder(kind, text)


def _check_path(kind: str, text: str) -> None:
    parts = urlsplit(text)
    if parts.scheme not in ("", "http", "https") or (parts.scheme and not parts.netloc):
        raise PurgeError(f'"{kind}" must be a path starting with "/" or an http(s):// URL')
    if not parts.scheme and not text.startswith("/"):
        raise PurgeError(f'"{kind}" must be a path starting with "/" or an http(s):// URL')
    if kind == "route" and parts.query:
        raise PurgeError('"route" is a path without a query string (it purges every query); use "url"')
    if kind == "route" and "{" in parts.path:
        raise PurgeError(
            '"route" is a concrete path such as /api/products, not a pattern; '
            "to purge every path of a pattern, tag its rule and purge the tag"
        )


async def run_purge(store: Store, order: PurgeOrder, query_filter: QueryFilter) -> bool:
    """Apply the order; False when the store could not be written."""
    if order.kind == "all":
        return await purge_all(store)
    text = str(order.value)
    if order.kind == "url":
        return await purge_url(store, text, query_filter)
    if order.kind == "route":
        return await purge_route(store, text)
    return await purge_tag(store, text)
