"""The fast path: the protocol that accepts every client connection, below aiohttp's web layer.

It is built on the front door (``front_door``: connection limits, timeouts, refusals, the hand-off
to aiohttp). With TINA4_SIDECAR_FAST_PATH off, that is all it does: each request goes to aiohttp
once its head is in.

It reads each request's header block (up to the blank line) and parses it with llhttp (through
httptools, the binding uvicorn uses). It answers a request itself when it is one complete GET or
HEAD on HTTP/1.1 keep-alive with no body, no upgrade and no expectation, and the one HTTP policy
(``fast_request.decide``) says the fast path may:

- a fresh entry without Vary (from the near cache, else from the store): the HIT is written from
  prebuilt bytes;
- a GET that no cached rule covers: forwarded to the app on a pooled raw connection
  (``origin.forwarder``), with the slow path's header rules and error answers;
- a GET for a cached route that missed: fetched on a pooled raw connection, streamed to the client
  while it is stored, coalesced with concurrent requests for the key (``fast_fill``).

Any other request, and everything after it on that connection, goes to aiohttp's handler with
its bytes untouched, so bodies, WebSockets, revalidation, errors and malformed input all take the
one well-tested path, and framing is only ever decided by llhttp.
"""

from __future__ import annotations

import asyncio
import logging
import time
from email.utils import formatdate
from typing import TYPE_CHECKING, cast

from tina4_sidecar.proxy.access_log import REQUEST_IDS, Meter
from tina4_sidecar.proxy.http import cacheability
from tina4_sidecar.proxy.http.freshness import should_refresh_early
from tina4_sidecar.proxy.http.limits import Limits, oversized_head
from tina4_sidecar.proxy.http.request_head import RequestHead
from tina4_sidecar.proxy.http.reuse import Reuse, reuse
from tina4_sidecar.proxy.lookup import lookup
from tina4_sidecar.proxy.near.cache import Prebuilt, hit_headers
from tina4_sidecar.proxy.origin.forwarder import Forwarder
from tina4_sidecar.proxy.origin.relay import HeaderKinds, upstream_request
from tina4_sidecar.proxy.transaction import Transaction
from tina4_sidecar.proxy.transport.fast_fill import miss
from tina4_sidecar.proxy.transport.fast_request import BlockParser, Seen, SeenRequests, answerable, decide
from tina4_sidecar.proxy.transport.front_door import LINGER_BYTES, FrontDoor

if TYPE_CHECKING:
    from aiohttp import web

    from tina4_sidecar.config.rules import Rule
    from tina4_sidecar.proxy.sidecar import Sidecar

log = logging.getLogger("tina4_sidecar.fast_path")

HEAD_END = b"\r\n\r\n"


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


class FastPath(FrontDoor):
    """The front door that answers HITs, forwards uncached GETs and fills misses itself."""

    def __init__(self, sidecar: Sidecar, slow: web.Server, seen: SeenRequests, limits: Limits) -> None:
        super().__init__(sidecar, slow, limits)
        self.seen_requests = seen
        """The listener's decisions by header block, shared by its connections."""
        self.answering = sidecar.settings.fast_path
        """False: the front door only; every request goes to aiohttp once its head is in."""
        self.strips_cookies = sidecar.settings.strip_anonymous_cookies
        self.draining = False
        """SIGTERM: close once the requests received so far are answered (``drain``)."""
        self.lookup: asyncio.Task[None] | None = None
        self.parser = BlockParser()

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.handed_off:
            return  # refused
        assert self.transport is not None
        self.meter = Meter(self.transport)  # the access log's status and bytes of forwards and fills
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
        super().connection_lost(exc)
        if self.lookup is not None:
            self.lookup.cancel()
        if not hasattr(self, "forwarder"):
            return  # refused at once
        self.forwarder.abort()
        self.forwarder.detach()  # no reference back to this protocol: its memory goes at once

    def pause_writing(self) -> None:
        # A slow reader must not make us buffer without bound: stop reading from it and the app.
        self._pause_reading()
        self.forwarder.pause()

    def resume_writing(self) -> None:
        self._resume_reading()
        self.forwarder.resume()

    def busy(self) -> bool:
        return self.lookup is not None or self.forwarder.busy

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
        given = seen.head.headers.get("X-Request-ID")
        request_id = self.starting(seen.head)
        if given is None:  # made here and sent to the app too
            request = b"%sX-Request-ID: %s\r\n\r\n" % (request[:-2], request_id.encode())
        self.forwarder.start(request)

    def starting(self, head: RequestHead) -> str:
        """A forward or fill of ``head`` begins on this connection: its request id."""
        self.forward_started = time.monotonic()
        self.forward_head = head
        self.forward_id = REQUEST_IDS.of(head.headers.get("X-Request-ID"))
        self.meter.reset()
        return self.forward_id

    def drain(self) -> None:
        """The sidecar is stopping: answer what was received, then close (idle: close now)."""
        self.draining = True
        self._close_if_drained()

    def _close_if_drained(self) -> None:
        if self.handed_off or self.transport is None or self.lookup is not None or self.forwarder.busy:
            return
        if not self.buffer:
            self.transport.close()

    def _forwarded(self, outcome: str, route: str | None) -> None:
        took = time.monotonic() - self.forward_started
        metrics, head, meter = self.sidecar.metrics, self.forward_head, self.meter
        metrics.request(outcome, route, took)
        metrics.answered(outcome, meter.status, meter.bytes)
        if self.sidecar.access.enabled and head is not None:
            upstream = meter.first_at - self.forward_started if outcome in ("pass", "miss") else None
            self.sidecar.access.line(
                head.method,
                _target(head),
                meter.status,
                meter.bytes,
                took,
                outcome,
                upstream,
                self.forward_id,
            )
        self._next()

    def _next(self) -> None:
        """An answer is out: serve what is buffered, or close a draining connection."""
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
            honor = self.sidecar.settings.honor_cache_control
            decision = cacheability.decide(head, rule, honor)
            if not answerable(head, decision, honor):  # the rules changed since the head was read
                self._hand_off()
                return
            primary = self.sidecar.key_for(head)
            generation = self.sidecar.near.generation  # before the read: see NearCache.put
            found = await lookup(self.sidecar, primary, head)
            entry = found.entry
            if entry is None and found.key == primary and self._fills(head):
                tx = Transaction(self.sidecar, head, rule, decision, self.client_ip)
                tx.key, tx.found = primary, found
                if not await miss(self, tx, generation, block_length):
                    self._hand_off()
                return
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
        self._next()

    def _fills(self, head: RequestHead) -> bool:
        """A miss the fast path fetches itself: a GET, and raw connections to the app to do it on."""
        return head.method == "GET" and self.sidecar.origin is not None

    def write_answer(
        self, data: bytes, status: int, outcome: str, head: RequestHead, route: str | None, block_length: int
    ) -> None:
        """A whole answer made elsewhere (a coalesced waiter's, an error) for the head in the buffer."""
        self.buffer_answered(block_length)
        assert self.transport is not None
        self.transport.write(data)
        self._count(head, status, outcome, route, len(data), 0.0)

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
        self.sidecar.metrics.fast_hits += 1
        self._count(head, item.entry.status, "hit", route, len(data), time.monotonic() - started)

    def _count(
        self, head: RequestHead, status: int, outcome: str, route: str | None, sent: int, took: float
    ) -> None:
        """Metrics and the access log line of an answer written whole."""
        metrics = self.sidecar.metrics
        metrics.request(outcome, route, took)
        metrics.answered(outcome, status, sent)
        access = self.sidecar.access
        if access.enabled:
            request_id = REQUEST_IDS.of(head.headers.get("X-Request-ID"))
            access.line(head.method, _target(head), status, sent, took, outcome, None, request_id)


def _target(head: RequestHead) -> str:
    return f"{head.raw_path}?{head.query}" if head.query else head.raw_path
