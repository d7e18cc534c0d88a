"""Python time per request on the fast path, without sockets: HIT answers and forwarded GETs.

    .venv/bin/python -m bench.fast_path_micro [--requests 200000]

Fills (a cached route's miss, fetched, relayed and stored) are measured the same way.

Drives ``FastPath`` with a transport that only counts writes, so the numbers are the
interpreter's share of a request (parse, decide, build, answer), the part this project's code
controls; wrk rows in ``bench.compare`` add the kernel's and the event loop's share.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
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
            await fill(sidecar, min(requests, 20_000))
        finally:
            await stop_sidecar(sidecar)


def wired(sidecar: Sidecar) -> tuple[FastPath, CountingTransport, OriginConnection, CountingTransport]:
    """A fast-path connection from a counting client, and one pooled origin connection to a
    counting app: (protocol, client transport, origin connection, app transport)."""
    assert sidecar.origin is not None
    # The configured app (port 9) is never there: its refused manifest polls would otherwise read
    # as the app closing and drop the counting connection from the pool (Sidecar.app_closing).
    sidecar.upstream.closing = sidecar.origin.closing = lambda: None
    protocol = FastPath(sidecar, NO_SLOW_PATH, SeenRequests(), Limits.of(sidecar.settings))  # type: ignore[arg-type]
    client = CountingTransport()
    protocol.connection_made(client)  # type: ignore[arg-type]
    origin = OriginConnection(sidecar.origin)
    app = CountingTransport()
    origin.connection_made(app)  # type: ignore[arg-type]
    sidecar.origin.release(origin, reusable=True)
    return protocol, client, origin, app


def forward(sidecar: Sidecar, requests: int) -> None:
    """A GET no rule covers, forwarded on one pooled connection whose app answers at once."""
    assert sidecar.origin is not None
    protocol, client, origin, app = wired(sidecar)
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


async def turns_until(done: Callable[[], bool], turns: int = 1000) -> None:
    """Let the event loop run (tasks the fast path started) until ``done()``."""
    for _ in range(turns):
        if done():
            return
        await asyncio.sleep(0)
    raise RuntimeError("the fast path never got there")


async def fill(sidecar: Sidecar, requests: int, prefix: bytes = b"") -> None:
    """A GET a cached rule covers that missed: fetched on one pooled connection, relayed, stored
    (memory store, written behind the answer); each request a new URL."""
    assert sidecar.origin is not None
    sidecar.manifest.rules = RuleSet([Rule(method="GET", path="/fill.json", cache=True, ttl=300)])
    protocol, client, origin, app = wired(sidecar)
    path = b"/fill.json?k=" + prefix
    heads = [PASS_REQUEST.replace(b"/pass-1k.json", b"%s%d" % (path, n)) for n in range(requests)]
    started = time.perf_counter()
    for n, head in enumerate(heads):
        protocol.data_received(head)
        await turns_until(lambda n=n: app.writes > n)  # the lookup runs as a task: it sends the request
        origin.data_received(ORIGIN_RESPONSE)
    await turns_until(lambda: client.writes >= requests)
    elapsed = time.perf_counter() - started
    assert not client.closed
    assert not app.closed
    stored = await sidecar.store.size()
    per_request = elapsed / requests * 1e6
    rate = f"{requests / elapsed:,.0f}/s"
    print(f"| fill (miss, stored) | {per_request:.2f} us/request | {rate} | {stored} stored |")
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
