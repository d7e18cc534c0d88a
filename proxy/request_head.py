"""The parts of a request that the cache decision reads, free of aiohttp's Request object.

Keeping the hit decision on this small value (not on ``web.Request``) lets HITs later be
served below aiohttp's web layer without rewriting the cache logic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RequestHead:
    """Method, URL parts and headers (looked up case-insensitively by the caller's mapping)."""

    method: str
    scheme: str
    host: str
    path: str
    """Decoded path, as Tina4 matches routes."""
    raw_path: str
    """Path as sent (percent-encoding kept), without the query string."""
    query: str
    """Raw query string without the leading '?'."""
    headers: Mapping[str, str]
    """Case-insensitive mapping (aiohttp's CIMultiDictProxy satisfies it)."""

    def header(self, name: str) -> str | None:
        return self.headers.get(name)
