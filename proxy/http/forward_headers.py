"""Header rewriting for forwarding, as RFC 9110 section 7.6 asks of a proxy.

Hop-by-hop headers (and any header named in ``Connection``) are dropped in both
directions; ``X-Forwarded-For`` gains the client's address, while ``X-Forwarded-Proto`` and
``X-Forwarded-Host`` are set from what the sidecar itself saw (and ``Forwarded`` is dropped), so
a client cannot smuggle a forged host into the app's generated links (and from there into a
cached page). Only a peer listed in ``TINA4_SIDECAR_TRUSTED_PROXIES`` (a TLS load balancer in
front of the sidecar) has its ``X-Forwarded-Proto``/``-Host`` and ``Forwarded`` kept, and
extended with the sidecar's own hop. ``Host`` is the host the sidecar served the request for, so
the app and the cache key never disagree on it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from multidict import CIMultiDict, CIMultiDictProxy, MultiMapping

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


def end_to_end(headers: MultiMapping[str], drop: Iterable[str] = ()) -> CIMultiDict[str]:
    """A copy without hop-by-hop headers, the ones named in Connection, and ``drop``."""
    named = {
        token.strip().lower()
        for value in headers.getall("Connection", ())
        for token in value.split(",")
        if token.strip()
    }
    excluded = HOP_BY_HOP | named | {name.lower() for name in drop}
    return CIMultiDict((name, value) for name, value in headers.items() if name.lower() not in excluded)


class TrustedProxies:
    """The peers whose forwarding headers are believed (addresses and CIDR networks)."""

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self._networks = [ipaddress.ip_network(network, strict=False) for network in networks]

    def __contains__(self, peer: object) -> bool:
        if not self._networks or not isinstance(peer, str):
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self._networks)


NOBODY = TrustedProxies()


def to_upstream(
    headers: CIMultiDictProxy[str],
    client_ip: str | None,
    scheme: str,
    host: str,
    trusted: TrustedProxies = NOBODY,
) -> CIMultiDict[str]:
    """Request headers for the app: end-to-end ones plus X-Forwarded-For/Proto/Host.

    ``Host`` is the host the sidecar served the request for (the one in its cache key): the Host
    header as sent for an origin-form target, the target's authority for an absolute-form one."""
    out = end_to_end(headers, drop=("Expect",))  # aiohttp's server already answered 100-continue
    if client_ip:
        prior = ", ".join(out.getall("X-Forwarded-For", ()))
        out["X-Forwarded-For"] = f"{prior}, {client_ip}" if prior else client_ip
    if client_ip in trusted:
        out.setdefault("X-Forwarded-Proto", scheme)
        out.setdefault("X-Forwarded-Host", host)
        if "Forwarded" in out and client_ip:
            node = f'"[{client_ip}]"' if ":" in client_ip else client_ip
            out["Forwarded"] = ", ".join([*out.getall("Forwarded"), f"for={node}"])
    else:
        out["X-Forwarded-Proto"] = scheme
        out["X-Forwarded-Host"] = host
        out.popall("Forwarded", None)
    out["Host"] = host
    return out


CLIENT_CONDITIONALS = ("If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range")


def fill_request(
    headers: CIMultiDictProxy[str],
    client_ip: str | None,
    scheme: str,
    host: str,
    trusted: TrustedProxies,
    accept_encoding: str,
    validators: tuple[str | None, str | None] = (None, None),
) -> CIMultiDict[str]:
    """The request the cache sends the app to fill an entry: ``to_upstream``'s, without the
    client's own conditionals and cache directives (the cache needs a whole, current answer),
    with the normalised ``accept_encoding`` its variant is keyed by, and the stale entry's
    ``validators`` (ETag, Last-Modified) so that an unchanged answer comes back as a 304."""
    out = to_upstream(headers, client_ip, scheme, host, trusted)
    for name in (*CLIENT_CONDITIONALS, "Cache-Control", "Pragma"):
        out.popall(name, None)
    out["Accept-Encoding"] = accept_encoding
    etag, modified = validators
    if etag is not None:
        out["If-None-Match"] = etag
    if modified is not None:
        out["If-Modified-Since"] = modified
    return out
