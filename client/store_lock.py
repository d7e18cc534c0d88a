"""A lock in the shared store, so that one process does a piece of work while the others wait for it.

``take_or_wait`` takes the lock with the store's atomic ``add()`` or, when another process holds
it, polls (10 ms doubling to 100 ms) until the awaited result appears, the lock is released
without a result (that process failed: try to take it), or the lock's TTL has passed (that
process is stuck or dead: go ahead without it). A store that cannot ``add()`` at all (a backend
without it, or down) is detected, and the work then goes ahead unlocked: the lock only saves
duplicate work, it never guards correctness.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tina4_sidecar.store.contract import Store
from tina4_sidecar.store.invalidation import new_token

POLL_FIRST = 0.01
POLL_MAX = 0.1


@dataclass(frozen=True)
class StoreLock:
    """A lock we hold (``token`` set), or the permission to go ahead without one (``token`` None)."""

    store: Store
    name: str
    token: bytes | None

    @property
    def held(self) -> bool:
        return self.token is not None

    async def release(self) -> None:
        """Remove the lock if it is still ours (after its TTL another process may hold it)."""
        if self.token is None:
            return
        # Read-then-delete is not atomic: in the instant between, our lock may expire and another
        # process take it, and we remove theirs. The cost is one duplicate computation, never a
        # wrong value; the contract has no compare-and-delete.
        if await self.store.get(self.name) == self.token:
            await self.store.delete(self.name)


async def take_or_wait[T](
    store: Store, name: str, ttl: int, ready: Callable[[], Awaitable[T | None]]
) -> T | StoreLock:
    """``ready()``'s result once another process has produced it, or a lock to produce it ourselves.

    ``ttl`` (seconds) bounds both how long the lock lives and how long we wait for it.
    """
    token = new_token()
    deadline = time.monotonic() + ttl
    delay = POLL_FIRST
    unlockable = 0
    while True:
        if await store.add(name, token, ttl):
            lock = StoreLock(store, name, token)
            # The holder may have stored its result and released between our caller's lookup
            # (or our last poll) and this add: look once more before doing the work again.
            found = await ready()
            if found is None:
                return lock
            await lock.release()
            return found
        found = await ready()
        if found is not None:
            return found
        if await store.get(name) is None:
            # add() refused while nobody holds the lock: released just now (try again), or a
            # store that cannot add; twice in a row means the latter.
            unlockable += 1
            if unlockable >= 2:
                return StoreLock(store, name, None)
            continue
        unlockable = 0
        if time.monotonic() >= deadline:
            return StoreLock(store, name, None)
        await asyncio.sleep(delay)
        delay = min(delay * 2, POLL_MAX)
