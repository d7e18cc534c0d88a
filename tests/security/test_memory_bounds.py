"""What one client can make the sidecar hold, measured as the sidecar process's RSS.

- one connection streams 256 MB of pipelined bytes behind a slow forwarded GET: reading pauses
  past a small read-ahead, so the sidecar holds kilobytes, not the stream;
- 10,000 requests with 50 KB targets (414: over the request-line limit) and 10,000 with 7 KB
  targets on a cached route (within it: the per-target key memo is bounded in bytes).

RSS may grow by at most 64 MB, and after the connections close it must come back below that
bound (Python keeps some freed memory, so "back" means within the bound of the start). The
figures are printed (``pytest -s``).
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from tests.security.conftest import Stack, get, one

BOUND_MB = 64
pytestmark = pytest.mark.timeout(240)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def sidecar_pid(stack: Stack) -> int:
    assert stack.sidecar.proc is not None
    return stack.sidecar.proc.pid


def stream_behind_a_slow_get(port: int, total: int, seconds: float) -> int:
    """Send a slow GET, then up to ``total`` bytes of pipelined junk for at most ``seconds``;
    the bytes the kernel accepted (the sidecar stops reading, so far fewer than ``total``)."""
    sent = 0
    chunk = b"J" * 65536
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(0.5)
        sock.sendall(get("/sec/slow?seconds=3"))
        deadline = time.monotonic() + seconds
        while sent < total and time.monotonic() < deadline:
            try:
                sent += sock.send(chunk)
            except (TimeoutError, BlockingIOError):
                continue
            except OSError:
                break
    return sent


def test_a_stream_behind_a_slow_request_is_not_buffered(stack: Stack) -> None:
    pid = sidecar_pid(stack)
    before = rss_mb(pid)
    peak = before
    result: list[int] = []
    sender = threading.Thread(
        target=lambda: result.append(stream_behind_a_slow_get(stack.port, 256 << 20, 8))
    )
    sender.start()
    while sender.is_alive():
        peak = max(peak, rss_mb(pid))
        time.sleep(0.05)
    time.sleep(0.5)
    after = rss_mb(pid)
    print(
        f"\n[{stack.transport}] 256 MB behind a slow GET: accepted {result[0] / 2**20:.1f} MB; "
        f"RSS {before:.1f} -> peak {peak:.1f} -> after close {after:.1f} MB"
    )
    assert peak - before < BOUND_MB
    assert after - before < BOUND_MB
    assert one(stack.port, get("/sec/me")).status == 200  # and it still serves


def test_long_targets_cannot_pin_memory(stack: Stack) -> None:
    pid = sidecar_pid(stack)
    before = rss_mb(pid)
    statuses: dict[int, int] = {}
    for index in range(10_000):  # over the request-line limit: 414, one connection each
        with socket.create_connection(("127.0.0.1", stack.port)) as sock:
            sock.sendall(get(f"/sec/host?{index}=" + "x" * 50_000))
            read_statuses(sock, 1, statuses)
    with socket.create_connection(("127.0.0.1", stack.port)) as sock:  # within it: cached, keep-alive
        for batch in range(200):
            sock.sendall(b"".join(get(f"/sec/host?{batch}-{i}=" + "x" * 7_000) for i in range(50)))
            read_statuses(sock, 50, statuses)
    after = rss_mb(pid)
    print(
        f"\n[{stack.transport}] 10,000 x 50 KB and 10,000 x 7 KB targets: {statuses}; "
        f"RSS {before:.1f} -> {after:.1f} MB"
    )
    assert statuses == {414: 10_000, 200: 10_000}
    assert after - before < BOUND_MB


def read_statuses(sock: socket.socket, count: int, statuses: dict[int, int]) -> None:
    """Read ``count`` answers (Content-Length framed) and count them by status."""
    data = b""
    seen = 0
    sock.settimeout(10)
    while seen < count:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        data += chunk
        while True:
            head, sep, rest = data.partition(b"\r\n\r\n")
            if not sep:
                break
            lines = head.split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            sizes = [
                int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length:")
            ]
            length = sizes[0] if sizes else 0
            if len(rest) < length:
                break
            data = rest[length:]
            statuses[status] = statuses.get(status, 0) + 1
            seen += 1
