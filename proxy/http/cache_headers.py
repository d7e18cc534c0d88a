"""The headers a cached route carries: X-Cache, X-Cache-TTL, Age and RFC 9211 Cache-Status.

``X-Cache``/``X-Cache-TTL`` follow Tina4's chapter exactly (remaining seconds on a HIT, the
stored TTL on a MISS). ``Cache-Status`` members never combine ``hit`` with ``fwd``, and ours
is appended after any member an inner cache already added.
"""

from __future__ import annotations

HIT = "HIT"
MISS = "MISS"

# Headers an app's own cache may have set; on cached routes the sidecar's values replace them.
OWN_HEADERS = ("X-Cache", "X-Cache-TTL", "Age")


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
