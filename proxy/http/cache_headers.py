"""The headers of an answer on a cached route: the replayed entry, X-Cache, X-Cache-TTL, Age and
RFC 9211 Cache-Status. Both transports build their answers from these functions, so a HIT reads
the same whichever of them served it.

``X-Cache``/``X-Cache-TTL`` follow Tina4's chapter (remaining seconds on a HIT, the stored TTL on
a MISS); an expired entry served (stale-while-revalidate, stale-if-error, a client's max-stale) is
``X-Cache: STALE`` with ``X-Cache-TTL: 0``, never a HIT, which the chapter defines as fresh.
``Cache-Status`` members never combine ``hit`` with ``fwd``, and ours is appended after every
member an inner cache already added, on one field line (the list of all of them, RFC 9110
section 5.3). A replayed entry keeps the ``Date`` the app sent (or the one the
sidecar gave it when it was stored), and its ``Age`` is the sidecar's own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from multidict import CIMultiDict, MultiMapping

from tina4_sidecar.proxy.http import fields
from tina4_sidecar.proxy.http.entry import Entry
from tina4_sidecar.proxy.http.forward_headers import end_to_end

HIT = "HIT"
MISS = "MISS"
STALE = "STALE"

OWN_HEADERS = ("X-Cache", "X-Cache-TTL", "Age")
"""Headers an app's own cache may have set; on cached routes the sidecar's values replace them."""


def own_headers(honor: bool) -> tuple[str, ...]:
    """What a MISS takes out of the app's answer: in standards mode the app's ``Age`` is passed on
    (it says how old the response already is, RFC 9111 section 5.1); in the default mode the app
    is Tina4, whose in-app cache steps aside, so any Age there is stale and is dropped."""
    return ("X-Cache", "X-Cache-TTL") if honor else OWN_HEADERS


SURROGATE_ONLY = ("Surrogate-Control",)
"""Meant for the cache in front of the app (us): honoured, never passed on to clients."""

PER_ANSWER = frozenset(
    {"x-cache", "x-cache-ttl", "age", "cache-status", "connection", "keep-alive", "transfer-encoding"}
)
"""Never replayed from an entry: set for each answer (or by the transport's framing)."""


class Kind(Enum):
    HIT = "hit"
    """Fresh: ``hit; ttl=N``."""
    STALE = "stale"
    """Served stale while it is refreshed, or as the client's max-stale allows: ``hit; ttl=-N``."""
    STALE_ERROR = "stale-error"
    """Served stale because the app failed: ``fwd=stale; fwd-status=5xx; ttl=-N``."""
    COLLAPSED = "collapsed"
    """A waiter answered by another request's fetch: ``fwd=uri-miss; collapsed``."""
    REVALIDATED = "revalidated"
    """A stale entry the app confirmed with a 304: ``fwd=stale; fwd-status=304; stored``."""


@dataclass(frozen=True, slots=True)
class Replayed:
    """An entry's own headers, as every answer from it carries them: in the app's order, with one
    Content-Length (the body's, where the app had it, else last)."""

    headers: list[tuple[str, str]]
    inner_status: str | None
    """The Cache-Status members an inner cache added, all lines joined; ours go after them."""
    dated: bool


def replayed(entry: Entry) -> Replayed:
    kept: list[tuple[str, str]] = []
    inner: list[str] = []
    dated = sized = False
    for name, value in entry.headers:
        lower = name.lower()
        if lower == "cache-status":
            inner.append(value)
        elif lower == "content-length":
            if not sized:
                kept.append((name, str(len(entry.body))))
                sized = True
        elif lower not in PER_ANSWER:
            kept.append((name, value))
            dated = dated or lower == "date"
    if not sized:
        kept.append(("Content-Length", str(len(entry.body))))
    return Replayed(kept, ", ".join(inner) if inner else None, dated)


def answer_headers(
    kind: Kind, entry: Entry, now: float, name: str, inner_status: str | None, error_status: int | None = None
) -> list[tuple[str, str]]:
    """X-Cache, X-Cache-TTL, Age and Cache-Status for an answer of ``kind`` from ``entry``."""
    remaining = entry.remaining(now)
    if kind is Kind.HIT:
        left = max(0, remaining)
        x_cache, x_cache_ttl, member = HIT, left, cache_status_hit(name, left)
    elif kind is Kind.STALE:
        x_cache, x_cache_ttl, member = STALE, 0, cache_status_hit(name, remaining)
    elif kind is Kind.STALE_ERROR:
        x_cache, x_cache_ttl = STALE, 0
        member = f"{cache_status_fwd(name, 'stale', fwd_status=error_status)}; ttl={remaining}"
    elif kind is Kind.COLLAPSED:
        x_cache, x_cache_ttl = MISS, entry.ttl
        member = cache_status_fwd(name, "uri-miss", fwd_status=entry.status, collapsed=True)
    else:
        x_cache, x_cache_ttl = MISS, entry.ttl
        member = cache_status_fwd(name, "stale", fwd_status=304, stored=True)
    out = [("X-Cache", x_cache), ("X-Cache-TTL", str(x_cache_ttl))]
    if kind in (Kind.HIT, Kind.STALE, Kind.STALE_ERROR) or entry.initial_age:
        out.append(("Age", str(entry.age(now))))
    out.append(("Cache-Status", append_member(inner_status, member)))
    return out


def miss_headers(
    upstream: Iterable[tuple[str, str]], name: str, status: int, stored_ttl: int | None
) -> list[tuple[str, str]]:
    """X-Cache, X-Cache-TTL (when stored) and Cache-Status for the app's answer to a miss."""
    out = [("X-Cache", MISS)]
    if stored_ttl is not None:
        out.append(("X-Cache-TTL", str(stored_ttl)))
    inner = ", ".join(value for key, value in upstream if key.lower() == "cache-status") or None
    member = cache_status_fwd(name, "uri-miss", fwd_status=status, stored=stored_ttl is not None)
    out.append(("Cache-Status", append_member(inner, member)))
    return out


def app_answer(upstream: MultiMapping[str], tag_header: str, marked: str | None = None) -> CIMultiDict[str]:
    """The app's answer as forwarded past the cache: end to end, without what is meant for the
    cache (the tag header, Surrogate-Control) on any route; ``marked`` (a Cache-Status member such
    as a bypass) also replaces the app's own X-Cache/X-Cache-TTL/Age and is appended to its
    Cache-Status members."""
    out = end_to_end(upstream, drop=(*SURROGATE_ONLY, tag_header))
    if marked is not None:
        for name in (*OWN_HEADERS, "Cache-Status"):
            out.popall(name, None)
        out["X-Cache"] = MISS
        out["Cache-Status"] = append_member(inner_cache_status(upstream), marked)
    return out


def miss_answer(upstream: MultiMapping[str], tag_header: str, honor: bool) -> CIMultiDict[str]:
    """The app's answer to a miss, before ``miss_headers``: without the cache's own headers."""
    return end_to_end(upstream, drop=(*own_headers(honor), *SURROGATE_ONLY, "Cache-Status", tag_header))


def inner_cache_status(headers: fields.Headers) -> str | None:
    return ", ".join(fields.lines(headers, "Cache-Status")) or None


def cache_status_hit(name: str, ttl_left: int) -> str:
    return f"{name}; hit; ttl={ttl_left}"


def cache_status_fwd(
    name: str,
    fwd: str,
    *,
    fwd_status: int | None = None,
    stored: bool = False,
    collapsed: bool = False,
    detail: str | None = None,
) -> str:
    """A forward member, e.g. ``tina4-sidecar; fwd=uri-miss; fwd-status=200; stored``."""
    parts = [name, f"fwd={fwd}"]
    if fwd_status is not None:
        parts.append(f"fwd-status={fwd_status}")
    if stored:
        parts.append("stored")
    if collapsed:
        parts.append("collapsed")
    if detail:
        parts.append(f"detail={detail}")
    return "; ".join(parts)


def append_member(existing: str | None, member: str) -> str:
    return f"{existing}, {member}" if existing else member
