"""One client connection's requests forwarded on the fast path's raw connections to the app, one at a
time: the exchange (a ``Relay``, or a fill that also keeps the answer for the cache) on a pooled
connection, a retry on a new one when a reused connection turns out closed, and the 502/504
answers when the app cannot be reached.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from tina4_sidecar.proxy.origin.pool import OriginConnection, OriginPool
from tina4_sidecar.proxy.origin.relay import HeaderKinds, Relay, gateway_error_bytes
from tina4_sidecar.proxy.origin.upstream import UPSTREAM_ERRORS

log = logging.getLogger("tina4_sidecar.proxy")


class Exchanges(Protocol):
    """Makes the exchange for each attempt of one request (a retry makes a second one)."""

    @property
    def route(self) -> str | None:
        """The metrics route label of the request."""

    def __call__(
        self, forwarder: Forwarder, origin: OriginConnection, request: bytes, reused: bool
    ) -> Relay: ...

    def given_up(self, exc: Exception) -> None:
        """The request failed for good: the client gets a 502/504, or a close mid-body."""


class _Relays:
    """Plain forwarding: a ``Relay`` per attempt, nothing to do when it fails."""

    route: str | None = None

    def __call__(self, forwarder: Forwarder, origin: OriginConnection, request: bytes, reused: bool) -> Relay:
        return Relay(forwarder, origin, request, reused)

    def given_up(self, exc: Exception) -> None:
        pass


RELAYS = _Relays()


def _nothing(outcome: str, route: str | None) -> None:
    """``Forwarder.finished`` once its client is gone."""


class Forwarder:
    """Forwards one client connection's GETs, one at a time; ``finished(outcome, route)`` after each
    answer (the exchange's outcome, or ``error`` for a 502/504), not after a break-off (the
    connection closes)."""

    def __init__(
        self,
        pool: OriginPool | None,
        client: asyncio.Transport,
        upstream: str,
        finished: Callable[[str, str | None], None],
        header_kinds: HeaderKinds,
    ) -> None:
        self.pool = pool
        self.client = client
        self.upstream = upstream
        self.finished = finished
        self.header_kinds = header_kinds
        self.relay: Relay | None = None
        self.connecting: asyncio.Task[None] | None = None
        self._make: Exchanges = RELAYS

    @property
    def busy(self) -> bool:
        return self.relay is not None or self.connecting is not None

    def start(self, request: bytes, make: Exchanges = RELAYS) -> None:
        assert self.pool is not None  # requests are only decided "forward" with a pool
        self._make = make
        origin = self.pool.take()
        if origin is None:
            self._connect(request)
        else:
            self._send(origin, request, reused=True)

    def relayed(self, relay: Relay, exc: Exception | None, received: bool) -> None:
        """The end of ``relay``: complete (``exc`` None) or failed."""
        self.relay = None
        if exc is None:
            self.finished(relay.outcome, self._make.route)
        elif relay.reused and not received and not relay.written:
            # The app closed an idle connection as it was reused: the others are likely closed too
            # (a restart), so they are dropped and the request goes once more on a new connection.
            if self.pool is not None:
                self.pool.closing()
            self._connect(relay.request)
        else:
            self._make.given_up(exc)
            if relay.written:
                log.warning("stream of a forwarded GET broke off: %s", exc)
                self.client.close()  # a truncated response must never look complete
            else:
                self._answer_failure(exc)

    def abort(self) -> None:
        """The client left: drop the exchange (its connection to the app cannot be reused), unless
        it reads on for the cache (a fill: the store and its waiters still want the answer)."""
        relay = self.relay
        if relay is not None:
            if relay.outlives_client:
                relay.client_gone = True
                if relay.origin.transport is not None:
                    relay.origin.transport.resume_reading()  # nobody will read it slowly now
                return
            relay.origin.abort()
            self.relay = None
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
            self._make.given_up(ConnectionError("the client left before the app was reached"))

    def detach(self) -> None:
        """The client's connection is gone: drop the references back to it (no cycle outlives it)."""
        self.finished = _nothing

    def pause(self) -> None:
        if self.relay is not None and self.relay.origin.transport is not None:
            self.relay.origin.transport.pause_reading()

    def resume(self) -> None:
        if self.relay is not None and self.relay.origin.transport is not None:
            self.relay.origin.transport.resume_reading()

    def _send(self, origin: OriginConnection, request: bytes, reused: bool) -> None:
        self.relay = self._make(self, origin, request, reused)
        origin.send(self.relay, request)

    def _connect(self, request: bytes) -> None:
        self.connecting = asyncio.get_running_loop().create_task(self._connect_and_send(request))

    async def _connect_and_send(self, request: bytes) -> None:
        assert self.pool is not None
        try:
            origin = await self.pool.connect()
        except UPSTREAM_ERRORS as exc:
            self.connecting = None
            self._make.given_up(exc)
            self._answer_failure(exc)
            return
        self.connecting = None
        self._send(origin, request, reused=False)

    def _answer_failure(self, exc: Exception) -> None:
        self.client.write(gateway_error_bytes(self.upstream, exc))
        self.finished("error", self._make.route)
