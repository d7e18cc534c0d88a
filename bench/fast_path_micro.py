"""Python time per request on the fast path, without sockets: HIT answers and forwarded GETs.

    .venv/bin/python -m bench.fast_path_micro [--requests 200000]

Drives ``FastPath`` with a transport that only counts writes, so the numbers are the
interpreter's share of a request (parse, decide, build, answer), the part this project's code
controls; wrk rows in ``bench.compare`` add the kernel's and the event loop's share.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import uvloop

from bench.nginx import TINA4_LIKE_HEADERS
from tina4_sidecar.config import CacheSettings, SidecarSettings
from tina4_sidecar.config.rules import Rule, RuleSet
from tina4_sidecar.proxy.http.entry import Entry
from tina4_sidecar.proxy.http.limits import Limits
from tina4_sidecar.proxy.origin.pool import OriginConnection
from tina4_sidecar.proxy.server import start_sidecar, stop_sidecar
from tina4_sidecar.proxy.sidecar import Sidecar
from tina4_sidecar.proxy.transport.fast_path import FastPath
from tina4_sidecar.proxy.transport.fast_request import BlockParser, SeenRequests

NO_SLOW_PATH = SimpleNamespace(connections=[])
"""Stands in for aiohttp's server: these requests never leave the fast path (only its open
connections are counted, for the connection limit)."""

REQUEST = (
    b"GET /api/sized?bytes=1024 HTTP/1.1\r\nHost: 127.0.0.1:7145\r\nUser-Agent: bench\r\n"
    b"Accept: */*\r\nAccept-Encoding: gzip\r\n\r\n"
)
PASS_REQUEST = REQUEST.replace(b"/api/sized", b"/pass-1k.json")
# The static origin's answer in bench.compare: nginx's headers plus the Tina4-like set.
ORIGIN_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 27 Nov 2026 09:00:00 GMT\r\n"
    b"Content-Type: application/json\r\nContent-Length: 1024\r\nConnection: keep-alive\r\n"
    + b"".join(b"%s: %s\r\n" % (name.encode(), value.encode()) for name, value in TINA4_LIKE_HEADERS.items())
    + b"\r\n"
    + b"x" * 1024
)


class CountingTransport:
    """Enough of ``asyncio.Transport`` for the fast path; writes are counted, not sent."""

    def __init__(self) -> None:
        self.writes = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes += 1

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else None

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


async def measure(requests: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = SidecarSettings(
            upstream="http://127.0.0.1:9", listen="127.0.0.1:7145", manifest_refresh=3600
        )
        sidecar = await start_sidecar(settings, CacheSettings(cache_dir=Path(tmp)))
        try:
            sidecar.manifest.rules = RuleSet([Rule(method="GET", path="/api/sized", cache=True, ttl=300)])
            entry = Entry(200, (("Content-Type", "application/json"),), b"x" * 1024, time.time(), 300)
            protocol = FastPath(sidecar, NO_SLOW_PATH, SeenRequests(), Limits.of(sidecar.settings))  # type: ignore[arg-type]  # never hands off here
            transport = CountingTransport()
            protocol.connection_made(transport)  # type: ignore[arg-type]
            parsed = BlockParser().parse(REQUEST)
            assert parsed is not None
            assert sidecar.near.put(sidecar.key_for(parsed[0]), entry) is not None
            started = time.perf_counter()
            for _ in range(requests):
                protocol.data_received(REQUEST)
            elapsed = time.perf_counter() - started
            assert transport.writes == requests, transport.writes
            per_request = elapsed / requests * 1e6
            print(f"| HIT (near cache) | {per_request:.2f} us/request | {requests / elapsed:,.0f}/s |")
            protocol.connection_lost(None)
            forward(sidecar, requests)
        finally:
            await stop_sidecar(sidecar)


def forward(sidecar: Sidecar, requests: int) -> None:
    """A GET no rule covers, forwarded on one pooled connection whose app answers at once."""
    assert sidecar.origin is not None
    protocol = FastPath(sidecar, NO_SLOW_PATH, SeenRequests(), Limits.of(sidecar.settings))  # type: ignore[arg-type]
    client = CountingTransport()
    protocol.connection_made(client)  # type: ignore[arg-type]
    origin = OriginConnection(sidecar.origin)
    app = CountingTransport()
    origin.connection_made(app)  # type: ignore[arg-type]
    sidecar.origin.release(origin, reusable=True)
    started = time.perf_counter()
    for _ in range(requests):
        protocol.data_received(PASS_REQUEST)  # the request goes to the app's (counting) transport
        origin.data_received(ORIGIN_RESPONSE)  # and its answer comes back
    elapsed = time.perf_counter() - started
    assert (client.writes, app.writes) == (requests, requests), (client.writes, app.writes)
    assert (client.closed, app.closed) == (False, False)
    per_request = elapsed / requests * 1e6
    print(f"| forwarded GET | {per_request:.2f} us/request | {requests / elapsed:,.0f}/s |")
    protocol.connection_lost(None)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200_000)
    args = parser.parse_args()
    uvloop.run(measure(args.requests))  # as the sidecar runs


if __name__ == "__main__":
    main()
