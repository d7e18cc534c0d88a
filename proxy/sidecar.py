"""The sidecar's running state: settings, store, app connection and rules, shared by all requests."""

from __future__ import annotations

from dataclasses import dataclass, field

from tina4_sidecar.config import CacheSettings, SidecarSettings
from tina4_sidecar.config.rules import RuleSet
from tina4_sidecar.proxy.manifest_watcher import ManifestWatcher
from tina4_sidecar.proxy.metrics import Metrics
from tina4_sidecar.proxy.request_head import RequestHead
from tina4_sidecar.proxy.upstream import Upstream
from tina4_sidecar.store.contract import Store
from tina4_sidecar.store.response_key import QueryFilter, response_key


@dataclass
class Sidecar:
    settings: SidecarSettings
    cache_settings: CacheSettings
    store: Store
    upstream: Upstream
    manifest: ManifestWatcher
    query_filter: QueryFilter
    metrics: Metrics = field(default_factory=Metrics)

    @property
    def rules(self) -> RuleSet:
        return self.manifest.rules

    def key_for(self, head: RequestHead) -> str:
        query = self.query_filter.canonical(head.query)
        return response_key(head.method, head.scheme, head.host, head.raw_path, query)
