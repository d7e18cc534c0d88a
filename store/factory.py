"""Builds the store that ``TINA4_CACHE_BACKEND`` names, importing only that backend's driver."""

from __future__ import annotations

import importlib

from tina4_sidecar.config import Backend, CacheSettings
from tina4_sidecar.store.contract import Store

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
