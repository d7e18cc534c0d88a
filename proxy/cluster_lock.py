"""The store lock that lets one sidecar of several sharing a store fetch a cold key."""

from __future__ import annotations

import asyncio
import math
import secrets
import time

from tina4_sidecar.proxy.http.entry import Entry
from tina4_sidecar.proxy.http.reuse import Reuse, reuse
from tina4_sidecar.proxy.lookup import lookup
from tina4_sidecar.proxy.sidecar import Sidecar
from tina4_sidecar.proxy.transaction import Transaction

LOCK_PREFIX = "~lock:"


async def acquire_lock(sidecar: Sidecar, key: str) -> str | None:
    """The store lock on ``key``'s fetch, so one sidecar of several sharing a store asks the app.

    The memory store is one process's own: there the in-process waiting list is the lock. A store
    that cannot take a lock (failing) must not stop the fetch: the lock counts as ours."""
    lock = LOCK_PREFIX + key
    if sidecar.store.backend_name == "memory":
        return lock
    seconds = math.ceil(sidecar.settings.lock_seconds)
    if await sidecar.store.add(lock, secrets.token_hex(8).encode(), seconds):
        return lock
    return None if await sidecar.store.get(lock) is not None else lock


async def fresh_entry(tx: Transaction) -> Entry | None:
    """The key's entry if it may answer now (another fetch may have stored it since the lookup)."""
    again = await lookup(tx.sidecar, tx.key, tx.head)
    entry = again.entry
    if entry is None:
        return None
    return entry if reuse(entry, time.time(), tx.directives) is Reuse.FRESH else None


async def wait_for_peer(tx: Transaction) -> Entry | None:
    """Another sidecar holds the lock: poll the store for its entry until the lock goes away."""
    sidecar = tx.sidecar
    deadline = time.monotonic() + sidecar.settings.lock_seconds
    delay = 0.005
    lock = LOCK_PREFIX + tx.variant_key
    while time.monotonic() < deadline:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)
        entry = await fresh_entry(tx)
        if entry is not None:
            return entry
        if await sidecar.store.get(lock) is None:
            return await fresh_entry(tx)
    return None
