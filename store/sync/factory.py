"""Builds the sync store that ``TINA4_CACHE_BACKEND`` names: the async store of the same settings as
its spec (``store/factory.py``), then the sync twin of that backend, behind the sync fallback for a
network store. ``run_async`` runs a coroutine for a backend without a sync twin (Redis Cluster)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from tina4_sidecar.config import Backend, CacheSettings
from tina4_sidecar.store.contract import Store, StoreUnavailable
from tina4_sidecar.store.factory import LOCAL_BACKENDS, build_store
from tina4_sidecar.store.sync.contract import SyncStore
from tina4_sidecar.store.sync.fallback import SyncFallbackStore
from tina4_sidecar.store.warn_once import warn_once

type Runner = Callable[[Coroutine[Any, Any, Any]], Any]


def twin_of(spec: Store, run_async: Runner) -> SyncStore:
    """The sync store over ``spec``'s keys and bytes (its backend's sync driver)."""
    from tina4_sidecar.store.backends.database import DatabaseStore
    from tina4_sidecar.store.backends.file import FileStore
    from tina4_sidecar.store.backends.memory import MemoryStore

    if isinstance(spec, MemoryStore):
        from tina4_sidecar.store.sync.local import SyncMemoryStore

        return SyncMemoryStore(spec)
    if isinstance(spec, FileStore):
        from tina4_sidecar.store.sync.local import SyncFileStore

        return SyncFileStore(spec)
    if isinstance(spec, DatabaseStore):
        from tina4_sidecar.store.sync.database import SyncDatabaseStore

        return SyncDatabaseStore(spec)
    name = type(spec).__name__
    if name in ("RedisStore", "ValkeyStore"):
        from tina4_sidecar.store.sync.redis import SyncRedisStore

        return SyncRedisStore(spec)  # type: ignore[arg-type]
    if name == "MemcachedStore":
        from tina4_sidecar.store.sync.memcached import SyncMemcachedStore

        return SyncMemcachedStore(spec)  # type: ignore[arg-type]
    if name == "MongoStore":
        from tina4_sidecar.store.sync.mongodb import SyncMongoStore

        return SyncMongoStore(spec)  # type: ignore[arg-type]
    from tina4_sidecar.store.sync.bridged import BridgedStore

    return BridgedStore(spec, run_async)


def open_sync_store(
    settings: CacheSettings,
    layer: str,
    run_async: Runner,
    backend: Backend | None = None,
    url: str | None = None,
) -> SyncStore:
    """An opened sync store for ``layer``; a network store that is down or has no driver gives one
    warning and the file store. A malformed URL raises ValueError (ConfigError for SQL URLs)."""
    chosen = backend or settings.cache_backend
    from tina4_sidecar.store.backends.file import FileStore

    fallback = twin_of(FileStore.from_settings(settings, layer), run_async)
    if chosen in LOCAL_BACKENDS:
        store = twin_of(build_store(settings, layer, chosen, url), run_async)
        store.open()
        return store
    try:
        spec = build_store(settings, layer, chosen, url)
    except ImportError as exc:
        warn_once(
            chosen.value,
            f"cache backend {chosen.value} is unavailable: its driver is missing ({exc}); caching in the "
            f"file store under {settings.cache_dir} instead (install the driver and restart to use "
            f"{chosen.value})",
        )
        fallback.open()
        return fallback
    where = f"{chosen.value} at {getattr(spec, 'location', None) or getattr(spec, 'url', '') or chosen.value}"
    store = SyncFallbackStore(
        twin_of(spec, run_async), fallback, str(settings.cache_dir), settings.cache_probe_interval, where
    )
    with contextlib.suppress(StoreUnavailable):  # a broken file store still serves, counting errors
        store.open()
    return store
