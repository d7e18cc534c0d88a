"""Purging cached responses, for the app (client library) and the sidecar's admin endpoint alike.

Each purge writes a new invalidation token (``store.invalidation``) into the response layer of
the shared store: O(1), and in effect at once on every sidecar that shares the store. On Redis,
Valkey and Redis Cluster the store itself then announces each written token's scope on the
namespace's invalidation channel (``store/push.py``), so that sidecars following it drop exactly
the near-cache copies that recorded that token: nothing here has to remember to announce, and
no caller (admin API, CLI, client library) can forget to.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from tina4_sidecar.store.contract import Store
from tina4_sidecar.store.invalidation import all_scope, bump
from tina4_sidecar.store.response_key import TAG_EPOCH, QueryFilter, route_scope, tag_scope, url_scope


async def purge_url(store: Store, url: str, query_filter: QueryFilter | None = None) -> bool:
    """Every variant of one URL (``/api/products?page=1`` or a full ``http://host/...``; any host)."""
    parts = urlsplit(url)
    path = parts.path or "/"
    canonical = (query_filter or QueryFilter()).canonical(parts.query)
    return await bump(store, [url_scope(path, canonical)])


async def purge_route(store: Store, path: str) -> bool:
    """Every query variant of a path (``/api/store/products`` purges ``?category=…&page=…`` too)."""
    return await bump(store, [route_scope(urlsplit(path).path or "/")])


async def purge_tag(store: Store, tag: str) -> bool:
    """Every response tagged ``tag`` (by its rule or by the app's tag header)."""
    # The epoch first, then the tag: a fetch that read the tag's old token then sees the new
    # epoch and does not store (see TAG_EPOCH).
    return await bump(store, [TAG_EPOCH, tag_scope(tag)])


async def purge_all(store: Store) -> bool:
    """Every cached response of this namespace."""
    return await bump(store, [all_scope()])
