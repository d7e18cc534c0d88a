"""Single-flight: concurrent misses for one key wait on one fetch instead of each asking the app.

Waiters await a future (Varnish's waiting list), not a polling lock (nginx's 500 ms
``proxy_cache_lock``), so they are answered the moment the fetch completes. A fetch whose answer
cannot be shared (``Set-Cookie``, ``private``, too big, another Vary variant) releases its
waiters to fetch on their own, and leaves a short hit-for-miss marker so later requests for that
key do not queue behind the next uncacheable answer either.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from tina4_sidecar.proxy.bounded import BoundedDict
from tina4_sidecar.proxy.http.entry import Entry


@dataclass(frozen=True, slots=True)
class Shared:
    """A flight's outcome: the stored entry, or why waiters must not use it."""

    entry: Entry | None = None
    error: Exception | None = None
    """The app could not be reached: waiters answer the same way without asking again."""
    status: int | None = None
    """The app's 5xx status when it answered one (the error says so too): waiters report it as well."""


NOT_SHAREABLE = Shared()


class Flights:
    def __init__(self, hit_for_miss_seconds: float) -> None:
        self._flying: dict[str, asyncio.Future[Shared]] = {}
        self._hit_for_miss: BoundedDict[str, float] = BoundedDict(10_000, 8 * 1024 * 1024)
        self._hit_for_miss_seconds = hit_for_miss_seconds

    def waiting_list(self, key: str) -> asyncio.Future[Shared] | None:
        """The running fetch for ``key``, if any (and not marked hit-for-miss)."""
        until = self._hit_for_miss.get(key)
        if until is not None:
            if until > time.monotonic():
                return None
            self._hit_for_miss.pop(key)
        return self._flying.get(key)

    def take_off(self, key: str) -> asyncio.Future[Shared]:
        future: asyncio.Future[Shared] = asyncio.get_running_loop().create_future()
        self._flying[key] = future
        return future

    def land(self, key: str, future: asyncio.Future[Shared], outcome: Shared) -> None:
        """Wake the waiters with ``outcome``; idempotent (only the first outcome counts)."""
        if future.done():
            return
        if self._flying.get(key) is future:
            del self._flying[key]
        if outcome is NOT_SHAREABLE and self._hit_for_miss_seconds > 0:
            self._hit_for_miss.put(key, time.monotonic() + self._hit_for_miss_seconds, len(key) + 100)
        future.set_result(outcome)

    def in_flight(self, key: str) -> bool:
        return key in self._flying

    def __len__(self) -> int:
        return len(self._flying)
