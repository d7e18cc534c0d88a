"""Raw keep-alive connections to the app, for requests the fast path forwards itself.

aiohttp's client builds a request object, a response object and a stream reader per request;
for a plain GET that the cache does not cover that costs more than the app's answer. Here each
connection is an ``asyncio.Protocol`` carrying one exchange at a time: the request's bytes go
out as they are handed in, the response is parsed by llhttp (httptools' ``HttpResponseParser``,
never by hand) and every parsed piece goes straight to the ``Exchange`` that asked.

Timeouts follow the aiohttp client's meaning: ``connect_timeout`` to open a connection, and
``read_timeout`` as the longest silence from the app while a response is due (before the
headers and between body reads).

One request, one response: a connection goes back to the pool at most once per request it
carried, and only after the read that completed the response has been parsed to its end. A byte
after a complete response (a body on a 204 or 304, a second response nobody asked for) means the
app's framing cannot be trusted: the connection is closed, never pooled, so the next request can
never be answered with bytes meant for another (a user's page with their cookie, say).

Both transports read the app alike. llhttp parses strictly here (its C checks cost nothing on the
hot path); a response head it refuses is parsed once more the way aiohttp's client (the other
transport) parses every head, by llhttp with aiohttp's leniencies and the same ``malformed`` check
after it, so a header continued on the next line (obs-fold, RFC 9112 §5.2) is unfolded on both,
and what aiohttp would refuse gets a 502 on both. A connection that needed it is not reused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol, cast
from urllib.parse import urlsplit

import httptools

from tina4_sidecar.proxy.origin.upstream import UpstreamTimeout, UpstreamUnavailable, malformed


class Exchange(Protocol):
    """The receiver of one response, called from llhttp's callbacks in the order they happen."""

    def response_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None: ...

    def response_body(self, chunk: bytes) -> None: ...

    def response_end(self) -> None: ...

    def flush(self) -> None:
        """The end of one read from the app: what it produced may go out as one write."""

    def response_failed(self, exc: Exception, received: bool) -> None:
        """``received``: some of the response had arrived (it cannot be retried)."""


class OriginConnection(asyncio.Protocol):
    def __init__(self, pool: OriginPool) -> None:
        self.pool = pool
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        # A bare LF as line end, as aiohttp's client (the other transport) and nginx accept it
        # from an upstream; everything else of llhttp's strictness stays.
        self.parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=True)
        self.head_reads: list[bytes] | None = None
        """The reads of a response whose head is not parsed yet, for a lenient second parse."""
        self.lenient = False
        self.exchange: Exchange | None = None
        self.completed: Exchange | None = None
        """The exchange whose response just ended, until the read that ended it is parsed whole."""
        self.reusable = False
        self.poisoned = False
        """Bytes came that no request asked for: the connection is closed, never reused."""
        self.open = True
        self.received = False
        self.informational = False
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.refused: str | None = None
        """Why the lenient parse refused a head (``malformed``), for the 502's log line."""
        self.body_until_close = False
        self.framed = False
        self.last_read = 0.0
        self.idle_since = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.generation = pool.generation
        """The pool's generation when it opened: one opened before the app began closing is not pooled."""

    def send(self, exchange: Exchange, request: bytes) -> None:
        assert self.transport is not None
        self.exchange = exchange
        self.received = False
        self._new_message()
        self.head_reads = []
        self.last_read = self.loop.time()
        if self.timer is None:  # one timer that re-arms itself, not one per request
            self.timer = self.loop.call_later(self.pool.read_timeout, self._check_silence)
        self.transport.write(request)

    def abort(self) -> None:
        """Give up on the exchange (its client left): the connection cannot be reused."""
        self.exchange = None
        self._stop_timer()
        if self.transport is not None:
            self.transport.close()

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:
            self.abort()  # bytes nobody asked for: this connection's framing cannot be trusted
            return
        self.received = True
        self.last_read = self.loop.time()
        if self.head_reads is not None:
            self.head_reads.append(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamUnavailable("the app switched protocols for a request that asked for none"))
            return
        except httptools.HttpParserError as exc:
            if self.completed is None:
                if self.head_reads is None or self.lenient or not self._parse_leniently():
                    self._fail(UpstreamUnavailable(f"malformed response from the app: {self.refused or exc}"))
                    return
            else:
                self.poisoned = True  # garbage after a whole response: it stands, the connection does not
        if self.completed is not None:
            self._complete()
        else:
            exchange.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self.pool.forget(self)
        if self.exchange is None:
            return
        if self.body_until_close and exc is None:  # no Content-Length, no chunks: a clean close ends it
            self.on_message_complete()
            self._complete()
            return  # (a reset instead is a body cut short: failed below, never complete-looking)
        self._fail(UpstreamUnavailable(f"the app closed the connection ({exc or 'EOF'})"))

    def _parse_leniently(self) -> bool:
        """The head llhttp refused, parsed again as aiohttp's client parses it; False if that fails too."""
        reads, self.head_reads = self.head_reads or [], None
        self.lenient = self.poisoned = True  # one lenient response, then the connection is closed
        self.parser = httptools.HttpResponseParser(self)
        self.parser.set_dangerous_leniencies(
            lenient_headers=True, lenient_optional_cr_before_lf=True, lenient_spaces_after_chunk_size=True
        )
        self._new_message()
        try:
            self.parser.feed_data(b"".join(reads))
        except httptools.HttpParserUpgrade:
            self.refused = "the app switched protocols for a request that asked for none"
            return False
        except httptools.HttpParserError:
            return False
        return True

    def _complete(self) -> None:
        """The response ended and its read is parsed whole: pool the connection (once) if clean."""
        exchange, self.completed = self.completed, None
        if not self.reusable and self.open and not self.body_until_close:
            self.pool.closing()  # a framed answer that closes anyway (Connection: close): the app goes
        self.pool.release(self, self.reusable and not self.poisoned and self.open)
        if exchange is not None:
            exchange.response_end()

    # -- llhttp callbacks --------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        # llhttp calls this on the first byte of a message: one with no request waiting for it
        # is a response nobody asked for (or the rest of a body a 204 must not have).
        if self.exchange is None:
            self.poisoned = True

    def _new_message(self) -> None:
        self.reason = b""
        self.headers = []
        self.framed = False
        self.body_until_close = False

    def on_status(self, reason: bytes) -> None:
        if self.exchange is not None:
            self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.exchange is None:
            return
        self.headers.append((name, value))
        # len() first: lowering every name of every response costs more than the rest of this.
        if len(name) in (14, 17) and name.lower() in (b"content-length", b"transfer-encoding"):
            self.framed = True

    def on_headers_complete(self) -> None:
        if self.exchange is None:
            return
        status = self.parser.get_status_code()
        self.informational = 100 <= status < 200
        if self.informational or self.exchange is None:
            return  # 1xx interim responses are not relayed; the final one follows
        if self.lenient:
            self.refused = malformed(status, self.headers)
            if self.refused is not None:
                raise ValueError(self.refused)  # llhttp stops: the exchange fails with a 502
        self.head_reads = None
        self.body_until_close = status not in (204, 304) and not self.framed
        self.exchange.response_head(status, self.reason, self.headers)

    def on_body(self, body: bytes) -> None:
        if self.exchange is not None:
            self.exchange.response_body(body)

    def on_message_complete(self) -> None:
        if self.exchange is None:
            self.poisoned = True  # a second response in one read
            return
        if self.informational:
            self.informational = False
            self._new_message()
            return
        self.completed, self.exchange = self.exchange, None
        self.reusable = self.open and not self.body_until_close and self.parser.should_keep_alive()

    # -- failures ----------------------------------------------------------------------------------

    def _check_silence(self) -> None:
        if self.exchange is None:  # idle: the next send() arms it again
            self.timer = None
            return
        silent = self.loop.time() - self.last_read
        if silent >= self.pool.read_timeout:
            self._fail(UpstreamTimeout(f"no answer from the app for {self.pool.read_timeout:g}s"))
        else:
            self.timer = self.loop.call_later(self.pool.read_timeout - silent, self._check_silence)

    def _fail(self, exc: Exception) -> None:
        exchange, received = self.exchange, self.received
        self.abort()
        if exchange is not None:
            exchange.response_failed(exc, received)

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def _ignore(size: int) -> None:
    """``OriginPool.received`` until the sidecar points it at its metrics."""


class OriginPool:
    """Idle keep-alive connections to one ``http://host:port[/prefix]`` app, reused newest first."""

    def __init__(
        self, base_url: str, connect_timeout: float, read_timeout: float, keepalive: float = 4.0
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"only http:// apps are forwarded below aiohttp, not {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/").encode("latin-1")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keepalive = keepalive
        """Seconds an idle connection may wait to be reused (TINA4_SIDECAR_UPSTREAM_KEEPALIVE)."""
        self._idle: list[OriginConnection] = []
        self._closed = False
        self._expiry: asyncio.TimerHandle | None = None
        self.generation = 0
        """Raised when the app is seen closing: older connections are closed once their exchange ends."""
        self.closing: Callable[[], object] = self.drop_idle
        """Called when the app is seen closing (a refused connect, a framed ``Connection: close`` answer);
        the sidecar points it at its ``app_closing``, which drops both transports' idle connections."""
        self.received: Callable[[int], object] = _ignore
        """Told the size of each body chunk relayed from the app (the metrics' bytes from the app)."""

    def take(self) -> OriginConnection | None:
        """An idle connection, newest first (the app may still close it as it is reused); those idle
        for longer than ``keepalive`` are closed instead (the app may be closing them right now)."""
        if self._idle and self._idle[0].idle_since < asyncio.get_running_loop().time() - self.keepalive:
            self._close_stale()
        while self._idle:
            connection = self._idle.pop()
            if connection.open and connection.transport is not None and not connection.transport.is_closing():
                return connection
        return None

    def _close_stale(self) -> None:
        oldest = asyncio.get_running_loop().time() - self.keepalive
        stale = [connection for connection in self._idle if connection.idle_since < oldest]
        self._idle = [connection for connection in self._idle if connection.idle_since >= oldest]
        for connection in stale:
            connection.abort()

    async def connect(self) -> OriginConnection:
        """A new connection; ``UPSTREAM_ERRORS`` when the app cannot be reached in time."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, protocol = await loop.create_connection(
                    lambda: OriginConnection(self), self.host, self.port
                )
        except TimeoutError as exc:
            raise UpstreamTimeout(f"connecting to the app took over {self.connect_timeout:g}s") from exc
        except OSError as exc:
            self.closing()  # refused: the app stopped listening, it waits for its open connections to end
            raise UpstreamUnavailable(str(exc) or type(exc).__name__) from exc
        return protocol

    def release(self, connection: OriginConnection, reusable: bool) -> None:
        """The end of one exchange on ``connection``: idle again, or closed."""
        if reusable and not self._closed and self.keepalive > 0 and connection.generation == self.generation:
            if connection not in self._idle:  # never twice: two requests would share it
                loop = asyncio.get_running_loop()
                connection.idle_since = loop.time()
                self._idle.append(connection)
                if self._expiry is None:  # one timer for the pool, re-armed for the oldest idle one
                    self._expiry = loop.call_at(connection.idle_since + self.keepalive, self._expire)
        elif connection.transport is not None:
            connection.transport.close()

    def _expire(self) -> None:
        """Close the connections idle for ``keepalive`` seconds, when they are due and not only when
        the next request comes: an app that is shutting down waits for its open connections."""
        self._expiry = None
        self._close_stale()
        if self._idle:
            due = self._idle[0].idle_since + self.keepalive + 0.001  # (a timer may fire a hair early)
            self._expiry = asyncio.get_running_loop().call_at(due, self._expire)

    def drop_idle(self) -> int:
        """The app is closing: close every idle connection now, and those in use once their exchange
        ends (a new generation), so its shutdown is not held up; the next request connects anew.
        Returns how many idle connections were closed."""
        self.generation += 1
        idle, self._idle = self._idle, []
        self._stop_expiry()
        for connection in idle:
            connection.abort()
        return len(idle)

    def _stop_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def forget(self, connection: OriginConnection) -> None:
        """A connection closed (by the app, or by us): never hand it out again."""
        if connection in self._idle:
            self._idle.remove(connection)

    @property
    def idle(self) -> int:
        """Connections waiting to be reused."""
        return len(self._idle)

    def close(self) -> None:
        self._closed = True
        self._stop_expiry()
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.abort()
