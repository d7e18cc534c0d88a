"""The connection to the app: one pooled aiohttp client, configured to change nothing.

No cookie jar (a shared jar would hand one user's cookies to the next request), no automatic
decompression (bytes and Content-Encoding pass through untouched), no automatic headers,
no redirects followed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from yarl import URL

from tina4_sidecar.proxy.http.request_head import origin_form

_NO_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


class UpstreamUnavailable(Exception):
    """The app could not be reached (connection refused, DNS, reset before headers)."""


class UpstreamTimeout(Exception):
    """The app did not send response headers in time."""


UPSTREAM_ERRORS = (UpstreamUnavailable, UpstreamTimeout)
"""What a request to the app raises when the app did not answer (502/504 or stale-if-error)."""


class Upstream:
    def __init__(self, base_url: str, connect_timeout: float, read_timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30, enable_cleanup_closed=True),
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
        try:
            response = await self.session.request(
                method, self.url(raw_path_qs), headers=headers, data=data, allow_redirects=False
            )
        except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
            raise UpstreamTimeout(str(exc) or "timed out waiting for the app") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(str(exc) or type(exc).__name__) from exc
        try:
            yield response
        finally:
            response.release()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
