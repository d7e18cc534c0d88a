"""App restarts are not held up by the sidecar, on both transports (fast path on and off).

Tina4's built-in server, on SIGTERM, stops listening and then waits (``TINA4_SHUTDOWN_TIMEOUT``,
30 s by default) for its open connections to end, idle keep-alive ones included. The sidecar
closes its idle connections to the app after ``TINA4_SIDECAR_UPSTREAM_KEEPALIVE`` seconds, and at
once when the app is seen closing: a refused connect (the manifest poll goes on a connection of
its own, so it sees the closed listener first), or a framed answer with ``Connection: close``.
A GET whose reused connection the app closed before answering is sent once more on a new one;
a POST is not. Against a real Tina4 app and the real sidecar process; the failure modes that a
Tina4 app cannot be made to show on cue come from a raw-socket app in a thread.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.ops.conftest import OPS_APP, Reply, call, wait_for
from tests.servers.demo_app import MANIFEST_PATH, start_tina4_script
from tests.servers.process import ServerProcess
from tests.servers.sidecar import start_sidecar, wait_until_cached
from tina4_sidecar.config.rules import Rule, dump_manifest

pytestmark = pytest.mark.e2e

TRANSPORTS = [pytest.param("true", id="fast-path"), pytest.param("false", id="aiohttp-path")]


def established(port: int) -> int:
    """TCP connections established to ``port`` on this host (the app's ends of them)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def get(base: str, path: str) -> Reply:
    """A GET on a client connection of its own, without ``Connection: close`` (urllib sends one,
    and the fast path leaves such requests to aiohttp's path)."""
    port = int(base.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return Reply(response.status, dict(response.getheaders()), response.read())
    finally:
        connection.close()


def concurrently(base: str, paths: list[str]) -> list[Reply]:
    """The paths asked at once (each on its own client connection), so the sidecar opens several
    connections to the app and pools them."""
    with ThreadPoolExecutor(len(paths)) as pool:
        return list(pool.map(lambda path: get(base, path), paths))


@pytest.mark.parametrize("fast_path", TRANSPORTS)
@pytest.mark.parametrize(
    ("keepalive", "manifest_refresh"),
    [pytest.param("2", "600", id="idle-expiry"), pytest.param("300", "1", id="refused-connect")],
)
def test_sigterm_to_a_tina4_app_is_not_held_up_and_the_restarted_app_is_served(
    tmp_path: Path, fast_path: str, keepalive: str, manifest_refresh: str
) -> None:
    # 120 s: an app held up by the sidecar's connections would wait that long, not a few seconds.
    app = start_tina4_script(OPS_APP, tmp_path / "app", env={"TINA4_SHUTDOWN_TIMEOUT": "120"})
    env: dict[str, str | None] = {
        "TINA4_SIDECAR_FAST_PATH": fast_path,
        "TINA4_SIDECAR_UPSTREAM_KEEPALIVE": keepalive,
        "TINA4_SIDECAR_MANIFEST_REFRESH": manifest_refresh,
    }
    sidecar = start_sidecar(app.port, tmp_path / "sidecar", env=env, wait_for_rules=False)
    base = f"http://127.0.0.1:{sidecar.port}"
    try:
        wait_until_cached(sidecar.port, "/news/ready")
        replies = concurrently(base, ["/slow?seconds=0.5"] * 3 + ["/news/before"])
        assert [reply.status for reply in replies] == [200] * 4
        assert established(app.port) >= 3, "the sidecar pooled no connections to the app"
        assert app.proc is not None
        asked = time.monotonic()
        os.kill(app.proc.pid, signal.SIGTERM)
        app.proc.wait(timeout=40)  # raises if the app is still waiting for the sidecar's connections
        took = time.monotonic() - asked
        assert "Server stopped." in app.log_text(), f"the app did not shut down cleanly ({took:.1f}s)"
        app.start()  # the same port
        after = [get(base, path) for path in ("/headers", "/news/after", "/news/before", "/headers")]
        after += concurrently(base, ["/headers", "/news/other", "/slow?seconds=0.1"])
        assert [reply.status for reply in after] == [200] * 7, sidecar.log_tail()
        assert "upstream unavailable" not in sidecar.log_text()
    finally:
        sidecar.stop()
        app.stop()


class RawApp(socketserver.ThreadingTCPServer):
    """A keep-alive HTTP/1.1 app on a raw socket, in a thread of the test, that can misbehave on
    cue. ``/slow`` answers after 0.3 s, ``/bye`` answers with ``Connection: close`` and closes;
    with ``drop_reused`` the second request on any connection is read and left unanswered, the
    connection closed, as an app does that closes an idle connection just as it is reused."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, drop_reused: bool = False) -> None:
        self.drop_reused = drop_reused
        self.paths: list[str] = []
        self.open = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), RawHandler)
        self.port: int = self.server_address[1]
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def stop_listening(self) -> None:
        """Close the listening socket; connections already open go on being served."""
        self.shutdown()
        self.server_close()


class RawHandler(socketserver.BaseRequestHandler):
    server: RawApp

    def handle(self) -> None:
        conn: socket.socket = self.request
        with self.server.lock:
            self.server.open += 1
        try:
            self._serve(conn)
        except OSError:
            pass
        finally:
            with self.server.lock:
                self.server.open -= 1

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        number = 0
        while True:
            while b"\r\n\r\n" not in buffer:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            method, path = head.decode("latin-1").split(" ", 2)[:2]
            length = next(
                (int(line.split(":", 1)[1]) for line in head.decode("latin-1").split("\r\n")
                 if line.lower().startswith("content-length:")), 0)  # fmt: skip
            while len(buffer) < length:
                buffer += conn.recv(65536)
            buffer = buffer[length:]
            if path == MANIFEST_PATH:
                body = dump_manifest([Rule(method="GET", path="/cached/*", cache=True, ttl=60, source="t")])
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                continue
            number += 1
            with self.server.lock:
                self.server.paths.append(f"{method} {path}")
            if number > 1 and self.server.drop_reused:
                return
            if path == "/slow":
                time.sleep(0.3)
            extra = b"Connection: close\r\n" if path == "/bye" else b""
            body = path.encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s" % (extra, len(body), body))
            if extra:
                return


@pytest.fixture
def raw_app() -> Iterator[RawApp]:
    app = RawApp()
    try:
        yield app
    finally:
        app.stop_listening()


def raw_sidecar(app: RawApp, workdir: Path, fast_path: str, manifest_refresh: str = "600") -> ServerProcess:
    env: dict[str, str | None] = {
        "TINA4_SIDECAR_FAST_PATH": fast_path,
        "TINA4_SIDECAR_UPSTREAM_KEEPALIVE": "300",  # so only the app's signals close idle connections
        "TINA4_SIDECAR_MANIFEST_REFRESH": manifest_refresh,
    }
    sidecar = start_sidecar(app.port, workdir, env=env, wait_for_rules=False)
    if not wait_for(lambda: "manifest loaded" in sidecar.log_text()):
        sidecar.stop()
        raise RuntimeError(f"the sidecar never loaded the raw app's manifest:\n{sidecar.log_tail()}")
    return sidecar


@pytest.mark.parametrize("fast_path", TRANSPORTS)
def test_a_connection_close_answer_closes_the_idle_connections(
    raw_app: RawApp, tmp_path: Path, fast_path: str
) -> None:
    sidecar = raw_sidecar(raw_app, tmp_path, fast_path)
    base = f"http://127.0.0.1:{sidecar.port}"
    try:
        assert [reply.body for reply in concurrently(base, ["/slow"] * 3)] == [b"/slow"] * 3
        assert wait_for(lambda: raw_app.open == 3), raw_app.open
        assert get(base, "/bye").body == b"/bye"
        assert wait_for(lambda: raw_app.open == 0), f"{raw_app.open} connections left open"
        assert get(base, "/after").body == b"/after"
    finally:
        sidecar.stop()


@pytest.mark.parametrize("fast_path", TRANSPORTS)
def test_a_refused_connect_closes_the_idle_connections(
    raw_app: RawApp, tmp_path: Path, fast_path: str
) -> None:
    sidecar = raw_sidecar(raw_app, tmp_path, fast_path, manifest_refresh="1")
    base = f"http://127.0.0.1:{sidecar.port}"
    try:
        assert [reply.body for reply in concurrently(base, ["/slow"] * 3)] == [b"/slow"] * 3
        assert wait_for(lambda: raw_app.open == 3), raw_app.open
        raw_app.stop_listening()  # as Tina4 does on SIGTERM: then it waits for its connections
        assert wait_for(lambda: raw_app.open == 0), f"{raw_app.open} connections left open"
        assert "closed 3 idle connections" in sidecar.log_text()
    finally:
        sidecar.stop()


@pytest.mark.parametrize("fast_path", TRANSPORTS)
def test_a_get_on_a_reused_connection_the_app_closed_is_sent_once_more_a_post_is_not(
    tmp_path: Path, fast_path: str
) -> None:
    app = RawApp(drop_reused=True)
    sidecar = raw_sidecar(app, tmp_path, fast_path)
    base = f"http://127.0.0.1:{sidecar.port}"
    try:
        replies = [get(base, path) for path in ("/a", "/b", "/cached/1", "/c")]
        assert [(reply.status, reply.body) for reply in replies] == [
            (200, b"/a"), (200, b"/b"), (200, b"/cached/1"), (200, b"/c")
        ]  # fmt: skip
        assert app.paths == [
            "GET /a", "GET /b", "GET /b", "GET /cached/1", "GET /cached/1", "GET /c", "GET /c"
        ]  # fmt: skip
        # One of two POSTs goes on a reused connection (which one depends on the transport's pool):
        # that one answers 502, its request read by the app once and never sent again.
        posts = [call(base + path, method="POST", body=b"x") for path in ("/p1", "/p2")]
        assert sorted(reply.status for reply in posts) == [200, 502]
        assert app.paths[7:] == ["POST /p1", "POST /p2"]
    finally:
        sidecar.stop()
        app.stop_listening()
