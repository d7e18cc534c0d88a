"""Purging the sidecar's cached responses from app code: by URL, route path, tag, or all.

A purge reaches every sidecar in front of the app, whatever the store:

1. It writes a new invalidation token into the response layer of this process's store
   (``store/response_purge.py``'s scopes): O(1), and in effect at once for every sidecar that
   SHARES that store (on Redis and Valkey the store also announces it to their near caches).
2. It is sent to the admin API (``POST <prefix>purge``, with the sidecar's control token) of every
   sidecar that announced itself with a store that is NOT this one (``client/sidecars.py``): the
   memory store, a file store on another host, or a misconfiguration. No setting is needed: a
   sidecar announces itself every time it fetches the manifest.

A purge that cannot be delivered is loud: the function answers False and logs one warning that
names the sidecar (its admin URL) or the store where it failed. It answers False too when the
app's store is the in-process memory store and no sidecar has announced itself (nothing was
purged anywhere). ``TINA4_SIDECAR_IGNORED_QUERY_PARAMS`` shapes the query of a URL, as at the
sidecar.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from tina4_sidecar.client import runtime, sidecars
from tina4_sidecar.config import Backend, SidecarSettings, load_settings
from tina4_sidecar.store.invalidation import MARKER_TTL, all_scope, new_token
from tina4_sidecar.store.response_key import TAG_EPOCH, QueryFilter, route_scope, tag_scope, url_scope

log = logging.getLogger(__name__)

RESP_LAYER = "resp"
DELIVERY_TIMEOUT = 5.0
"""Seconds one sidecar may take to answer a purge before it counts as not delivered."""

_query_filter: QueryFilter | None = None


def purge_url(url: str) -> bool:
    """Every cached variant of one URL (``/api/products?page=1`` or ``http://host/...``; any host)."""
    return _purge("url", _text(url))


def purge_route(path: str) -> bool:
    """Every cached response of a path, whatever its query string."""
    return _purge("route", urlsplit(_text(path)).path or "/")


def purge_tag(tag: str) -> bool:
    """Every cached response tagged ``tag`` (by its rule or by the app's tag header)."""
    return _purge("tag", _text(tag))


def purge_all() -> bool:
    """Every cached response of this application (its namespace), at every sidecar."""
    return _purge("all", True)


async def apurge_url(url: str) -> bool:
    """``purge_url`` for ``async def`` code (the store and HTTP calls run in a worker thread)."""
    return await asyncio.to_thread(purge_url, url)


async def apurge_route(path: str) -> bool:
    """``purge_route`` for ``async def`` code."""
    return await asyncio.to_thread(purge_route, path)


async def apurge_tag(tag: str) -> bool:
    """``purge_tag`` for ``async def`` code."""
    return await asyncio.to_thread(purge_tag, tag)


async def apurge_all() -> bool:
    """``purge_all`` for ``async def`` code."""
    return await asyncio.to_thread(purge_all)


def purge_response_key(key: str) -> bool | None:
    """A key in the form of Tina4's response-cache keys (``GET:http://host/path?query``): that URL
    purged; None for any other key (an ordinary key/value key)."""
    method, sep, url = key.partition(":")
    if not sep or method not in ("GET", "HEAD") or not url.startswith(("http://", "https://")):
        return None
    return purge_url(url)


async def apurge_response_key(key: str) -> bool | None:
    return await asyncio.to_thread(purge_response_key, key)


# -- delivery ----------------------------------------------------------------------------------------


def _purge(kind: str, value: str | bool) -> bool:
    store = runtime.sync_store(RESP_LAYER)
    written = True
    for scope in _scopes(kind, value):
        written = store.set(scope, new_token(), MARKER_TTL) and written
    if not written:
        log.warning("purge %s failed: the store %s could not be written", {kind: value}, store.backend_name)
    mine = sidecars.own_store_id()
    others = [s for s in sidecars.known() if s.store != mine]
    delivered = all([_deliver(sidecar, kind, value) for sidecar in others])
    if not others and store.backend_name == Backend.MEMORY.value and not _shared_with_a_sidecar(mine):
        sidecars.warn_once(
            "no-sidecar",
            "purge %s reached no sidecar: none has fetched this app's manifest yet, and the app's "
            "memory store is its own (the purge is answered False until a sidecar announces itself)",
            {kind: value},
        )
        return False
    return written and delivered


def _shared_with_a_sidecar(mine: str) -> bool:
    return any(sidecar.store == mine for sidecar in sidecars.known())


def _deliver(sidecar: sidecars.Sidecar, kind: str, value: str | bool) -> bool:
    body = json.dumps({kind: value}).encode()
    request = urllib.request.Request(
        sidecar.control + "purge",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {sidecar.token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=DELIVERY_TIMEOUT) as reply:
            if reply.status == 200:
                return True
            problem = f"it answered {reply.status}"
    except urllib.error.HTTPError as exc:
        problem = f"it answered {exc.code}: {exc.read(300).decode('utf-8', 'replace')}"
    except (OSError, ValueError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    log.warning(
        "purge %s was not delivered to the sidecar at %s: %s", {kind: value}, sidecar.control, problem
    )
    return False


def _scopes(kind: str, value: str | bool) -> list[str]:
    if kind == "all":
        return [all_scope()]
    text = str(value)
    if kind == "route":
        return [route_scope(text)]
    if kind == "tag":
        return [TAG_EPOCH, tag_scope(text)]
    parts = urlsplit(text)
    return [url_scope(parts.path or "/", _filter().canonical(parts.query))]


def _filter() -> QueryFilter:
    """The sidecar's ignored query parameters, read once (again after ``runtime.reset()``)."""
    global _query_filter
    if _query_filter is None:
        _query_filter = QueryFilter(load_settings(SidecarSettings).ignored_query_params)
    return _query_filter


def _forget() -> None:
    global _query_filter
    _query_filter = None
    sidecars._warned.clear()


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"expected a non-empty str, got {value!r}")
    return value


runtime.on_reset(_forget)
