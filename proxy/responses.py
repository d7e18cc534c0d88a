"""aiohttp responses that carry what the app sent and nothing aiohttp would add of its own.

aiohttp's server adds ``Server: Python/3.x aiohttp/x`` (which advertises versions to every
scanner) and ``Content-Type: application/octet-stream`` to a body without one (which changes what
a browser does with the app's answer). The sidecar passes on the app's ``Server`` and
``Content-Type``, or none. aiohttp fills those two in while preparing the headers; these classes
take back whichever it added. (``Date`` is still added when missing: RFC 9110 section 6.6.1
asks a recipient with a clock to.)
"""

from __future__ import annotations

from aiohttp import hdrs, web

_ADDED_BY_AIOHTTP = (hdrs.SERVER, hdrs.CONTENT_TYPE)


class _AsSent:
    """Mixin for ``web.StreamResponse`` subclasses: drop the headers aiohttp added itself."""

    async def _prepare_headers(self) -> None:
        headers = self.headers  # type: ignore[attr-defined]
        absent = [name for name in _ADDED_BY_AIOHTTP if name not in headers]
        await super()._prepare_headers()  # type: ignore[misc]
        for name in absent:
            headers.popall(name, None)


class StreamResponse(_AsSent, web.StreamResponse):
    """A streamed answer (the app's body relayed as it arrives)."""


class Response(_AsSent, web.Response):
    """A whole answer (a cached entry, an error the sidecar makes)."""
