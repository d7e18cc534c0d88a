"""The client library a Tina4 app imports.

* ``install()`` connects the app to the sidecar (the manifest route, Tina4's cache stepping aside);
* Tina4's key/value API: ``cache_get``, ``cache_set``, ``cache_delete``, ``cache_clear``,
  ``cache_stats``, ``sweep``, ``clear_cache`` (everything: values, query results, responses),
  plus ``cache_get_or_set`` and ``invalidate_tag``, each with an async twin
  named with an ``a`` prefix (``acache_get`` ...);
* purges of the sidecar's cached responses: ``purge_url``, ``purge_route``, ``purge_tag``,
  ``purge_all`` and their async twins.

Importing it imports neither Tina4 nor aiohttp's server parts; Tina4 is imported when
``install()`` runs, and a store is opened on first use.
"""

from tina4_sidecar.client.database import Database
from tina4_sidecar.client.get_or_set import acache_get_or_set, cache_get_or_set
from tina4_sidecar.client.install import install
from tina4_sidecar.client.kv import (
    acache_clear,
    acache_delete,
    acache_get,
    acache_set,
    acache_stats,
    aclear_cache,
    ainvalidate_tag,
    cache_clear,
    cache_delete,
    cache_get,
    cache_set,
    cache_stats,
    clear_cache,
    invalidate_tag,
    sweep,
)
from tina4_sidecar.client.purge import (
    apurge_all,
    apurge_route,
    apurge_tag,
    apurge_url,
    purge_all,
    purge_route,
    purge_tag,
    purge_url,
)

__all__ = [
    "Database",
    "acache_clear",
    "acache_delete",
    "acache_get",
    "acache_get_or_set",
    "acache_set",
    "acache_stats",
    "aclear_cache",
    "ainvalidate_tag",
    "apurge_all",
    "apurge_route",
    "apurge_tag",
    "apurge_url",
    "cache_clear",
    "cache_delete",
    "cache_get",
    "cache_get_or_set",
    "cache_set",
    "cache_stats",
    "clear_cache",
    "install",
    "invalidate_tag",
    "purge_all",
    "purge_route",
    "purge_tag",
    "purge_url",
    "sweep",
]
