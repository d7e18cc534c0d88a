"""Forwarding a plain GET on the fast path: pass-through without aiohttp on either side.

The fast path hands over a GET that no cached rule covers, with no body, no upgrade and
keep-alive (llhttp parsed it). Its headers are rewritten by ``forward_headers.to_upstream``, the
same rules the slow path applies, and sent on a pooled connection (``origin_pool``); the
response streams back as llhttp parses it: hop-by-hop headers dropped as in ``end_to_end``, the
body relayed with the app's Content-Length or re-chunked when the app gave none. Flow control
holds: when the client reads slowly, reading from the app pauses.

Failures keep the slow path's answers: the app unreachable or silent before its headers gives
the same 502/504 JSON (a reused connection that the app had closed is retried once on a new
one, as nothing of the response had arrived); a body that breaks off closes the client's
connection, so a truncated response never looks complete.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from email.utils import formatdate
from typing import TYPE_CHECKING

from multidict import CIMultiDict, CIMultiDictProxy

from tina4_sidecar.proxy.http.cache_headers import SURROGATE_ONLY
from tina4_sidecar.proxy.http.forward_headers import HOP_BY_HOP, TrustedProxies, to_upstream
from tina4_sidecar.proxy.origin.errors import gateway_error_body
from tina4_sidecar.proxy.origin.pool import OriginConnection

if TYPE_CHECKING:
    from tina4_sidecar.proxy.origin.forwarder import Forwarder

log = logging.getLogger("tina4_sidecar.proxy")

_HOP_BY_HOP = frozenset(name.encode() for name in HOP_BY_HOP)

# What the relay does with a response header, learnt once per spelling of its name: most
# responses repeat the same dozen names, and a dict lookup is cheaper than lowering each.
_KEEP, _DROP, _CONNECTION, _LENGTH, _DATE = range(5)
_KINDS_LIMIT = 4096


class HeaderKinds:
    """The kinds learnt for one set of dropped names: hop-by-hop, plus the cache's own (the tag
    header and Surrogate-Control never reach a client, on any route)."""

    _by_tag_header: dict[str, HeaderKinds] = {}

    def __init__(self, tag_header: str) -> None:
        self.dropped = _HOP_BY_HOP | {name.lower().encode() for name in (*SURROGATE_ONLY, tag_header)}
        self.kinds: dict[bytes, int] = {}

    @classmethod
    def for_tag_header(cls, tag_header: str) -> HeaderKinds:
        kinds = cls._by_tag_header.get(tag_header)
        if kinds is None:
            kinds = cls._by_tag_header[tag_header] = cls(tag_header)
        return kinds

    def learn(self, name: bytes) -> int:
        lower = name.lower()
        if lower == b"connection":
            kind = _CONNECTION
        elif lower in self.dropped:
            kind = _DROP
        elif lower == b"content-length":
            kind = _LENGTH
        elif lower == b"date":
            kind = _DATE
        else:
            kind = _KEEP
        if len(self.kinds) < _KINDS_LIMIT and len(name) <= 64:  # the app's names, not every spelling
            self.kinds[name] = kind
        return kind


def _without_named(
    headers: list[tuple[bytes, bytes]], dropped: frozenset[bytes]
) -> tuple[list[bytes], bool, bool]:
    """The header lines without hop-by-hop ones (and the cache's own) and those a Connection
    header names (RFC 9110 section 7.6.1), and whether Content-Length and Date are among them."""
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    }
    kept = [(name.lower(), name + b": " + value) for name, value in headers]
    kept = [(lower, line) for lower, line in kept if lower not in dropped and lower not in named]
    lowers = {lower for lower, _ in kept}
    return [line for _, line in kept], b"content-length" in lowers, b"date" in lowers


def _names_more(connection: bytes) -> bool:
    """A Connection value naming headers beyond the hop-by-hop ones (``keep-alive``, ``close``)."""
    tokens = {token.strip().lower() for token in connection.split(b",")}
    return bool(tokens - _HOP_BY_HOP - {b"close", b""})


class Relay:
    """One response, written to the client as it is parsed (the ``Exchange`` of ``origin_pool``)."""

    __slots__ = ("chunked", "client_gone", "forwarder", "origin", "pending", "request", "reused", "written")

    outcome = "pass"
    """What ``Forwarder.finished`` reports for it (the metrics outcome)."""
    outlives_client = False
    """Whether it reads on when the client leaves (a fill does, for the store and its waiters)."""

    def __init__(self, forwarder: Forwarder, origin: OriginConnection, request: bytes, reused: bool) -> None:
        self.forwarder = forwarder
        self.origin = origin
        self.request = request
        self.reused = reused
        self.pending: list[bytes] = []
        """Parsed output of the current read from the app: one write per read, not per piece."""
        self.written = False
        self.chunked = False
        self.client_gone = False

    def response_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        out = [b"HTTP/1.1 %d %s" % (status, reason)]
        length_known = status in (204, 304)
        dated = False
        learnt = self.forwarder.header_kinds
        kinds = learnt.kinds
        for name, value in headers:
            kind = kinds.get(name)
            if kind is None:
                kind = learnt.learn(name)
            if kind == _KEEP:
                out.append(name + b": " + value)
            elif kind == _LENGTH:
                length_known = True
                out.append(name + b": " + value)
            elif kind == _DATE:
                dated = True
                out.append(name + b": " + value)
            elif kind == _CONNECTION and _names_more(value):
                out[1:], length_known, dated = _without_named(headers, learnt.dropped)  # rare: the slow way
                length_known = length_known or status in (204, 304)
                break
        if not dated:  # RFC 9110 section 6.6.1: a recipient with a clock adds the one missing
            out.append(b"Date: " + formatdate(usegmt=True).encode())
        if not length_known:
            self.chunked = True
            out.append(b"Transfer-Encoding: chunked")
        out.append(b"\r\n")
        self.pending.append(b"\r\n".join(out))

    def response_body(self, chunk: bytes) -> None:
        self.origin.pool.received(len(chunk))
        if self.chunked:
            self.pending += (b"%x\r\n" % len(chunk), chunk, b"\r\n")
        else:
            self.pending.append(chunk)

    def response_end(self) -> None:
        if self.chunked:
            self.pending.append(b"0\r\n\r\n")
        self.flush()
        self.forwarder.relayed(self, None, True)

    def flush(self) -> None:
        if self.pending:
            if not self.client_gone:
                self.forwarder.client.write(b"".join(self.pending))
            self.pending.clear()
            self.written = True

    def response_failed(self, exc: Exception, received: bool) -> None:
        self.forwarder.relayed(self, exc, received)


def upstream_request(
    target: bytes, headers: Mapping[str, str], client_ip: str | None, host: str, trusted: TrustedProxies
) -> bytes:
    """The GET for the app: the slow path's header rules, serialised."""
    multi = headers if isinstance(headers, CIMultiDict) else CIMultiDict(headers)
    return serialised(
        "GET",
        target.decode("latin-1"),
        to_upstream(CIMultiDictProxy(multi), client_ip, "http", host, trusted),
    )


def serialised(method: str, target: str, headers: CIMultiDict[str]) -> bytes:
    """A request head as bytes for a raw connection to the app."""
    lines = [f"{method} {target} HTTP/1.1"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


def gateway_error_bytes(upstream: str, exc: Exception) -> bytes:
    """The slow path's 502/504 JSON answer, as bytes for the client's transport."""
    status, body = gateway_error_body(upstream, exc)
    data = body.encode()
    reason = b"Gateway Timeout" if status == 504 else b"Bad Gateway"
    return b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (status, reason),
            b"Content-Type: application/json; charset=utf-8\r\n",
            b"Content-Length: %d\r\n" % len(data),
            b"Date: " + formatdate(usegmt=True).encode() + b"\r\n\r\n",
            data,
        )
    )
