"""The front door: what every client connection gets before any request is answered.

It refuses connections beyond TINA4_SIDECAR_MAX_CONNECTIONS, gives each request head
TINA4_SIDECAR_HEADER_TIMEOUT to arrive and each idle connection TINA4_SIDECAR_KEEPALIVE_TIMEOUT,
answers 408/414/431 with a lingering close, pauses reading from a client that sends far ahead of
its answers (``limits``), and hands a connection to aiohttp's handler with every byte not yet
answered. ``FastPath`` builds its answers on top of it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, cast

from tina4_sidecar.proxy.http.limits import Limits, refusal

if TYPE_CHECKING:
    from aiohttp import web

    from tina4_sidecar.proxy.sidecar import Sidecar

log = logging.getLogger("tina4_sidecar.fast_path")

LINGER = 1.0
LINGER_BYTES = 1024 * 1024
"""A refused connection is read and dropped for LINGER seconds or LINGER_BYTES bytes, whichever
comes first, before it closes (see ``FrontDoor._refuse``)."""


class FrontDoor(asyncio.Protocol):
    """Connection limits, timeouts, refusals and the hand-off to aiohttp."""

    def __init__(self, sidecar: Sidecar, slow: web.Server, limits: Limits) -> None:
        self.sidecar = sidecar
        self.slow = slow
        self.limits = limits
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.handed_off = False
        self.discarding = False
        self.discarded = 0
        self.reading_paused = False
        self.timer: asyncio.TimerHandle | None = None
        self.last_active = 0.0
        self.head_started = 0.0
        """When the first byte of the head being read arrived (0: no head being read)."""
        self.client_ip: str | None = None

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
        self.last_active = self.loop.time()
        self.timer = self.loop.call_later(self.limits.keepalive_timeout, self._check_timer)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.sidecar.fast_connections.discard(self.transport)
        if self.timer is not None:
            self.timer.cancel()
        self.buffer = bytearray()

    def busy(self) -> bool:
        """An answer is being made: the app's timeouts apply, not the connection's."""
        return False

    def _pause_reading(self) -> None:
        if self.transport is not None and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.transport is not None and self.reading_paused and (self.discarding or not self.handed_off):
            self.reading_paused = False
            self.transport.resume_reading()

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
        if self.busy():
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
