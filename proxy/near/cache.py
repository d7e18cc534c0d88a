"""A bounded in-process cache of HIT responses as prebuilt bytes, in front of the store.

It answers the fast path without a store round trip. How long a copy is trusted:

* memory store: until the entry expires (no other process can change the store);
* a store with push (Redis, Valkey, Redis Cluster) while its invalidation channel is followed
  (``proxy/near/invalidation.py``): until the entry expires or an announced change that concerns
  it drops it (``store/push.py``), and only while the subscription is known to be alive;
* otherwise (memcached, PostgreSQL, SQLite, MongoDB, file, or while not subscribed): at most
  ``recheck`` seconds after the store was read, as before push existed.

Changes made in this process (purges, stores, unsafe requests) drop the affected copies at once.

The generation: a copy must not be kept when the store read it came from raced with a change,
i.e. when the announcement arrived after the read began but before the copy was put (a later
announcement drops it; an earlier change is what the read saw). Every change applied here, and
every (re)subscription, makes a new generation and is remembered for a while; ``put`` is given
the generation seen before the read, and keeps the copy only when no change since then concerns
it (when the remembered changes do not reach back that far, it does not keep it either).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from http import HTTPStatus
from itertools import islice
from typing import Protocol

from tina4_sidecar.proxy.http import cache_headers as ch
from tina4_sidecar.proxy.http.entry import Entry
from tina4_sidecar.store.push import EVERYTHING, Change


@dataclass(slots=True)
class Prebuilt:
    entry: Entry
    status_and_headers: bytes
    """Status line and the entry's headers (CRLF-terminated lines), with Content-Length."""
    cache_status: str | None
    """An inner cache's Cache-Status members to keep in front of ours."""
    dated: bool
    """The entry has its own Date (replayed); else each answer gets the time it is sent."""
    trusted_until: float
    """Monotonic time after which the store is asked again."""
    size: int
    scopes: frozenset[str] = frozenset()
    """Names of the invalidation tokens the entry recorded: announced changes of these drop it."""
    pushed: bool = False
    """Trusted until expiry on the strength of push invalidation: served only while that is alive."""
    dynamic_second: int = -1
    dynamic: bytes = b""
    """The per-hit headers, built once per wall-clock second (they only change by the second)."""


def prebuild(entry: Entry) -> tuple[bytes, ch.Replayed]:
    """The status line and the entry's replayed headers (``cache_headers.replayed``, as the aiohttp
    path answers them, the body's Content-Length among them)."""
    try:
        reason = HTTPStatus(entry.status).phrase
    except ValueError:
        reason = ""
    replayed = ch.replayed(entry)
    lines = [f"HTTP/1.1 {entry.status} {reason}".rstrip()]
    lines.extend(f"{name}: {value}" for name, value in replayed.headers)
    return ("\r\n".join(lines) + "\r\n").encode("latin-1", "surrogateescape"), replayed


def _held_besides_body(entry: Entry, head: bytes) -> int:
    """About what an item holds beyond its body and key: the prebuilt head, the entry's header
    strings (as long again as the head) and its token names (a URL's token name is as long as the
    URL), with the objects around them."""
    return 2 * len(head) + 100 * len(entry.headers) + sum(len(name) + 100 for name, _ in entry.tokens)


RECENT_CHANGES = 1024
"""Changes remembered for the generation check of ``put`` (a read that saw more is not kept)."""


class NearCache:
    def __init__(self, max_entries: int, max_bytes: int, recheck: float | None) -> None:
        """``recheck``: seconds a copy is trusted without push (None: until it expires)."""
        self._entries: OrderedDict[str, Prebuilt] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self._recheck = recheck
        self._generation = 0
        self._changes: deque[Change] = deque(maxlen=RECENT_CHANGES)
        """The changes that made the latest generations, newest last."""
        self._push_until = 0.0
        """Monotonic time until which the invalidation channel is known to deliver: see ``alive``."""

    @property
    def generation(self) -> int:
        """Read it before the store read whose entry is then given to ``put``."""
        return self._generation

    def get(self, key: str, now_monotonic: float) -> Prebuilt | None:
        item = self._entries.get(key)
        if item is None:
            return None
        if now_monotonic >= item.trusted_until or (item.pushed and now_monotonic >= self._push_until):
            self._discard(key)
            return None
        self._entries.move_to_end(key)
        return item

    def put(self, key: str, entry: Entry, generation: int | None = None) -> Prebuilt | None:
        """Keep ``entry`` (a fresh entry without Vary) as prebuilt bytes; None when it does not fit.

        ``generation`` is ``self.generation`` as read before the store read that found ``entry``.
        Without it the copy is never trusted on the strength of push (only ``recheck`` applies).
        When a change that concerns the entry was applied since then, the prebuilt bytes are
        answered for the request at hand but not kept.
        """
        self._discard(key)
        size = len(entry.body) + len(key) + 512
        if size > self._max_bytes // 4:
            return None  # a few large bodies must not push out every small one
        head, replayed = prebuild(entry)
        now = time.monotonic()
        lifetime = entry.expires_at() - time.time()
        scopes = frozenset(name for name, _ in entry.tokens)
        raced = generation is not None and self._changed_since(generation, key, scopes)
        pushed = generation is not None and not raced and now < self._push_until
        if not pushed and self._recheck is not None:
            lifetime = min(lifetime, self._recheck)
        item = Prebuilt(
            entry,
            head,
            replayed.inner_status,
            replayed.dated,
            now + lifetime,
            size + _held_besides_body(entry, head),
            scopes,
            pushed,
        )
        if raced:
            return item
        self._entries[key] = item
        self._bytes += item.size
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.size
        return item

    def drop(self, key: str) -> None:
        """The entry at ``key`` changes (a store, a delete): drop its copy, and any racing read's."""
        self.apply(Change(keys=frozenset({key})))

    def clear(self) -> None:
        """Drop every copy (a purge whose extent is not known here)."""
        self.apply(EVERYTHING)

    def apply(self, change: Change) -> None:
        """Drop the copies that ``change`` may have made wrong, and start a new generation."""
        self._generation += 1
        self._changes.append(change)
        if change.everything:
            self._entries.clear()
            self._bytes = 0
            return
        for key in change.keys:
            self._discard(key)
        if change.scopes:
            wrong = [key for key, item in self._entries.items() if not change.scopes.isdisjoint(item.scopes)]
            for key in wrong:
                self._discard(key)

    # -- push invalidation (proxy/near/invalidation.py) --------------------------------------------

    def subscribed(self, alive_until: float) -> None:
        """A (new) subscription is confirmed: what was announced before it may have been missed."""
        self.clear()
        self._push_until = alive_until

    def alive(self, until: float) -> None:
        """Every change announced until a moment is delivered: copies may be trusted until ``until``."""
        self._push_until = until

    def unsubscribed(self) -> None:
        """Push ended: copies kept on its strength are no longer served (the next read replaces them)."""
        self._push_until = 0.0

    @property
    def pushing(self) -> bool:
        return time.monotonic() < self._push_until

    # -- internals ------------------------------------------------------------------------------------

    def _changed_since(self, generation: int, key: str, scopes: frozenset[str]) -> bool:
        missed = self._generation - generation
        if missed <= 0:
            return False
        if missed > len(self._changes):
            return True
        return any(change.affects(key, scopes) for change in islice(reversed(self._changes), missed))

    def _discard(self, key: str) -> None:
        item = self._entries.pop(key, None)
        if item is not None:
            self._bytes -= item.size

    def __len__(self) -> int:
        return len(self._entries)


class Clock(Protocol):
    def date(self) -> bytes:
        """The Date header's value for now."""


def hit_headers(item: Prebuilt, name: str, clock: Clock) -> bytes:
    """The per-hit part (``cache_headers.answer_headers`` for a HIT, and a Date when the entry has
    none), built once per wall-clock second."""
    now = time.time()
    second = int(now)
    if second == item.dynamic_second:
        return item.dynamic
    lines = [] if item.dated else [b"Date: " + clock.date()]
    lines.extend(
        f"{header}: {value}".encode("latin-1", "surrogateescape")
        for header, value in ch.answer_headers(ch.Kind.HIT, item.entry, now, name, item.cache_status)
    )
    item.dynamic = b"\r\n".join(lines) + b"\r\n\r\n"
    item.dynamic_second = second
    return item.dynamic
