"""The sidecar's running state: settings, store, app connection and rules, shared by all requests."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from tina4_sidecar.config import CacheSettings, SidecarSettings
from tina4_sidecar.config.rules import RuleSet
from tina4_sidecar.proxy.access_log import AccessLog
from tina4_sidecar.proxy.bounded import BoundedDict
from tina4_sidecar.proxy.flights import Flights
from tina4_sidecar.proxy.http.forward_headers import TrustedProxies
from tina4_sidecar.proxy.http.limits import Limits
from tina4_sidecar.proxy.http.request_head import RequestHead
from tina4_sidecar.proxy.manifest_watcher import ManifestWatcher
from tina4_sidecar.proxy.metrics import Metrics
from tina4_sidecar.proxy.near.cache import NearCache
from tina4_sidecar.proxy.near.invalidation import NearInvalidation
from tina4_sidecar.proxy.origin.pool import OriginPool
from tina4_sidecar.proxy.origin.upstream import Upstream
from tina4_sidecar.store.contract import Store
from tina4_sidecar.store.response_key import QueryFilter, response_key

log = logging.getLogger("tina4_sidecar.proxy")


@dataclass
class Sidecar:
    settings: SidecarSettings
    cache_settings: CacheSettings
    store: Store
    upstream: Upstream
    manifest: ManifestWatcher
    query_filter: QueryFilter
    metrics: Metrics = field(default_factory=Metrics)
    flights: Flights = field(init=False)
    near: NearCache = field(init=False)
    near_invalidation: NearInvalidation | None = None
    """Follows the store's invalidation channel (a store with push only): see ``start_sidecar``."""
    limits: Limits = field(init=False)
    """What one client connection may cost (TINA4_SIDECAR_MAX_* and the timeouts)."""
    trusted: TrustedProxies = field(init=False)
    """Peers whose X-Forwarded-* and Forwarded headers are kept (TINA4_SIDECAR_TRUSTED_PROXIES)."""
    origin: OriginPool | None = field(init=False)
    """Raw connections for the fast path's forwarding; None when the app is not plain http://."""
    fast_connections: set[asyncio.Transport] = field(default_factory=set)
    _keys: BoundedDict[tuple[str, str, str, str], str] = field(
        default_factory=lambda: BoundedDict(10_000, 8 * 1024 * 1024), repr=False
    )
    unwatch: Callable[[], None] = lambda: None
    """Stops the memory store telling the near cache of in-process purges (``start_sidecar``)."""
    slow_in_flight: int = 0
    """Requests on aiohttp's path being answered now (``proxy/front.py`` counts them)."""
    snapshots: Any = None
    """Under ``--workers``: this worker's counters for the others (``proxy/workers_view.py``)."""
    serving: bool = False
    """Listening and not shutting down (readiness)."""
    access: AccessLog = field(init=False)
    """The access log (TINA4_SIDECAR_ACCESS_LOG, TINA4_SIDECAR_LOG_FORMAT)."""
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    """Fetches and refreshes that may outlive their request; held so they are not collected."""

    def __post_init__(self) -> None:
        self.flights = Flights(self.settings.hit_for_miss)
        self.trusted = TrustedProxies(self.settings.trusted_proxies)
        self.limits = Limits.of(self.settings)
        logs_info = self.settings.log_level in ("debug", "info")
        self.access = AccessLog(self.settings.log_format, self.settings.access_log and logs_info)
        shared = self.store.backend_name != "memory"  # only then can another process purge
        self.near = NearCache(
            self.settings.near_cache_entries,
            self.settings.near_cache_bytes,
            self.settings.near_cache_recheck if shared else None,
        )
        try:
            settings = self.settings
            self.origin = OriginPool(
                settings.upstream,
                settings.connect_timeout,
                settings.upstream_timeout,
                settings.upstream_keepalive,
            )
        except ValueError:
            self.origin = None
        self.upstream.closing = self.app_closing
        self.upstream.received = self.metrics.origin_received
        if self.origin is not None:
            self.origin.closing = self.app_closing
            self.origin.received = self.metrics.origin_received
        self.store.observe = self.metrics.store_call

    def app_closing(self) -> None:
        """The app is seen closing (a refused connect, a pooled connection it closed, a framed
        ``Connection: close`` answer): both transports drop their idle connections to it at once,
        and close those in use after their answer, so its shutdown is not held up by them."""
        dropped = self.upstream.drop_idle() + (self.origin.drop_idle() if self.origin is not None else 0)
        if dropped:
            log.info("the app is closing connections: closed %d idle connections to it", dropped)

    def open_connections(self, slow: Any) -> int:
        """Client connections open now: the fast path's and those aiohttp's server (``slow``) took over."""
        return len(self.fast_connections) + len(slow.connections)

    def keep[T](self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``work`` as a task that finishes even if the request that started it is cancelled."""
        task = asyncio.create_task(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    @property
    def name(self) -> str:
        """The cache's name in Cache-Status."""
        return self.settings.cache_status_name

    @property
    def rules(self) -> RuleSet:
        return self.manifest.rules

    def key_for(self, head: RequestHead) -> str:
        if head.method not in ("GET", "HEAD"):
            return self._key(head)
        target = (head.scheme, head.host, head.raw_path, head.query)
        key = self._keys.get(target)
        if key is None:
            # Canonicalising the query (decode, filter, sort) costs more than the rest of a HIT.
            key = self._key(head)
            self._keys.put(target, key, 2 * len(key) + 200)
        return key

    def _key(self, head: RequestHead) -> str:
        query = self.query_filter.canonical(head.query)
        return response_key(head.method, head.scheme, head.host, head.raw_path, query)
