"""The HIT fast path: a protocol below aiohttp's web layer that answers fresh HITs from prebuilt bytes.

It reads each request's header block (up to the blank line), parses it with llhttp (through
httptools, the binding uvicorn uses), and answers it itself only when all of this holds: one
complete GET or HEAD on HTTP/1.1 keep-alive, no body, no upgrade, no validators, a cached rule,
no credentials, and a fresh entry without Vary (from the near cache, else from the store). Any
other request, and everything after it on that connection, goes to aiohttp's handler with its
bytes untouched, so bodies, WebSockets, misses, errors and malformed input all take the one
well-tested path, and framing is only ever decided by llhttp.
"""

from __future__ import annotations

import asyncio
import logging
import time
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, cast

import httptools
from multidict import CIMultiDict
from tina4_sidecar.config.rules import Rule
from tina4_sidecar.proxy.cacheability import bypass_reason
from tina4_sidecar.proxy.freshness import State, should_refresh_early, state_of
from tina4_sidecar.proxy.lookup import lookup
from tina4_sidecar.proxy.near_cache import Prebuilt, hit_headers
from tina4_sidecar.proxy.request_head import RequestHead

if TYPE_CHECKING:
    from aiohttp import web
    from tina4_sidecar.proxy.sidecar import Sidecar

log = logging.getLogger("tina4_sidecar.fast_path")

HEAD_END = b"\r\n\r\n"
MAX_HEAD = 16 * 1024
IDLE_SECONDS = 75.0
_SLOW_HEADERS = (
    "content-length",
    "transfer-encoding",
    "upgrade",
    "if-none-match",
    "if-modified-since",
    "if-match",
    "if-unmodified-since",
    "if-range",
    "expect",
)


class _Parsed:
    """Callbacks for httptools: collects the one message of a header block."""

    __slots__ = ("complete", "headers", "messages", "url")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.url = b""
        self.headers: CIMultiDict[str] = CIMultiDict()
        self.messages = 0
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.add(name.decode("latin-1"), value.decode("latin-1"))

    def on_message_complete(self) -> None:
        self.messages += 1
        self.complete = True


class _Clock:
    """The Date header, formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def date(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._value = formatdate(second, usegmt=True).encode()
        return self._value


CLOCK = _Clock()


class FastPath(asyncio.Protocol):
    def __init__(self, sidecar: Sidecar, slow: web.Server) -> None:
        self.sidecar = sidecar
        self.slow = slow
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.lookup: asyncio.Task[None] | None = None
        self.handed_off = False
        self.idle: asyncio.TimerHandle | None = None
        # One llhttp parser per connection, fed one whole header block at a time (keep-alive).
        self.parsed = _Parsed()
        self.parser = httptools.HttpRequestParser(self.parsed)

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        transport = self.transport
        self.sidecar.fast_connections.add(transport)
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._arm_idle()
        if self.lookup is None:
            self._serve()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.sidecar.fast_connections.discard(self.transport)
        if self.idle is not None:
            self.idle.cancel()
        if self.lookup is not None:
            self.lookup.cancel()

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()  # a slow reader must not make us buffer without bound

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    # -- the fast path ---------------------------------------------------------------------------

    def _serve(self) -> None:
        """Answer complete header blocks in order; stop at the first that needs the slow path."""
        while not self.handed_off and self.lookup is None:
            end = self.buffer.find(HEAD_END)
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self._hand_off()  # aiohttp answers the oversized head (431/400)
                return
            block_length = end + len(HEAD_END)
            head = self._parse(bytes(self.buffer[:block_length]))
            if head is None:
                self._hand_off()
                return
            rule = self._cached_rule(head)
            if rule is None:
                self._hand_off()
                return
            item = self._near_hit(head)
            if item is not None:
                self._answer(item, head.method == "HEAD", rule.path, block_length)
                continue
            self.lookup = asyncio.get_running_loop().create_task(self._store_lookup(head, block_length))

    def _parse(self, block: bytes) -> RequestHead | None:
        parsed, parser = self.parsed, self.parser
        parsed.reset()
        try:
            parser.feed_data(block)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            return None
        if not parsed.complete or parsed.messages != 1 or parser.get_http_version() != "1.1":
            return None
        method = parser.get_method().decode("ascii")
        if method not in ("GET", "HEAD") or not parser.should_keep_alive():
            return None
        headers = parsed.headers
        if any(name in headers for name in _SLOW_HEADERS):
            return None
        try:
            url = httptools.parse_url(parsed.url)
        except httptools.HttpParserInvalidURLError:
            return None
        if url.schema is not None or url.fragment is not None:
            return None  # absolute-form or fragments: leave them to aiohttp
        raw_path = url.path.decode("latin-1") if url.path else "/"
        if "%" in raw_path or "\\" in raw_path:
            return None  # decoding rules differ between servers: the slow path handles them
        host = headers.get("Host")
        if host is None:
            return None
        return RequestHead(
            method=method,
            scheme="http",
            host=host,
            path=raw_path,
            raw_path=raw_path,
            query=url.query.decode("latin-1") if url.query else "",
            headers=headers,
        )

    def _cached_rule(self, head: RequestHead) -> Rule | None:
        """The rule when this request may be answered from the cache, else None."""
        rule = self.sidecar.rules.match(head.method, head.path)
        if rule is None or not rule.cache or rule.ttl <= 0 or bypass_reason(head, rule) is not None:
            return None
        return rule

    def _near_hit(self, head: RequestHead) -> Prebuilt | None:
        item = self.sidecar.near.get(self.sidecar.key_for(head), time.monotonic())
        if item is None or not self._servable(item):
            return None
        return item

    def _servable(self, item: Prebuilt) -> bool:
        now = time.time()
        entry = item.entry
        if state_of(entry, now) is not State.FRESH:
            return False
        # An early refresh needs the request's headers for the app: the slow path does it.
        return not should_refresh_early(entry, now, self.sidecar.settings.early_refresh_beta)

    async def _store_lookup(self, head: RequestHead, block_length: int) -> None:
        try:
            rule = self._cached_rule(head)
            if rule is None:  # the rules changed while this lookup waited its turn
                self._hand_off()
                return
            primary = self.sidecar.key_for(head)
            found = await lookup(self.sidecar, primary, head)
            entry = found.entry
            if entry is None or entry.vary or found.key != primary:
                self._hand_off()
                return
            item = self.sidecar.near.put(primary, entry)
            if item is None or not self._servable(item):
                self._hand_off()
                return
            self._answer(item, head.method == "HEAD", rule.path, block_length)
        except Exception as exc:  # never leave a connection hanging on a bug: aiohttp answers
            log.warning("fast path lookup failed: %s", exc)
            self._hand_off()
            return
        finally:
            self.lookup = None
        if self.buffer and not self.handed_off:
            self._serve()

    def _answer(self, item: Prebuilt, head_only: bool, route: str, block_length: int) -> None:
        started = time.monotonic()
        del self.buffer[:block_length]
        assert self.transport is not None
        dynamic = hit_headers(item, self.sidecar.name, CLOCK.date())
        if head_only:
            self.transport.write(item.status_and_headers + dynamic)
        else:
            self.transport.write(b"".join((item.status_and_headers, dynamic, item.entry.body)))
        self.sidecar.metrics.request("hit", route, time.monotonic() - started)
        self.sidecar.metrics.fast_hits += 1

    # -- handing the connection to aiohttp --------------------------------------------------------

    def _hand_off(self) -> None:
        """aiohttp's handler takes the connection over, with every byte not yet answered."""
        if self.handed_off or self.transport is None or self.transport.is_closing():
            return
        self.handed_off = True
        self.sidecar.fast_connections.discard(self.transport)
        if self.idle is not None:
            self.idle.cancel()
        handler: Any = self.slow()
        self.transport.set_protocol(handler)
        handler.connection_made(self.transport)
        if self.buffer:
            pending, self.buffer = bytes(self.buffer), bytearray()
            handler.data_received(pending)

    def _arm_idle(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.idle = asyncio.get_running_loop().call_later(IDLE_SECONDS, self._close_idle)

    def _close_idle(self) -> None:
        if not self.handed_off and self.transport is not None and self.lookup is None:
            self.transport.close()
