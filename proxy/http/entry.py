"""A stored response: the bytes format in the store and the freshness arithmetic.

Format (no pickle: a store shared with other processes must never execute what it holds)::

    b"T4SR" | version u8 | status u16 | stored_at f64 | ttl u32 | meta length u32 | meta | body

``meta`` is one MessagePack array, deflated (raw, with the preset dictionary of
``entry_dictionary``; format 2, format 1 was plain JSON): the end-to-end response headers
as a flat ``name, value, name, value, ...`` list in order (repeated names kept), the request's
values of the headers named by ``Vary`` and the invalidation tokens the entry depends on (flat
lists too, values may be nil), the stale windows, the fetch time and (standards mode) the age the
response had on arrival and how it may be reused. Items past the ones a reader knows are
ignored and missing trailing ones take their defaults, so adding one at the end needs no new
``VERSION``. MessagePack, not JSON: a fill encodes its entry in about 1.3 us instead of 7.8 us,
a lookup from a shared store decodes it in 1.3 us instead of 5.2 us. Deflated with the preset
dictionary, a Tina4 answer's metadata takes ~65 bytes instead of ~570 (~5 us more per fill, ~1 us
per decode): entries stay near their body size in every store.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass

import msgpack

from tina4_sidecar.proxy.http.entry_dictionary import DICTIONARY

MAGIC = b"T4SR"
VERSION = 2
_HEAD = struct.Struct(">4sBHdII")
MAX_META = 1024 * 1024
"""Metadata inflating to more than this is refused (request heads are capped far below it)."""


class EntryError(ValueError):
    """Bytes that are not an entry of this format (foreign, corrupt or another format version).

    ``kind`` says which, for counting and logging: ``version`` (an entry written by a sidecar of
    another format version: see "Upgrades" in docs/architecture.md) or ``corrupt``.
    """

    def __init__(self, detail: str, kind: str = "corrupt") -> None:
        super().__init__(detail)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Entry:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    stored_at: float
    ttl: int
    vary: tuple[tuple[str, str | None], ...] = ()
    """``(header name, request value)`` pairs that a later request must match."""
    tokens: tuple[tuple[str, str | None], ...] = ()
    """Invalidation tokens seen before the response was fetched (``store.invalidation``)."""
    stale_while_revalidate: int = 0
    stale_if_error: int = 0
    fetch_seconds: float = 0.0
    """How long the app took to produce it (drives early refresh)."""
    initial_age: int = 0
    """Seconds old the response already was when it arrived (RFC 9111 section 4.2.3)."""
    revalidate: bool = False
    """Never reused without asking the app first (``no-cache``): a conditional fetch on every use."""
    no_stale: bool = False
    """Never served stale (``must-revalidate``, ``proxy-revalidate``, ``s-maxage``)."""
    shared_auth: bool = False
    """May answer requests that carry credentials (``public`` or ``s-maxage``; standards mode)."""

    def expires_at(self) -> float:
        return self.stored_at + self.ttl

    def is_fresh(self, now: float) -> bool:
        return now < self.stored_at + self.ttl

    def remaining(self, now: float) -> int:
        """Whole seconds of freshness left (``X-Cache-TTL`` on a HIT); negative once expired
        (-1 from the first moment past expiry, so a stale answer never claims ``ttl=0``)."""
        left = self.stored_at + self.ttl - now
        return round(left) if left >= 0 else -math.ceil(-left)

    def age(self, now: float) -> int:
        return self.initial_age + max(0, int(now - self.stored_at))

    def header(self, name: str) -> str | None:
        lower = name.lower()
        return next((value for key, value in self.headers if key.lower() == lower), None)

    def matches_vary(self, request_value: dict[str, str | None]) -> bool:
        """True when the request carries the same values for every Vary header."""
        return all(request_value.get(name) == value for name, value in self.vary)

    def encode(self) -> bytes:
        meta = msgpack.packb(
            [
                [item for pair in self.headers for item in pair],
                [item for pair in self.vary for item in pair],
                [item for pair in self.tokens for item in pair],
                self.stale_while_revalidate,
                self.stale_if_error,
                self.fetch_seconds,
                self.initial_age,
                self.revalidate,
                self.no_stale,
                self.shared_auth,
            ],
            unicode_errors="surrogatepass",  # aiohttp's header values keep undecodable bytes as surrogates
        )
        packer = zlib.compressobj(1, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)
        meta = packer.compress(meta) + packer.flush()
        head = _HEAD.pack(MAGIC, VERSION, self.status, self.stored_at, self.ttl, len(meta))
        return b"".join((head, meta, self.body))

    @classmethod
    def decode(cls, data: bytes) -> Entry:
        if len(data) < _HEAD.size:
            raise EntryError("too short")
        magic, version, status, stored_at, ttl, meta_len = _HEAD.unpack_from(data)
        if magic != MAGIC:
            raise EntryError("not a response entry")
        if version != VERSION:
            raise EntryError(f"entry format {version} (this sidecar reads {VERSION})", kind="version")
        meta_end = _HEAD.size + meta_len
        if meta_end > len(data):
            raise EntryError("truncated")
        try:
            meta = msgpack.unpackb(_inflate(data[_HEAD.size : meta_end]), unicode_errors="surrogatepass")
            if not isinstance(meta, list) or len(meta) < 3:
                raise ValueError("not a metadata list")
            items = (*meta, *_DEFAULTS[len(meta) - 3 :])
            headers = _strings(items[0])
            vary, tokens = _optional(items[1]), _optional(items[2])
            swr, sie, fetch_seconds, initial_age, revalidate, no_stale, shared_auth = items[3:10]
            numbers = (int(swr), int(sie), float(fetch_seconds), int(initial_age))
        except (ValueError, TypeError, zlib.error, msgpack.UnpackException) as exc:
            raise EntryError(f"bad metadata: {exc}") from None
        return cls(
            status,
            headers,
            data[meta_end:],
            stored_at,
            ttl,
            vary,
            tokens,
            *numbers,
            bool(revalidate),
            bool(no_stale),
            bool(shared_auth),
        )


def _inflate(deflated: bytes) -> bytes:
    unpacker = zlib.decompressobj(-15, DICTIONARY)
    meta = unpacker.decompress(deflated, MAX_META)
    if unpacker.unconsumed_tail or not unpacker.eof:
        raise ValueError("metadata too large or cut short")
    return meta


_DEFAULTS = (0, 0, 0.0, 0, False, False, False)
"""Values of the items after the first three, for metadata written before they existed."""


def _strings(flat: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(flat, list) or len(flat) % 2 or not all(isinstance(item, str) for item in flat):
        raise ValueError("headers are not name, value strings")
    return tuple(zip(flat[::2], flat[1::2], strict=True))


def _optional(flat: object) -> tuple[tuple[str, str | None], ...]:
    if not isinstance(flat, list) or len(flat) % 2:
        raise ValueError("pairs are not a flat list")
    names, values = flat[::2], flat[1::2]
    if not all(isinstance(name, str) for name in names) or not all(
        value is None or isinstance(value, str) for value in values
    ):
        raise ValueError("pairs are not strings (values may be nil)")
    return tuple(zip(names, values, strict=True))
