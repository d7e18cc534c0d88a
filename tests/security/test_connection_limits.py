"""Slow heads, idle connections and too many connections, on both transports: nothing a client
can hold open forever, and a clear line in the log when the connection limit is reached."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.conftest import TRANSPORTS, Stack, get, one, raw
from tests.servers.demo_app import DemoApp
from tests.servers.sidecar import start_sidecar, wait_until_cached

LIMITS = {
    "TINA4_SIDECAR_HEADER_TIMEOUT": "1",
    "TINA4_SIDECAR_KEEPALIVE_TIMEOUT": "1",
    "TINA4_SIDECAR_MAX_CONNECTIONS": "20",
    "TINA4_SIDECAR_ADMIN_TOKEN": "a-token-of-sixteen-plus",
}


@pytest.fixture(scope="module", params=list(TRANSPORTS))
def limited(
    request: pytest.FixtureRequest, security_app: DemoApp, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    transport = str(request.param)
    env: dict[str, str | None] = {**LIMITS, "TINA4_SIDECAR_FAST_PATH": TRANSPORTS[transport]}
    workdir: Path = tmp_path_factory.mktemp(f"limited-{transport}")
    sidecar = start_sidecar(security_app.port, workdir, env=env, wait_for_rules=False)
    try:
        wait_until_cached(sidecar.port, "/sec/host")
        yield Stack(security_app, sidecar, transport)
    finally:
        sidecar.stop()


def closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the server closed ``sock`` within ``seconds``, and what it sent before."""
    sock.settimeout(0.2)
    data = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True, data
        if not chunk:
            return True, data
        data += chunk
    return False, data


def test_a_head_sent_a_byte_at_a_time_is_cut_off(limited: Stack) -> None:
    with socket.create_connection(("127.0.0.1", limited.port)) as sock:
        sock.sendall(b"GET /sec/me HTTP/1.1\r\nHost: shop.example\r\n")
        started = time.monotonic()
        closed = False
        data = b""
        while time.monotonic() - started < 5 and not closed:
            try:
                sock.sendall(b"X")  # one byte of a header name every 0.3 s, never the end of the head
            except OSError:
                closed = True
                break
            closed, data = closed_within(sock, 0.3)
        took = time.monotonic() - started
    assert closed, "a slow head kept its connection for 5 s"
    assert took < 3
    assert data.startswith(b"HTTP/1.1 408 ") or data == b""


def test_an_idle_connection_is_closed_after_the_keepalive_timeout(limited: Stack) -> None:
    with socket.create_connection(("127.0.0.1", limited.port)) as sock:
        sock.sendall(get("/sec/me"))
        assert b"200 OK" in sock.recv(65536)
        closed, _ = closed_within(sock, 3)
    assert closed


def test_connections_beyond_the_limit_are_closed_and_counted(limited: Stack) -> None:
    held = [socket.create_connection(("127.0.0.1", limited.port)) for _ in range(20)]
    try:
        for sock in held:  # each one answered once, then kept open (not idle long enough to go)
            sock.sendall(get("/sec/me"))
            sock.recv(65536)
        extra = [socket.create_connection(("127.0.0.1", limited.port)) for _ in range(5)]
        refused = [closed_within(sock, 0.5)[0] for sock in extra]  # at once, not after the 1 s idle timeout
        for sock in extra:
            sock.close()
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    assert all(refused)
    assert one(limited.port, get("/sec/me")).status == 200  # room again once they are gone
    request = urllib.request.Request(
        f"http://127.0.0.1:{limited.port}/__sidecar/metrics",
        headers={"Authorization": f"Bearer {LIMITS['TINA4_SIDECAR_ADMIN_TOKEN']}"},
    )
    with urllib.request.urlopen(request, timeout=5) as reply:
        metrics = reply.read().decode()
    assert "tina4_sidecar_connections_refused_total 5.0" in metrics
    assert "connection limit reached" in limited.sidecar.log_text()


def test_limits_leave_ordinary_requests_alone(limited: Stack) -> None:
    replies = raw(limited.port, get("/sec/me") + get("/sec/me"), count=2)
    assert [reply.status for reply in replies] == [200, 200]
