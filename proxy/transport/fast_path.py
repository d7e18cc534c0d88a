"""The fast path: a protocol below aiohttp's web layer for the two commonest requests.

It reads each request's header block (up to the blank line) and parses it with llhttp (through
httptools, the binding uvicorn uses). It answers a request itself in two cases, both needing one
complete GET or HEAD on HTTP/1.1 keep-alive with no body, no upgrade and no expectation:

- a cached rule, no credentials, no validators and a fresh entry without Vary (from the near
  cache, else from the store): the HIT is written from prebuilt bytes;
- a GET that no cached rule covers: forwarded to the app on a pooled raw connection
  (``fast_forward``), with the slow path's header rules and error answers.

Any other request, and everything after it on that connection, goes to aiohttp's handler with
its bytes untouched, so bodies, WebSockets, misses, errors and malformed input all take the one
well-tested path, and framing is only ever decided by llhttp.
"""

from __future__ import annotations

import asyncio
import logging
import time
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, cast

from tina4_sidecar.proxy.http.freshness import State, should_refresh_early, state_of
from tina4_sidecar.proxy.http.request_head import RequestHead
from tina4_sidecar.proxy.lookup import lookup
from tina4_sidecar.proxy.near.cache import Prebuilt, hit_headers
from tina4_sidecar.proxy.origin.relay import Forwarder, upstream_request
from tina4_sidecar.proxy.transport.fast_request import BlockParser, Seen, SeenRequests, answerable, decide

if TYPE_CHECKING:
    from aiohttp import web

    from tina4_sidecar.proxy.sidecar import Sidecar

log = logging.getLogger("tina4_sidecar.fast_path")

HEAD_END = b"\r\n\r\n"
MAX_HEAD = 16 * 1024
IDLE_SECONDS = 75.0


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
    def __init__(self, sidecar: Sidecar, slow: web.Server, seen: SeenRequests) -> None:
        self.sidecar = sidecar
        self.slow = slow
        self.seen_requests = seen
        """The listener's decisions by header block, shared by its connections."""
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.lookup: asyncio.Task[None] | None = None
        self.handed_off = False
        self.idle: asyncio.TimerHandle | None = None
        self.last_active = 0.0
        self.client_ip: str | None = None
        self.parser = BlockParser()

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0] if isinstance(peer, tuple) else None
        self.sidecar.fast_connections.add(self.transport)
        self.loop = asyncio.get_running_loop()
        self.forwarder = Forwarder(
            self.sidecar.origin, self.transport, self.sidecar.upstream.base_url, self._forwarded
        )
        self.forward_started = 0.0
        self.last_active = self.loop.time()
        self.idle = self.loop.call_later(IDLE_SECONDS, self._check_idle)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.last_active = self.loop.time()
        if self.lookup is None and not self.forwarder.busy:
            self._serve()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.sidecar.fast_connections.discard(self.transport)
        if self.idle is not None:
            self.idle.cancel()
        if self.lookup is not None:
            self.lookup.cancel()
        self.forwarder.abort()

    def pause_writing(self) -> None:
        # A slow reader must not make us buffer without bound: stop reading from it and the app.
        if self.transport is not None:
            self.transport.pause_reading()
        self.forwarder.pause()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()
        self.forwarder.resume()

    # -- the fast path ---------------------------------------------------------------------------

    def _serve(self) -> None:
        """Answer complete header blocks in order; stop at the first that needs the slow path."""
        while not self.handed_off and self.lookup is None and not self.forwarder.busy:
            end = self.buffer.find(HEAD_END)
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self._hand_off()  # aiohttp answers the oversized head (431/400)
                return
            block_length = end + len(HEAD_END)
            buffer = self.buffer
            seen = self._seen(bytes(buffer) if block_length == len(buffer) else bytes(buffer[:block_length]))
            if seen is None:
                self._hand_off()
                return
            head = seen.head
            if seen.forward:
                self.buffer_answered(block_length)
                self._forward(seen)
                return
            if not seen.cached or seen.rule is None:
                self._hand_off()
                return
            item = self._near_hit(head)
            if item is not None:
                self._answer(item, head.method == "HEAD", seen.rule.path, block_length)
                continue
            self.lookup = self.loop.create_task(self._store_lookup(head, block_length))

    def _seen(self, block: bytes) -> Seen | None:
        """The block's parse and decision: remembered, or made now (None: not for the fast path)."""
        sidecar = self.sidecar
        rules = sidecar.rules
        seen = self.seen_requests.get(block, rules)
        if seen is not None:
            return seen
        parsed = self.parser.parse(block)
        if parsed is None:
            return None
        head, target = parsed
        seen = decide(head, target, rules, sidecar.origin is not None, sidecar.settings.admin_prefix)
        self.seen_requests.remember(block, seen)
        return seen

    def _forward(self, seen: Seen) -> None:
        request = seen.forwarded.get(self.client_ip)
        if request is None:
            head = seen.head
            request = upstream_request(seen.target, head.headers, self.client_ip, head.host)
            if len(seen.forwarded) < 8:
                seen.forwarded[self.client_ip] = request
        self.forward_started = time.monotonic()
        self.forwarder.start(request)

    def _forwarded(self, outcome: str) -> None:
        self.sidecar.metrics.request(outcome, None, time.monotonic() - self.forward_started)
        if self.buffer and not self.handed_off:
            self._serve()

    def buffer_answered(self, block_length: int) -> None:
        del self.buffer[:block_length]

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
            rule = self.sidecar.rules.match(head.method, head.path)
            if rule is None or not answerable(head, rule):  # the rules changed while it waited
                self._hand_off()
                return
            primary = self.sidecar.key_for(head)
            generation = self.sidecar.near.generation  # before the read: see NearCache.put
            found = await lookup(self.sidecar, primary, head)
            entry = found.entry
            if entry is None or entry.vary or found.key != primary:
                self._hand_off()
                return
            item = self.sidecar.near.put(primary, entry, generation)
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
        self.buffer_answered(block_length)
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

    def _check_idle(self) -> None:
        """Close a connection quiet for IDLE_SECONDS (one timer, not one per request)."""
        if self.handed_off or self.transport is None:
            return
        quiet = self.loop.time() - self.last_active
        if quiet >= IDLE_SECONDS and self.lookup is None and not self.forwarder.busy:
            self.transport.close()
            return
        self.idle = self.loop.call_later(max(IDLE_SECONDS - quiet, 1.0), self._check_idle)
