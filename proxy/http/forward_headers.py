"""Header rewriting for forwarding, as RFC 9110 section 7.6 asks of a proxy.

Hop-by-hop headers (and any header named in ``Connection``) are dropped in both
directions; ``X-Forwarded-For`` gains the client's address, while ``X-Forwarded-Proto`` and
``X-Forwarded-Host`` are set from what the sidecar itself saw, so a client cannot smuggle
a forged host into the app's generated links (and from there into a cached page). ``Host`` is
the host the sidecar served the request for, so the app and the cache key never disagree on it.
"""

from __future__ import annotations

from collections.abc import Iterable

from multidict import CIMultiDict, CIMultiDictProxy

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


def end_to_end(
    headers: CIMultiDictProxy[str] | CIMultiDict[str], drop: Iterable[str] = ()
) -> CIMultiDict[str]:
    """A copy without hop-by-hop headers, the ones named in Connection, and ``drop``."""
    named = {
        token.strip().lower()
        for value in headers.getall("Connection", ())
        for token in value.split(",")
        if token.strip()
    }
    excluded = HOP_BY_HOP | named | {name.lower() for name in drop}
    return CIMultiDict((name, value) for name, value in headers.items() if name.lower() not in excluded)


def to_upstream(
    headers: CIMultiDictProxy[str], client_ip: str | None, scheme: str, host: str
) -> CIMultiDict[str]:
    """Request headers for the app: end-to-end ones plus X-Forwarded-For/Proto/Host.

    ``Host`` is the host the sidecar served the request for (the one in its cache key): the Host
    header as sent for an origin-form target, the target's authority for an absolute-form one."""
    out = end_to_end(headers, drop=("Expect",))  # aiohttp's server already answered 100-continue
    if client_ip:
        prior = ", ".join(out.getall("X-Forwarded-For", ()))
        out["X-Forwarded-For"] = f"{prior}, {client_ip}" if prior else client_ip
    out["X-Forwarded-Proto"] = scheme
    out["X-Forwarded-Host"] = host
    out["Host"] = host
    return out
