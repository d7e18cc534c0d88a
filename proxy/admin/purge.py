"""Purge orders of the admin API: the JSON body, checked, and its run on the sidecar's store.

One of ``{"url": "/api/products?page=1"}`` (every variant of one URL, any host),
``{"route": "/api/store/products"}`` (a path with all its query strings), ``{"prefix": "/api/"}``
(every path under a directory, at most ``MAX_PREFIX_DEPTH`` deep), ``{"host": "shop.example"}``
(every response of one host), ``{"tag": "catalog"}`` or ``{"all": true}``; with ``"soft": true``
the entries become stale instead of gone (``store/soft_purge.py``), so stale-if-error still
serves them while the app is down. A pattern (``/p/*``) is refused with a 400 that names the
order to use instead. The purge writes an invalidation token into the store
(``store/response_purge.py``), so it reaches every sidecar (and every worker) that shares the
store, at once and in O(1): how many entries it covered is therefore not counted, and the answer
says what was invalidated instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from tina4_sidecar.store.contract import Store
from tina4_sidecar.store.invalidation import bump
from tina4_sidecar.store.response_key import (
    MAX_PREFIX_DEPTH,
    TAG_EPOCH,
    QueryFilter,
    host_scope,
    path_prefixes,
    prefix_scope,
    route_scope,
    tag_scope,
    url_scope,
)
from tina4_sidecar.store.soft_purge import soft_bump

KINDS = ("url", "route", "prefix", "host", "tag", "all")
EXPECTED = (
    'expected one of {"url": "/path?query"}, {"route": "/path"}, {"prefix": "/dir/"}, {"host": "name"}, '
    '{"tag": "name"} or {"all": true}, optionally with "soft": true'
)
MAX_TEXT = 2048


class PurgeError(ValueError):
    """A body that orders no valid purge; the message says what is expected."""


@dataclass(frozen=True)
class PurgeOrder:
    kind: str
    value: str | bool
    soft: bool = False

    def as_json(self) -> dict[str, str | bool]:
        return {self.kind: self.value, **({"soft": True} if self.soft else {})}

    @property
    def label(self) -> str:
        """The metrics label: the kind, ``soft-`` in front for a soft purge."""
        return f"soft-{self.kind}" if self.soft else self.kind

    def describe(self) -> str:
        what = {
            "url": f"every variant of {self.value} (any host)",
            "route": f"the path {self.value} with every query string (any host; not the paths under it)",
            "prefix": f"every path under {self.value} with every query string (any host)",
            "host": f"every response of the host {self.value}",
            "tag": f"every response tagged {self.value}",
            "all": "every cached response",
        }[self.kind]
        return what + (": marked stale, still served if the app fails" if self.soft else ": gone")


def parse_purge(body: bytes) -> PurgeOrder:
    """The purge that ``body`` orders; PurgeError with a clear message otherwise."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise PurgeError(f"the body is not JSON; {EXPECTED}") from None
    if not isinstance(data, dict):
        raise PurgeError(f"the body must be a JSON object; {EXPECTED}")
    soft = data.pop("soft", False)
    if not isinstance(soft, bool):
        raise PurgeError('"soft" must be true or false')
    unknown = sorted(str(name) for name in data if name not in KINDS)
    if unknown:
        raise PurgeError(f"unknown field {', '.join(map(repr, unknown))}; {EXPECTED}")
    named = [kind for kind in KINDS if kind in data]
    if len(named) != 1:
        raise PurgeError(f"name exactly one of {', '.join(KINDS)}; {EXPECTED}")
    kind = named[0]
    return order(kind, data[kind], soft)


def order(kind: str, value: object, soft: bool = False) -> PurgeOrder:
    """A checked order of ``kind`` (also for the CLI and the PURGE method)."""
    if kind == "all":
        if value is not True:
            raise PurgeError('"all" must be true')
        return PurgeOrder(kind, True, soft)
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
        raise PurgeError(f'"{kind}" must be a non-empty string of at most {MAX_TEXT} characters')
    text = value.strip()
    if kind in ("tag", "host"):
        if any(char in text for char in ",/ \t*"):
            raise PurgeError(f'"{kind}" is one name, without commas, slashes, spaces or wildcards')
        return PurgeOrder(kind, text.lower() if kind == "host" else text, soft)
    _check_path(kind, text)
    return PurgeOrder(kind, text, soft)


def _check_path(kind: str, text: str) -> None:
    parts = urlsplit(text)
    if parts.scheme not in ("", "http", "https") or (parts.scheme and not parts.netloc):
        raise PurgeError(f'"{kind}" must be a path starting with "/" or an http(s):// URL')
    if not parts.scheme and not text.startswith("/"):
        raise PurgeError(f'"{kind}" must be a path starting with "/" or an http(s):// URL')
    if "*" in parts.path or "{" in parts.path:
        stem = parts.path.split("*")[0].split("{")[0]
        directory = stem[: stem.rfind("/") + 1] or "/"
        raise PurgeError(
            f'patterns are not supported in "{kind}" ({text!r}); to purge every path under a directory, '
            f'use {{"prefix": "{directory}"}}; for a route pattern, tag its rule and purge the tag'
        )
    if kind in ("route", "prefix") and parts.query:
        raise PurgeError(f'"{kind}" is a path without a query string (it covers every query); use "url"')
    if kind == "prefix":
        if not parts.path.endswith("/") or parts.path == "/":
            raise PurgeError('"prefix" is a directory below the root ending in "/", such as "/api/"; '
                             'for everything use {"all": true}')  # fmt: skip
        if len(path_prefixes(parts.path + "x")) > MAX_PREFIX_DEPTH:
            raise PurgeError(f'"prefix" may be at most {MAX_PREFIX_DEPTH} directories deep')


def scopes_of(order: PurgeOrder, query_filter: QueryFilter) -> list[str]:
    """The token keys the order writes, tag epoch first (see ``TAG_EPOCH``)."""
    if order.kind == "all":
        return ["~tok:all"]
    text = str(order.value)
    if order.kind == "host":
        return [host_scope(text)]
    if order.kind == "tag":
        return [TAG_EPOCH, tag_scope(text)]
    parts = urlsplit(text)
    path = parts.path or "/"
    if order.kind == "url":
        return [url_scope(path, query_filter.canonical(parts.query))]
    if order.kind == "route":
        return [route_scope(path)]
    return [prefix_scope(path)]


async def run_purge(store: Store, order: PurgeOrder, query_filter: QueryFilter) -> bool:
    """Apply the order; False when the store could not be written."""
    scopes = scopes_of(order, query_filter)
    if not order.soft:
        return await bump(store, scopes)
    epoch = [name for name in scopes if name == TAG_EPOCH]
    ok = await bump(store, epoch) if epoch else True  # a fetch running meanwhile is not stored
    return await soft_bump(store, [name for name in scopes if name != TAG_EPOCH]) and ok
