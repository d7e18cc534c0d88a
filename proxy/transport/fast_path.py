"""The fast path: the protocol that accepts every client connection, below aiohttp's web layer.

It is the front door: it refuses connections beyond TINA4_SIDECAR_MAX_CONNECTIONS, gives each
request head TINA4_SIDECAR_HEADER_TIMEOUT to arrive and each idle connection
TINA4_SIDECAR_KEEPALIVE_TIMEOUT, answers 414/431 to heads over the size limits, and stops reading
from a client that sends far ahead of its answers (``limits``). With TINA4_SIDECAR_FAST_PATH off,
that is all it does: each request goes to aiohttp once its head is in.

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

from tina4_sidecar.proxy.access_log import REQUEST_IDS, Meter
from tina4_sidecar.proxy.http.freshness import should_refresh_early
from tina4_sidecar.proxy.http.limits import Limits, oversized_head, refusal
from tina4_sidecar.proxy.http.request_head import RequestHead
from tina4_sidecar.proxy.http.reuse import Reuse, reuse
from tina4_sidecar.proxy.lookup import lookup
from tina4_sidecar.proxy.near.cache import Prebuilt, hit_headers
from tina4_sidecar.proxy.origin.relay import Forwarder, HeaderKinds, upstream_request
from tina4_sidecar.proxy.transport.fast_request import BlockParser, Seen, SeenRequests, answerable, decide

if TYPE_CHECKING:
    from aiohttp import web

    from tina4_sidecar.config.rules import Rule
    from tina4_sidecar.proxy.sidecar import Sidecar

log = logging.getLogger("tina4_sidecar.fast_path")

HEAD_END = b"\r\n\r\n"
LINGER = 1.0
LINGER_BYTES = 1024 * 1024
"""A refused connection is read and dropped for LINGER seconds or LINGER_BYTES bytes, whichever
comes first, before it closes (see ``FastPath._refuse``)."""


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


def route_label(rule: Rule | None) -> str | None:
    """The metrics label of a HIT: the cached rule's path pattern, None in standards mode without one."""
    return rule.path if rule is not None and rule.cache else None


class FastPath(asyncio.Protocol):
    def __init__(self, sidecar: Sidecar, slow: web.Server, seen: SeenRequests, limits: Limits) -> None:
        self.sidecar = sidecar
        self.slow = slow
        self.seen_requests = seen
        """The listener's decisions by header block, shared by its connections."""
        self.limits = limits
        self.answering = sidecar.settings.fast_path
        self.strips_cookies = sidecar.settings.strip_anonymous_cookies
        """False: the front door only; every request goes to aiohttp once its head is in."""
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.lookup: asyncio.Task[None] | None = None
        self.handed_off = False
        self.draining = False
        """SIGTERM: close once the requests received so far are answered (``drain``)."""
        self.discarding = False
        self.discarded = 0
        self.reading_paused = False
        self.timer: asyncio.TimerHandle | None = None
        self.last_active = 0.0
        self.head_started = 0.0
        """When the first byte of the head being read arrived (0: no head being read)."""
        self.client_ip: str | None = None
        self.parser = BlockParser()

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.loop = asyncio.get_running_loop()
        if self.sidecar.open_connections(self.slow) >= self.limits.max_connections:
            self.sidecar.metrics.connection_refused(self.limits.max_connections)
            self.handed_off = True  # nothing more of this connection is ours
            self.transport.abort()
            return
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0] if isinstance(peer, tuple) else None
        self.sidecar.fast_connections.add(self.transport)
        self.meter = Meter(self.transport)  # the access log's status and bytes of forwarded GETs
        self.forwarder = Forwarder(
            self.sidecar.origin,
            cast(asyncio.Transport, self.meter),
            self.sidecar.upstream.base_url,
            self._forwarded,
            HeaderKinds.for_tag_header(self.sidecar.settings.tag_header),
        )
        self.forward_started = 0.0
        self.forward_head: RequestHead | None = None
        self.forward_id = ""
        self.last_active = self.loop.time()
        self.timer = self.loop.call_later(self.limits.keepalive_timeout, self._check_timer)

    def data_received(self, data: bytes) -> None:
        if self.discarding:  # a refused connection, lingering until it closes
            self.discarded += len(data)
            if self.discarded > LINGER_BYTES and self.transport is not None:
                self.transport.close()
            return
        self.buffer += data
        self.last_active = self.loop.time()
        if self.lookup is None and not self.forwarder.busy:
            self._serve()
        elif len(self.buffer) > self.limits.pause_above and not self.reading_paused:
            self._pause_reading()  # far ahead of its answers: wait until they are out

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.sidecar.fast_connections.discard(self.transport)
        if self.timer is not None:
            self.timer.cancel()
        if self.lookup is not None:
            self.lookup.cancel()
        if self.handed_off and not hasattr(self, "forwarder"):
            return  # refused at once
        self.forwarder.abort()
        self.forwarder.detach()  # no reference back to this protocol: its memory goes at once
        self.buffer = bytearray()

    def pause_writing(self) -> None:
        # A slow reader must not make us buffer without bound: stop reading from it and the app.
        self._pause_reading()
        self.forwarder.pause()

    def resume_writing(self) -> None:
        self._resume_reading()
        self.forwarder.resume()

    def _pause_reading(self) -> None:
        if self.transport is not None and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.transport is not None and self.reading_paused and (self.discarding or not self.handed_off):
            self.reading_paused = False
            self.transport.resume_reading()

    # -- the fast path ---------------------------------------------------------------------------

    def _serve(self) -> None:
        """Answer complete header blocks in order; stop at the first that needs the slow path."""
        limits = self.limits
        while not self.handed_off and self.lookup is None and not self.forwarder.busy:
            buffer = self.buffer
            if self.reading_paused and len(buffer) <= limits.pause_above:
                self._resume_reading()
            if not buffer:
                return
            end = buffer.find(HEAD_END, 0, limits.max_header_bytes + 4)
            if end < 0:
                if self.draining and not buffer:
                    self._close_if_drained()
                if buffer and not self.head_started:
                    self.head_started = self.loop.time()
                too_big = oversized_head(buffer, None, limits)
                if too_big is not None:
                    self._refuse(too_big)
                elif len(buffer) > limits.max_header_bytes:
                    self._refuse(431)
                return
            block_length = end + len(HEAD_END)
            self.head_started = 0.0
            # A head shorter than the request-line limit breaks neither limit: no need to look.
            if block_length > limits.smallest:
                too_big = oversized_head(buffer, block_length, limits)
                if too_big is not None:
                    self._refuse(too_big)
                    return
            block = bytes(buffer) if block_length == len(buffer) else bytes(buffer[:block_length])
            if self.answering:
                seen = self._seen(block)
                if seen is not None and self.strips_cookies and "cookie" in seen.head.headers:
                    seen = None  # aiohttp's path removes anonymous cookies (proxy/front.py)
            else:
                self.parser.parse(block)  # only to learn whether it is the connection's last request
                seen = None
            if seen is None:
                if self.parser.closing:
                    del buffer[block_length:]  # requests pipelined after it are never read
                self._hand_off()
                return
            head = seen.head
            if seen.forward:
                self.buffer_answered(block_length)
                self._forward(seen)
                return
            if not seen.cached:
                self._hand_off()
                return
            item = self._near_hit(head)
            if item is not None:
                self._answer(item, head, seen.route, block_length)
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
        settings = sidecar.settings
        seen = decide(
            head,
            target,
            rules,
            sidecar.origin is not None,
            settings.admin_prefix,
            settings.honor_cache_control,
            settings.manifest_path,
        )
        self.seen_requests.remember(block, seen)
        return seen

    def _forward(self, seen: Seen) -> None:
        request = seen.forwarded.get(self.client_ip)
        if request is None:
            head = seen.head
            request = upstream_request(
                seen.target, head.headers, self.client_ip, head.host, self.sidecar.trusted
            )
            if len(seen.forwarded) < 8:
                seen.forwarded[self.client_ip] = request
        self.forward_started = time.monotonic()
        given = seen.head.headers.get("X-Request-ID")
        request_id = REQUEST_IDS.of(given)
        if given is None:  # made here and sent to the app too
            request = b"%sX-Request-ID: %s\r\n\r\n" % (request[:-2], request_id.encode())
        self.forward_head, self.forward_id = seen.head, request_id
        self.meter.reset()
        self.forwarder.start(request)

    def drain(self) -> None:
        """The sidecar is stopping: answer what was received, then close (idle: close now)."""
        self.draining = True
        self._close_if_drained()

    def _close_if_drained(self) -> None:
        if self.handed_off or self.transport is None or self.lookup is not None or self.forwarder.busy:
            return
        if not self.buffer:
            self.transport.close()

    def _forwarded(self, outcome: str) -> None:
        took = time.monotonic() - self.forward_started
        self.sidecar.metrics.request(outcome, None, took)
        head, meter = self.forward_head, self.meter
        self.sidecar.metrics.answered(outcome, meter.status, meter.bytes)
        if self.sidecar.access.enabled and head is not None:
            upstream = meter.first_at - self.forward_started if outcome == "pass" else None
            target = f"{head.raw_path}?{head.query}" if head.query else head.raw_path
            self.sidecar.access.line(
                "GET", target, meter.status, meter.bytes, took, outcome, upstream, self.forward_id
            )
        if self.buffer and not self.handed_off:
            self._serve()
        elif self.draining:
            self._close_if_drained()

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
        if reuse(entry, now) is not Reuse.FRESH:
            return False
        # An early refresh needs the request's headers for the app: the slow path does it.
        return not should_refresh_early(entry, now, self.sidecar.settings.early_refresh_beta)

    async def _store_lookup(self, head: RequestHead, block_length: int) -> None:
        try:
            rule = self.sidecar.rules.match(head.method, head.path)
            if not answerable(head, rule, self.sidecar.settings.honor_cache_control):  # the rules changed
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
            self._answer(item, head, route_label(rule), block_length)
        except Exception as exc:  # never leave a connection hanging on a bug: aiohttp answers
            log.warning("fast path lookup failed: %s", exc)
            self._hand_off()
            return
        finally:
            self.lookup = None
        if self.buffer and not self.handed_off:
            self._serve()
        elif self.draining:
            self._close_if_drained()

    def _answer(self, item: Prebuilt, head: RequestHead, route: str | None, block_length: int) -> None:
        started = time.monotonic()
        self.buffer_answered(block_length)
        assert self.transport is not None
        dynamic = hit_headers(item, self.sidecar.name, CLOCK)
        if head.method == "HEAD":
            data = item.status_and_headers + dynamic
        else:
            data = b"".join((item.status_and_headers, dynamic, item.entry.body))
        self.transport.write(data)
        took = time.monotonic() - started
        metrics = self.sidecar.metrics
        metrics.request("hit", route, took)
        metrics.fast_hits += 1
        metrics.answered("hit", item.entry.status, len(data))
        access = self.sidecar.access
        if access.enabled:
            request_id = REQUEST_IDS.of(head.headers.get("X-Request-ID"))
            target = f"{head.raw_path}?{head.query}" if head.query else head.raw_path
            access.line(head.method, target, item.entry.status, len(data), took, "hit", None, request_id)

    # -- handing the connection to aiohttp --------------------------------------------------------

    def _hand_off(self) -> None:
        """aiohttp's handler takes the connection over, with every byte not yet answered."""
        if self.handed_off or self.transport is None or self.transport.is_closing():
            return
        self.handed_off = True
        self.sidecar.fast_connections.discard(self.transport)
        if self.timer is not None:
            self.timer.cancel()
        if self.reading_paused:  # aiohttp's handler does its own flow control from here
            self.reading_paused = False
            self.transport.resume_reading()
        handler: Any = self.slow()
        self.transport.set_protocol(handler)
        handler.connection_made(self.transport)
        if self.buffer:
            pending, self.buffer = bytes(self.buffer), bytearray()
            handler.data_received(pending)

    def _refuse(self, status: int) -> None:
        """Answer a head the sidecar will not read (408, 414, 431) and close the connection.

        The close lingers (nginx's lingering_close): our side is shut for writing at once, and
        what the client still sends is read and dropped for a while (LINGER, LINGER_BYTES), so its
        unread bytes do not make the kernel reset the connection before the answer is read."""
        self.buffer = bytearray()
        self.handed_off = True  # nothing more of this connection is answered
        self.discarding = True
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(refusal(status))
        self._resume_reading()
        if transport.can_write_eof():
            transport.write_eof()
            self.loop.call_later(LINGER, transport.close)
        else:
            transport.close()

    def _check_timer(self) -> None:
        """One timer per connection, re-armed for whichever deadline comes next: the head being
        read (header timeout) or the connection idle between requests (keep-alive timeout)."""
        if self.handed_off or self.transport is None:
            return
        now = self.loop.time()
        if self.lookup is not None or self.forwarder.busy:
            deadline = now + self.limits.keepalive_timeout  # answering: the app's timeouts apply
        elif self.head_started:
            deadline = self.head_started + self.limits.header_timeout
            if now >= deadline:
                log.info(
                    "closing %s: request head not complete after %gs",
                    self.client_ip,
                    self.limits.header_timeout,
                )
                self._refuse(408)
                return
        else:
            deadline = self.last_active + self.limits.keepalive_timeout
            if now >= deadline:
                self.transport.close()
                return
        self.timer = self.loop.call_later(max(deadline - now, 0.05), self._check_timer)
