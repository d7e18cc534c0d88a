"""The security app (``tina4_app.py``, a real Tina4 app) behind real sidecar processes, one per
transport: the fast path on (the default) and off (every request through aiohttp's server).

``raw()`` speaks to a sidecar on a socket, so tests can send what an attacker would: repeated
headers, odd hosts, oversized heads, pipelined requests.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers.demo_app import DemoApp, start_tina4_script
from tests.servers.process import ServerProcess
from tests.servers.sidecar import start_sidecar, wait_until_cached

APP = Path(__file__).with_name("tina4_app.py")
SECOND_LINES_TESTED = ["private", "no-store", "no-cache", "pragma", "vary", "surrogate"]
"""The ``?second=`` lines of ``/sec/split`` (``tina4_app.SECOND_LINES``)."""
TRANSPORTS = {"fast-path": "true", "aiohttp": "false"}


@dataclass
class Stack:
    app: DemoApp
    sidecar: ServerProcess
    transport: str

    @property
    def port(self) -> int:
        return self.sidecar.port


@pytest.fixture(scope="module")
def security_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoApp]:
    app = start_tina4_script(APP, tmp_path_factory.mktemp("security-app"))
    try:
        yield app
    finally:
        app.stop()


@pytest.fixture(scope="module", params=list(TRANSPORTS))
def stack(
    request: pytest.FixtureRequest, security_app: DemoApp, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    transport = str(request.param)
    env: dict[str, str | None] = {"TINA4_SIDECAR_FAST_PATH": TRANSPORTS[transport]}
    sidecar = start_sidecar(
        security_app.port, tmp_path_factory.mktemp(f"sidecar-{transport}"), env=env, wait_for_rules=False
    )
    try:
        wait_until_cached(sidecar.port, "/sec/host")
        yield Stack(security_app, sidecar, transport)
    finally:
        sidecar.stop()


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name.lower()), None)

    def json(self) -> dict[str, object]:
        value = json.loads(self.body)
        assert isinstance(value, dict)
        return value


def raw(port: int, payload: bytes, count: int = 1, timeout: float = 5.0) -> list[Reply]:
    """Send ``payload`` (one or more requests, keep-alive unless they say otherwise) and read
    ``count`` answers, or fewer when the server closes first."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        data = b""
        replies: list[Reply] = []
        while len(replies) < count:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
            parsed, data = parse_replies(data)
            replies += parsed
    return replies


def parse_replies(data: bytes) -> tuple[list[Reply], bytes]:
    """The whole answers at the start of ``data``, and what is left of it."""
    replies: list[Reply] = []
    while True:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            return replies, data
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = [(name.strip(), value.strip()) for name, value in (line.split(":", 1) for line in lines)]
        status = int(status_line.split(" ", 2)[1])
        length = next((int(v) for k, v in headers if k.lower() == "content-length"), None)
        if any(k.lower() == "transfer-encoding" for k, _ in headers):
            body = b""
            while True:
                size_line, found, after = rest.partition(b"\r\n")
                if not found:
                    return replies, data
                size = int(size_line, 16)
                if len(after) < size + 2:
                    return replies, data
                body, rest = body + after[:size], after[size + 2 :]
                if size == 0:
                    break
        elif status in (204, 304) or length is None:
            body = b""
        else:
            if len(rest) < length:
                return replies, data
            body, rest = rest[:length], rest[length:]
        replies.append(Reply(status, headers, body))
        data = rest


def get(path: str, *headers: str, host: str = "shop.example") -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def one(port: int, payload: bytes) -> Reply:
    replies = raw(port, payload)
    assert len(replies) == 1, replies
    return replies[0]
