"""How aiohttp's server makes the request objects the pipeline handles: HTTP versions held to 1.x.

aiohttp answers on the request's own version, so a request line that llhttp read as HTTP/0.9
(``CONNECT  HTTP/1.1``, an empty target) or HTTP/2.0 would get an ``HTTP/0.9 400`` or an
``HTTP/2.0 502`` status line back. The request is made as HTTP/1.1 instead, with the version the
client sent remembered, and the pipeline refuses it before anything else (``unsupported_version``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http import HttpVersion, HttpVersion10, HttpVersion11, RawRequestMessage

SENT_VERSION = web.RequestKey("sent_version", HttpVersion)
"""The version of a request line that was not HTTP/1.0 or HTTP/1.1."""


def request_factory(loop: asyncio.AbstractEventLoop) -> Callable[..., web.BaseRequest]:
    """A ``web.Server(request_factory=...)`` that answers every request on HTTP/1.0 or 1.1."""

    def make(
        message: RawRequestMessage, payload: Any, protocol: Any, writer: Any, task: asyncio.Task[None]
    ) -> web.BaseRequest:
        state: dict[Any, Any] | None = None
        if message.version not in (HttpVersion10, HttpVersion11):
            state = {SENT_VERSION: message.version}
            message = message._replace(version=HttpVersion11, should_close=True)
        return web.BaseRequest(message, payload, protocol, writer, task, loop, state=state)

    return make


def unsupported_version(request: web.BaseRequest) -> web.Response | None:
    """The answer to a request line of another HTTP version: 505 for a later major version (RFC
    9110 section 15.6.6), 400 for a line without one; None for HTTP/1.0 and HTTP/1.1."""
    sent = request.get(SENT_VERSION)
    if sent is None:
        return None
    status, error = (505, "HTTP version not supported") if sent.major >= 2 else (400, "bad request line")
    detail = "this server speaks HTTP/1.0 and HTTP/1.1"
    body = json.dumps({"error": error, "status": status, "detail": detail})
    return web.Response(
        status=status, text=body, content_type="application/json", headers={"Connection": "close"}
    )
