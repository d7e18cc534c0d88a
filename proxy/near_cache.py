"""A bounded in-process cache of HIT responses as prebuilt bytes, in front of the store.

It answers the fast path without a store round trip. Its staleness bound: an entry is re-read
from the store at the latest ``recheck`` seconds after it was last read (purges made by other
processes are seen within that bound); purges, stores and unsafe requests in this process drop
the affected entries at once. With the memory store no other process can change what the store
holds, so entries are trusted until they expire.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from http import HTTPStatus

from tina4_sidecar.proxy import cache_headers as ch
from tina4_sidecar.proxy.entry import Entry

# Set per hit by the fast path, or hop-by-hop: never part of the prebuilt bytes.
_DYNAMIC = frozenset(
    {
        "date",
        "x-cache",
        "x-cache-ttl",
        "age",
        "cache-status",
        "content-length",
        "connection",
        "keep-alive",
        "transfer-encoding",
    }
)


@dataclass(slots=True)
class Prebuilt:
    entry: Entry
    status_and_headers: bytes
    """Status line and the entry's headers (CRLF-terminated lines), with Content-Length."""
    cache_status: str | None
    """An inner cache's Cache-Status member to keep in front of ours."""
    trusted_until: float
    """Monotonic time after which the store is asked again."""
    size: int
    dynamic_second: int = -1
    dynamic: bytes = b""
    """The per-hit headers, built once per wall-clock second (they only change by the second)."""


def prebuild(entry: Entry) -> tuple[bytes, str | None]:
    try:
        reason = HTTPStatus(entry.status).phrase
    except ValueError:
        reason = ""
    lines = [f"HTTP/1.1 {entry.status} {reason}".rstrip()]
    inner = None
    for name, value in entry.headers:
        lower = name.lower()
        if lower == "cache-status":
            inner = value if inner is None else f"{inner}, {value}"
        elif lower not in _DYNAMIC:
            lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(entry.body)}")
    return ("\r\n".join(lines) + "\r\n").encode("latin-1", "surrogateescape"), inner


class NearCache:
    def __init__(self, max_entries: int, max_bytes: int, recheck: float | None) -> None:
        self._entries: OrderedDict[str, Prebuilt] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self._recheck = recheck

    def get(self, key: str, now_monotonic: float) -> Prebuilt | None:
        item = self._entries.get(key)
        if item is None:
            return None
        if now_monotonic >= item.trusted_until:
            self.drop(key)
            return None
        self._entries.move_to_end(key)
        return item

    def put(self, key: str, entry: Entry) -> Prebuilt | None:
        """Keep ``entry`` (a fresh entry without Vary) as prebuilt bytes; None when it does not fit."""
        self.drop(key)
        size = len(entry.body) + 512
        if size > self._max_bytes // 4:
            return None  # a few large bodies must not push out every small one
        head, inner = prebuild(entry)
        lifetime = entry.expires_at() - time.time()
        if self._recheck is not None:
            lifetime = min(lifetime, self._recheck)
        item = Prebuilt(entry, head, inner, time.monotonic() + lifetime, size + len(head))
        self._entries[key] = item
        self._bytes += item.size
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.size
        return item

    def drop(self, key: str) -> None:
        item = self._entries.pop(key, None)
        if item is not None:
            self._bytes -= item.size

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)


def hit_headers(item: Prebuilt, name: str, date: bytes) -> bytes:
    """The per-hit part: Date, X-Cache, X-Cache-TTL, Age and Cache-Status (cached per second)."""
    now = time.time()
    second = int(now)
    if second == item.dynamic_second:
        return item.dynamic
    entry = item.entry
    remaining = max(0, entry.remaining(now))
    member = ch.cache_status_hit(name, remaining)
    status = ch.append_member(item.cache_status, member)
    item.dynamic = (
        b"Date: "
        + date
        + b"\r\nX-Cache: HIT\r\nX-Cache-TTL: "
        + str(remaining).encode()
        + b"\r\nAge: "
        + str(entry.age(now)).encode()
        + b"\r\nCache-Status: "
        + status.encode("latin-1", "surrogateescape")
        + b"\r\n\r\n"
    )
    item.dynamic_second = second
    return item.dynamic
