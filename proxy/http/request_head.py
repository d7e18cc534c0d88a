"""The parts of a request that the cache decision reads, free of aiohttp's Request object, and the
request target those parts come from.

Keeping the hit decision on this small value (not on ``web.Request``) lets HITs later be
served below aiohttp's web layer without rewriting the cache logic. ``parse_target`` reads the
request target in each of RFC 9112's forms: origin-form (``/path?query``) as is, absolute-form
(``http://host/path?query``) as its path and query plus the host it names, asterisk-form for
``OPTIONS`` only; a CONNECT (authority-form), another scheme or credentials in the authority are
refused (400).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from multidict import MultiMapping


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
    headers: MultiMapping[str]
    """Case-insensitive multidict: aiohttp's CIMultiDictProxy, or the fast path's CIMultiDict."""

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


class BadTarget(ValueError):
    """A request target the sidecar does not serve; the message says why (answered with 400)."""


@dataclass(frozen=True, slots=True)
class Target:
    """A request target reduced to what is forwarded: the path and query, and the host it names."""

    raw_path: str
    """Path as sent (percent-encoding kept), never empty; ``*`` for ``OPTIONS *``."""
    query: str | None
    """Raw query string without the '?'; None when the target has no '?'."""
    authority: str | None
    """``host[:port]`` of an absolute-form target, which replaces the Host header; else None."""

    @property
    def asterisk(self) -> bool:
        return self.raw_path == "*"

    @property
    def path_qs(self) -> str:
        return self.raw_path if self.query is None else f"{self.raw_path}?{self.query}"


_SCHEMES = ("http", "https")
# RFC 3986 host (reg-name, IPv4 or an IP literal in brackets) and an optional port; no userinfo.
_AUTHORITY = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)(?::[0-9]{0,5})?")


def parse_target(method: str, target: str) -> Target:
    """The request target as sent on the request line; BadTarget when it is not one we serve."""
    if method == "CONNECT":
        raise BadTarget("CONNECT is not supported: this is a reverse proxy, not a tunnel")
    if target.startswith("/"):
        return Target(*_split_path(target), authority=None)
    if target == "*":
        if method != "OPTIONS":
            raise BadTarget("the asterisk-form target '*' is only allowed with OPTIONS")
        return Target("*", None, authority=None)
    scheme, sep, rest = target.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise BadTarget("the request target must be a path or an http:// or https:// URL")
    end = next((index for index, char in enumerate(rest) if char in "/?#"), len(rest))
    authority = rest[:end]
    if not _AUTHORITY.fullmatch(authority):
        raise BadTarget("the request target's authority must be a host with an optional port")
    raw_path, query = _split_path(rest[end:])
    return Target(raw_path or "/", query, authority=authority)


_HOST = re.compile(
    r"(?:\[(?P<ip6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9._~!$&'()*+,;=%-]+))"  # IP literal or reg-name/IPv4
    r"(?::(?P<port>[0-9]{0,5}))?"
)


def normalized_host(value: str, scheme: str = "http") -> str | None:
    """A Host (or absolute-form authority) as the cache key and the app get it: lower-cased, the
    scheme's default port dropped; None when it is not a valid ``host[:port]`` (RFC 9110 section
    7.2, RFC 3986 section 3.2.2: no path, no userinfo, no spaces), which is answered 400, so that
    ``Host: shop.example/c`` can never share keys with a path."""
    host = value.strip().lower()
    match = _HOST.fullmatch(host)
    if match is None:
        return None
    port = match.group("port") or None  # "host:" has an empty port: the default one
    if port is not None and not 0 < int(port) < 65536:
        return None
    name = f"[{match.group('ip6')}]" if match.group("ip6") is not None else match.group("name")
    if port is None or int(port) == {"http": 80, "https": 443}.get(scheme):
        return name
    return f"{name}:{int(port)}"


def origin_form(target: str) -> str:
    """``target``'s path and query (an absolute-form target reduced to them); BadTarget for the
    targets that have none (``*``, authority-form, other schemes)."""
    if target.startswith("/"):
        return target
    parsed = parse_target("GET", target)
    return parsed.path_qs


def _split_path(path_qs: str) -> tuple[str, str | None]:
    """Path and query of ``/path?query#fragment`` (a fragment is never part of a request)."""
    without_fragment = path_qs.partition("#")[0]
    raw_path, sep, query = without_fragment.partition("?")
    return raw_path, (query if sep else None)
