"""Configuration: the spec's ``TINA4_*`` variables and the sidecar's own, read from env or ``.env``."""

from tina4_sidecar.config.cache import Backend, CacheSettings
from tina4_sidecar.config.loading import ConfigError, load_settings
from tina4_sidecar.config.query_cache import QueryCacheSettings
from tina4_sidecar.config.sidecar import SidecarSettings

__all__ = [
    "Backend",
    "CacheSettings",
    "ConfigError",
    "QueryCacheSettings",
    "SidecarSettings",
    "load_settings",
]
