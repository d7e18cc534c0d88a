"""Builds the store that ``TINA4_CACHE_BACKEND`` names, importing only that backend's driver.

``open_store()`` is what the sidecar and the client call: it opens the store and puts every
network store behind the graceful fallback to the file store (``store/fallback.py``).
"""

from __future__ import annotations

import importlib

from tina4_sidecar.config import Backend, CacheSettings
from tina4_sidecar.store.contract import Store
from tina4_sidecar.store.fallback import FallbackStore
from tina4_sidecar.store.push import Subscription

BACKENDS: dict[Backend, str] = {
    Backend.MEMORY: "tina4_sidecar.store.backends.memory:MemoryStore",
    Backend.FILE: "tina4_sidecar.store.backends.file:FileStore",
    Backend.REDIS: "tina4_sidecar.store.backends.redis:RedisStore",
    Backend.VALKEY: "tina4_sidecar.store.backends.redis:ValkeyStore",
    Backend.MEMCACHED: "tina4_sidecar.store.backends.memcached:MemcachedStore",
    Backend.MONGODB: "tina4_sidecar.store.backends.mongodb:MongoStore",
    Backend.DATABASE: "tina4_sidecar.store.backends.database:DatabaseStore",
}
"""Backend name -> ``module:Class``. Each class has ``from_settings(settings, layer, url)``."""

LOCAL_BACKENDS = frozenset({Backend.MEMORY, Backend.FILE})
"""Stores without a server: nothing to fall back from."""


def store_class(backend: Backend) -> type[Store]:
    """The class for ``backend``; ImportError when its driver is missing."""
    module_name, _, class_name = BACKENDS[backend].partition(":")
    module = importlib.import_module(module_name)
    cls: type[Store] = getattr(module, class_name)
    return cls


def build_store(
    settings: CacheSettings,
    layer: str,
    backend: Backend | None = None,
    url: str | None = None,
) -> Store:
    """An unopened store for ``layer`` on ``backend`` (default: ``TINA4_CACHE_BACKEND``).

    ``url`` overrides ``TINA4_CACHE_URL`` (the query cache passes ``TINA4_DB_CACHE_URL``).
    Call ``await store.open()`` before use.
    """
    chosen = backend or settings.cache_backend
    return store_class(chosen).from_settings(settings, layer, url)


def with_fallback(
    settings: CacheSettings, layer: str, backend: Backend, url: str | None = None
) -> FallbackStore:
    """An unopened network store behind the file-store fallback; a missing driver is not an error."""
    try:
        primary = build_store(settings, layer, backend, url)
    except ImportError as exc:
        return FallbackStore(settings, layer, None, primary_name=backend.value, driver_error=exc)
    return FallbackStore(settings, layer, primary)


async def open_store(
    settings: CacheSettings,
    layer: str,
    backend: Backend | None = None,
    url: str | None = None,
) -> Store:
    """An opened store for ``layer``: memory and file as they are, a network store behind a fallback.

    A network store whose driver is missing, or that cannot be reached or refuses the credentials,
    does not raise: a warning is logged and the file store serves until the store answers (see
    ``FallbackStore``). A malformed URL raises ValueError, as a configuration mistake. Takes at
    most about the store's connect timeout when the server is down.
    """
    chosen = backend or settings.cache_backend
    store: Store
    if chosen in LOCAL_BACKENDS:
        store = build_store(settings, layer, chosen, url)
    else:
        store = with_fallback(settings, layer, chosen, url)
    await store.open()
    return store


def changes_of(store: Store) -> Subscription | None:
    """A new subscription to the changes announced for ``store`` (``Store.changes``), or None when its
    backend announces none. A network store behind the fallback is asked through its primary: the
    channel lives on the primary's server whichever store serves at the moment."""
    if isinstance(store, FallbackStore):
        return store.primary.changes() if store.primary is not None else None
    return store.changes()
