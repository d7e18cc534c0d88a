"""One round trip for a key of one layer and keys of another layer of the same store.

The persistent query cache reads an entry (``query`` layer) and the tokens it depends on
(``meta`` layer) on every lookup. Two ``get`` calls are two round trips; where both layers live
on one server this sends one: a single ``MGET`` on Redis/Valkey, a single ``SELECT ... IN`` on
the database store (both layers are rows of one table). Other stores, a store in fallback, or
any failure of the combined read take the two ordinary (guarded) calls instead, so the answer and
the failure semantics are those of the store contract.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import cast

from tina4_sidecar.store.sync.contract import SyncStore
from tina4_sidecar.store.sync.database import SyncDatabaseStore
from tina4_sidecar.store.sync.fallback import SyncFallbackStore
from tina4_sidecar.store.sync.redis import SyncRedisStore


def _serving(store: SyncStore) -> SyncStore | None:
    """The store that answers now, or None while a fallback stands in (use the ordinary calls)."""
    if isinstance(store, SyncFallbackStore):
        return None if store.degraded else store.primary
    return store


def read_together(
    first: SyncStore, key: str, second: SyncStore, keys: Sequence[str]
) -> tuple[bytes | None, list[bytes | None]]:
    """``first.get(key)`` and ``second.get_many(keys)``, in one round trip where the store allows."""
    a, b = _serving(first), _serving(second)
    try:
        if (
            isinstance(a, SyncRedisStore)
            and isinstance(b, SyncRedisStore)
            and a.redis_spec.url == b.redis_spec.url
        ):
            names = [a.prefix + key, *(b.prefix + name for name in keys)]
            values = cast("list[bytes | None]", a.read("MGET", *names))
            return values[0], values[1:]
        if (
            isinstance(a, SyncDatabaseStore)
            and isinstance(b, SyncDatabaseStore)
            and a.db_spec.engine.target == b.db_spec.engine.target
        ):
            rows = [a.db_spec.row_key(key), *(b.db_spec.row_key(name) for name in keys)]
            found = a.sql.get_many(list(dict.fromkeys(rows)), time.time())
            return found.get(rows[0]), [found.get(row) for row in rows[1:]]
    except Exception:  # the ordinary calls below count the error and may switch to the fallback
        pass
    return first.get(key), second.get_many(list(keys))
