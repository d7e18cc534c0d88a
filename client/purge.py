"""Purging the sidecar's cached responses from app code: by URL, route path, tag, or all.

Each purge writes a new invalidation token into the response layer of the shared store
(``store.response_purge``), with the sidecar's own settings: ``TINA4_CACHE_BACKEND``, ``_URL`` and
``_NAMESPACE`` for the store, ``TINA4_SIDECAR_IGNORED_QUERY_PARAMS`` for the query of a URL. So a
purge is O(1) and reaches every sidecar that shares the store, whichever process calls it (on
Redis and Valkey the store also announces it, so that sidecars drop their near-cache copies
within the pub/sub delivery time: ``store/push.py``). The app and the sidecar must therefore
share a store: with the in-process ``memory`` backend, a purge from the app reaches no sidecar
(a warning says so once).

Each function answers True when the purge was written, False when the store failed.
"""

from __future__ import annotations

import logging

from tina4_sidecar.client import runtime
from tina4_sidecar.config import Backend, SidecarSettings, load_settings
from tina4_sidecar.store import response_purge
from tina4_sidecar.store.contract import Store
from tina4_sidecar.store.response_key import QueryFilter

log = logging.getLogger(__name__)

RESP_LAYER = "resp"

_query_filter: QueryFilter | None = None
_warned = False


def purge_url(url: str) -> bool:
    """Every cached variant of one URL (``/api/products?page=1`` or ``http://host/...``; any host)."""
    return runtime.run_sync(_purge_url(_text(url)))


async def apurge_url(url: str) -> bool:
    """``purge_url`` for ``async def`` code."""
    return await runtime.run_async(_purge_url(_text(url)))


def purge_route(path: str) -> bool:
    """Every cached response of a path, whatever its query string."""
    return runtime.run_sync(_purge_route(_text(path)))


async def apurge_route(path: str) -> bool:
    """``purge_route`` for ``async def`` code."""
    return await runtime.run_async(_purge_route(_text(path)))


def purge_tag(tag: str) -> bool:
    """Every cached response tagged ``tag`` (by its rule or by the app's tag header)."""
    return runtime.run_sync(_purge_tag(_text(tag)))


async def apurge_tag(tag: str) -> bool:
    """``purge_tag`` for ``async def`` code."""
    return await runtime.run_async(_purge_tag(_text(tag)))


def purge_all() -> bool:
    """Every cached response of this application (its namespace)."""
    return runtime.run_sync(_purge_all())


async def apurge_all() -> bool:
    """``purge_all`` for ``async def`` code."""
    return await runtime.run_async(_purge_all())


# -- on the bridge loop --------------------------------------------------------------------------


async def _purge_url(url: str) -> bool:
    return await response_purge.purge_url(await _responses(), url, _filter())


async def _purge_route(path: str) -> bool:
    return await response_purge.purge_route(await _responses(), path)


async def _purge_tag(tag: str) -> bool:
    return await response_purge.purge_tag(await _responses(), tag)


async def _purge_all() -> bool:
    return await response_purge.purge_all(await _responses())


async def _responses() -> Store:
    global _warned
    if runtime.settings().cache_backend is Backend.MEMORY and not _warned:
        _warned = True
        log.warning(
            "purging with TINA4_CACHE_BACKEND=memory reaches only this process; point the app and "
            "the sidecar at one shared store (redis, valkey, memcached, mongodb, database, file)"
        )
    return await runtime.store_for(RESP_LAYER)


def _filter() -> QueryFilter:
    """The sidecar's ignored query parameters, read once (again after ``runtime.reset()``)."""
    global _query_filter
    if _query_filter is None:
        _query_filter = QueryFilter(load_settings(SidecarSettings).ignored_query_params)
    return _query_filter


def _forget() -> None:
    global _query_filter, _warned
    _query_filter = None
    _warned = False


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"expected a non-empty str, got {value!r}")
    return value


runtime.on_reset(_forget)
