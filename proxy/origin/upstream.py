"""The connection to the app: one pooled aiohttp client, configured to change nothing.

No cookie jar (a shared jar would hand one user's cookies to the next request), no automatic
decompression (bytes and Content-Encoding pass through untouched), no automatic headers,
no redirects followed.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterable, Mapping
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
bytes of an answer that did not frame itself: an idempotent request is sent once more."""


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

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=0,
                    keepalive_timeout=self.keepalive,
                    force_close=self.keepalive <= 0,
                    enable_cleanup_closed=True,
                ),
                timeout=self._timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                skip_auto_headers=_NO_AUTO_HEADERS,
                read_bufsize=2**18,
            )
        return self._session

    def url(self, raw_path_qs: str) -> URL:
        """The app's URL for a request target as sent; an absolute-form target (RFC 9112 3.2.2)
        is reduced to its path and query, so it can never be glued onto the base URL."""
        return URL(self.base_url + origin_form(raw_path_qs), encoded=True)

    @asynccontextmanager
    async def request(
        self, method: str, raw_path_qs: str, headers: Mapping[str, str], data: Any = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The app's response with headers read and the body not yet; errors become ours."""
        url = self.url(raw_path_qs)
        asked = time.monotonic()
        try:
            try:
                response = await self.session.request(
                    method, url, headers=headers, data=data, allow_redirects=False
                )
            except _RETRIED:
                if data is not None or method not in ("GET", "HEAD"):
                    raise
                response = await self.session.request(method, url, headers=headers, allow_redirects=False)
        except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
            raise UpstreamTimeout(str(exc) or "timed out waiting for the app") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(str(exc) or type(exc).__name__) from exc
        note_upstream(time.monotonic() - asked)  # the access log's upstream time
        problem = malformed(response.status, response.raw_headers)
        if problem is not None:
            response.close()  # its connection is not reused either
            raise UpstreamUnavailable(f"malformed response from the app: {problem}")
        try:
            yield response
        finally:
            if response.status in _NO_BODY or method == "HEAD":
                # An answer that must not have a body, from an app that may send one anyway (Tina4's
                # server does, on a 204): bytes left behind would be read as the next request's
                # answer, so the connection is not reused.
                response.close()
            else:
                response.release()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
