"""The connection to the app: one pooled aiohttp client, configured to change nothing.

No cookie jar (a shared jar would hand one user's cookies to the next request), no automatic
decompression (bytes and Content-Encoding pass through untouched), no automatic headers,
no redirects followed.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from yarl import URL

from tina4_sidecar.proxy.access_log import note_upstream
from tina4_sidecar.proxy.http.request_head import origin_form

_NO_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
_NO_BODY = frozenset({204, 304})


_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def malformed(status: int, raw_headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """What aiohttp's lenient client lets through that llhttp (the fast path's parser) refuses:
    a 101 nobody asked for (requests here never ask to upgrade: WebSockets go through
    ``ws_connect``), a header name that is not a token (``Content-Length : 2`` would be relayed
    as a header named ``Content-Length `` beside our own framing), a control character in a value
    (which aiohttp's server then refuses to write, a 500). None when the head is well-formed."""
    if status == 101:
        return "switched protocols for a request that asked for none"
    for name, value in raw_headers:
        if not _TOKEN.fullmatch(name):
            return f"invalid header name {name[:40]!r}"
        if _CONTROL.search(value):
            return f"control character in the value of {name[:40].decode('latin-1')}"
    return None


def close_watch(response: aiohttp.ClientResponse) -> asyncio.Future[None] | None:
    """For a body that only the connection's close ends (no Content-Length, not chunked): the
    future that says how the connection closed. aiohttp ends such a body on a reset just as on a
    clean close; ``cut_short`` tells them apart. None for every other body."""
    if response.content_length is not None or "chunked" in response.headers.get("Transfer-Encoding", ""):
        return None
    connection = response.connection
    protocol = connection.protocol if connection is not None else None
    closed = protocol.closed if protocol is not None else None
    if closed is not None:  # read it in any case, so a reset nobody asked about is never "unretrieved"
        closed.add_done_callback(lambda future: future.cancelled() or future.exception())
    return closed


def cut_short(watch: asyncio.Future[None] | None) -> bool:
    """The close-delimited body of ``close_watch`` ended with a reset, not a clean close."""
    return watch is not None and watch.done() and watch.exception() is not None


class UpstreamUnavailable(Exception):
    """The app could not be reached (connection refused, DNS, reset before headers)."""


class UpstreamTimeout(Exception):
    """The app did not send response headers in time."""


UPSTREAM_ERRORS = (UpstreamUnavailable, UpstreamTimeout)
"""What a request to the app raises when the app did not answer (502/504 or stale-if-error)."""


_RETRIED = (aiohttp.ClientResponseError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
"""Failures of a connection that may have been a reused one the app had closed, or one left with
bytes of an answer that did not frame itself: an idempotent request is sent once more (on a new
connection: the idle ones are dropped first). A connect that failed is not retried."""
_DROPPED = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
"""Failures that say the app closed a connection: the other idle ones are likely closed too."""


def closes(response: aiohttp.ClientResponse) -> bool:
    """A framed answer that closes its connection anyway (``Connection: close``, or HTTP/1.0
    without keep-alive): what an app that is shutting down sends (uvicorn does, for example)."""
    framed = response.content_length is not None or "chunked" in response.headers.get("Transfer-Encoding", "")
    # (read from the head: aiohttp has already released the connection of a body read whole)
    lines = response.headers.getall("Connection", ())
    tokens = {token.strip().lower() for line in lines for token in line.split(",")}
    if response.version is not None and response.version < aiohttp.HttpVersion11:
        return framed and "keep-alive" not in tokens
    return framed and "close" in tokens


def _ignore(size: int) -> None:
    """``Upstream.received`` until the sidecar points it at its metrics."""


class Upstream:
    def __init__(
        self, base_url: str, connect_timeout: float, read_timeout: float, keepalive: float = 4.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.keepalive = keepalive
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._session: aiohttp.ClientSession | None = None
        self._fresh_session: aiohttp.ClientSession | None = None
        self.generation = 0
        """Raised when the app is seen closing: connections in use then are closed, not pooled, after."""
        self.closing: Callable[[], object] = self.drop_idle
        self.received: Callable[[int], object] = _ignore
        """Told the body bytes of each response read from the app (the metrics' bytes from the app)."""
        """Called when the app is seen closing (a refused connect, a reused connection it had closed, a
        framed ``Connection: close`` answer); the sidecar points it at its ``app_closing``."""

    def drop_idle(self) -> int:
        """The app is closing: close the idle pooled connections now, and those in use once their
        response is read; returns how many idle ones were closed."""
        self.generation += 1
        if self._session is None:
            return 0
        # aiohttp has no public call for this: its connector keeps idle connections in ``_conns``
        # (tests/ops/test_app_restarts.py fails if a new aiohttp stops doing so).
        pools = self._session.connector._conns if self._session.connector is not None else {}
        dropped = 0
        for idle in pools.values():
            for protocol, _ in idle:
                protocol.close()
                dropped += 1
        pools.clear()
        return dropped

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = self._new_session(self.keepalive)
        return self._session

    @property
    def fresh_session(self) -> aiohttp.ClientSession:
        """A session that pools nothing: each request on a connection of its own."""
        if self._fresh_session is None:
            self._fresh_session = self._new_session(0)
        return self._fresh_session

    def _new_session(self, keepalive: float) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=0,
                # aiohttp closes idle connections on a timer of this period, those idle for one
                # period: half of ours, so that none stays idle longer than ``keepalive``.
                keepalive_timeout=keepalive / 2 if keepalive > 0 else None,
                force_close=keepalive <= 0,
                enable_cleanup_closed=True,
            ),
            timeout=self._timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=_NO_AUTO_HEADERS,
            read_bufsize=2**18,
        )

    def url(self, raw_path_qs: str) -> URL:
        """The app's URL for a request target as sent; an absolute-form target (RFC 9112 3.2.2)
        is reduced to its path and query, so it can never be glued onto the base URL."""
        return URL(self.base_url + origin_form(raw_path_qs), encoded=True)

    @asynccontextmanager
    async def request(
        self,
        method: str,
        raw_path_qs: str,
        headers: Mapping[str, str],
        data: Any = None,
        fresh: bool = False,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The app's response with headers read and the body not yet; errors become ours.

        ``fresh``: on a connection of its own, closed after (the manifest poll and the readiness
        probe): its connect is refused as soon as the app stops listening, which tells the pools."""
        url = self.url(raw_path_qs)
        session = self.fresh_session if fresh else self.session  # (it sends Connection: close)
        generation = self.generation
        asked = time.monotonic()
        try:
            try:
                response = await session.request(
                    method, url, headers=headers, data=data, allow_redirects=False
                )
            except _RETRIED as exc:
                if isinstance(exc, aiohttp.ClientConnectorError):
                    raise  # a connect that failed is not retried (below: the pools are told)
                if isinstance(exc, _DROPPED):
                    self.closing()  # the app closed a pooled connection: the retry gets a new one
                if data is not None or method not in ("GET", "HEAD"):
                    raise
                response = await session.request(method, url, headers=headers, allow_redirects=False)
        except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
            raise UpstreamTimeout(str(exc) or "timed out waiting for the app") from exc
        except aiohttp.ClientError as exc:
            if isinstance(exc, aiohttp.ClientConnectorError):
                self.closing()  # refused: the app stopped listening, it waits for its open connections
            raise UpstreamUnavailable(str(exc) or type(exc).__name__) from exc
        note_upstream(time.monotonic() - asked)  # the access log's upstream time
        problem = malformed(response.status, response.raw_headers)
        if problem is not None:
            response.close()  # its connection is not reused either
            raise UpstreamUnavailable(f"malformed response from the app: {problem}")
        if not fresh and closes(response):
            self.closing()
        try:
            yield response
        finally:
            self.received(response.content.total_bytes)
            if fresh or self.generation != generation:
                response.close()  # opened before the app began closing: not pooled again
            elif response.status in _NO_BODY or method == "HEAD":
                # An answer that must not have a body, from an app that may send one anyway (Tina4's
                # server does, on a 204): bytes left behind would be read as the next request's
                # answer, so the connection is not reused.
                response.close()
            else:
                response.release()

    async def close(self) -> None:
        for session in (self._session, self._fresh_session):
            if session is not None:
                await session.close()
        self._session = self._fresh_session = None
