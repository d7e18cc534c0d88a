"""Requests that must not be trusted as sent: a GET with a body on a cached route, forwarding
headers from peers that are not trusted proxies; and an app body cut short by a reset."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.proxy.test_fast_forward import connection, raw_app_sidecar
from tests.proxy.test_fast_path import get as raw_get
from tests.security.conftest import TRANSPORTS, Stack, get, one
from tests.servers.demo_app import DemoApp
from tests.servers.sidecar import start_sidecar, wait_until_cached


def test_a_get_with_a_body_on_a_cached_route_is_forwarded_with_it_and_not_shared(stack: Stack) -> None:
    path = f"/sec/host?v={uuid.uuid4().hex}"
    started = time.monotonic()
    reply = one(
        stack.port,
        f"GET {path} HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 5\r\n\r\nhello".encode(),
    )
    took = time.monotonic() - started
    after = one(stack.port, get(path))

    assert reply.status == 200
    assert took < 5  # the app got the body it was promised, nobody waited out a timeout
    assert "fwd=bypass; detail=request-body" in (reply.header("Cache-Status") or "")
    assert after.header("X-Cache") == "MISS"  # it stored nothing, and led no shared fetch


FORGED = ("X-Forwarded-Proto: https", "X-Forwarded-Host: evil.example", "Forwarded: for=1.2.3.4;proto=https")


def test_forwarding_headers_from_a_client_are_overwritten(stack: Stack) -> None:
    seen = one(stack.port, get("/sec/forwarded", *FORGED)).json()

    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == "shop.example"
    assert seen["forwarded"] is None
    assert seen["x-forwarded-for"] == "127.0.0.1"


@pytest.fixture(scope="module", params=list(TRANSPORTS))
def behind_a_balancer(
    request: pytest.FixtureRequest, security_app: DemoApp, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    transport = str(request.param)
    env: dict[str, str | None] = {
        "TINA4_SIDECAR_FAST_PATH": TRANSPORTS[transport],
        "TINA4_SIDECAR_TRUSTED_PROXIES": "127.0.0.0/8, ::1",
    }
    sidecar = start_sidecar(
        security_app.port, tmp_path_factory.mktemp(f"trusting-{transport}"), env=env, wait_for_rules=False
    )
    try:
        wait_until_cached(sidecar.port, "/sec/host")
        yield Stack(security_app, sidecar, transport)
    finally:
        sidecar.stop()


def test_a_trusted_proxys_forwarding_headers_are_kept_and_extended(behind_a_balancer: Stack) -> None:
    sent = (*FORGED, "X-Forwarded-For: 203.0.113.7")
    seen = one(behind_a_balancer.port, get("/sec/forwarded", *sent)).json()

    assert seen["x-forwarded-proto"] == "https"  # the TLS load balancer's word
    assert seen["x-forwarded-host"] == "evil.example"
    assert seen["forwarded"] == "for=1.2.3.4;proto=https, for=127.0.0.1"
    assert seen["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "aiohttp"])
async def test_a_close_delimited_body_cut_by_a_reset_never_looks_complete(
    tmp_path: Path, fast_path: bool
) -> None:
    async def script(path: str, number: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nthe first half of")
        await writer.drain()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(
            __import__("socket").SOL_SOCKET,
            __import__("socket").SO_LINGER,
            b"\x01\x00\x00\x00\x00\x00\x00\x00",
        )
        writer.transport.abort()  # a reset, not a clean close
        return False

    async with raw_app_sidecar(script, tmp_path, fast_path=fast_path) as (_, listener):
        for path in ("/plain", "/hit/close-delimited"):
            for _ in range(2):
                async with connection(listener) as (reader, writer):
                    writer.write(raw_get(path))
                    data = await asyncio.wait_for(reader.read(), 10)
                assert not data.endswith(b"0\r\n\r\n"), data  # never a chunked end after a cut body
                assert b"X-Cache: HIT" not in data  # and never stored
