"""The access log of a real sidecar: one line per request on both transports, logfmt and JSON,
with the request id taken from X-Request-ID or made, and sent on to the app."""

from __future__ import annotations

import json
import re
import shlex
import socket
from pathlib import Path

import pytest

from tests.ops.conftest import call, sidecar_for, wait_for
from tests.servers.demo_app import DemoApp
from tests.servers.process import ServerProcess

pytestmark = pytest.mark.e2e

FIELDS = {"time", "level", "logger", "method", "path", "status", "bytes", "duration_ms", "cache",
          "upstream_ms", "request_id", "pid"}  # fmt: skip
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def logfmt(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in shlex.split(line))


def access_lines(sidecar: ServerProcess, parse: object) -> list[dict[str, object]]:
    lines = sidecar.log_path.read_text(errors="replace").splitlines()
    return [parse(line) for line in lines if "logger=access" in line or '"logger":"access"' in line]  # type: ignore[operator]


def line_for(sidecar: ServerProcess, parse: object, request_id: str) -> dict[str, object]:
    found = wait_for(lambda: [e for e in access_lines(sidecar, parse) if e["request_id"] == request_id], 5)
    assert found, f"no access line with request_id={request_id}:\n{sidecar.log_tail()}"
    return found[0]  # type: ignore[no-any-return,index]


@pytest.mark.parametrize("fast_path", ["true", "false"])
def test_logfmt_lines_for_hits_misses_and_forwards(ops_app: DemoApp, tmp_path: Path, fast_path: str) -> None:
    sidecar = sidecar_for(ops_app, tmp_path, {"TINA4_SIDECAR_FAST_PATH": fast_path})
    base = f"http://127.0.0.1:{sidecar.port}"
    try:
        miss = call(f"{base}/news/a?x=1", {"X-Request-ID": "req-miss-1"})
        hit = call(f"{base}/news/a?x=1", {"X-Request-ID": "req-hit-1"})
        assert (miss.headers["X-Cache"], hit.headers["X-Cache"]) == ("MISS", "HIT")
        echoed = call(f"{base}/headers", {"X-Request-ID": "req-pass-1"}).json()
        made = call(f"{base}/headers").json()
        assert isinstance(echoed, dict)
        assert isinstance(made, dict)
        assert echoed["x-request-id"] == "req-pass-1"  # the client's id reaches the app
        assert re.fullmatch(r"[0-9a-f]{24}", made["x-request-id"])  # one was made and sent on
        with socket.create_connection(("127.0.0.1", sidecar.port), timeout=5) as raw:
            raw.sendall(b'GET /news/a"b=c%0a?q=" HTTP/1.1\r\nHost: x\r\nX-Request-ID: req-evil-1\r\n'
                        b"Connection: close\r\n\r\n")  # fmt: skip
            assert raw.recv(100).startswith(b"HTTP/1.1 ")

        entry = line_for(sidecar, logfmt, "req-hit-1")
        assert set(entry) >= FIELDS
        assert STAMP.match(str(entry["time"]))
        assert (entry["method"], entry["path"], entry["status"], entry["cache"]) == (
            "GET",
            "/news/a?x=1",
            "200",
            "hit",
        )
        assert int(str(entry["bytes"])) > len(hit.body)  # the head counts too
        assert entry["upstream_ms"] == "-"
        assert int(str(entry["pid"])) == sidecar.proc.pid  # type: ignore[union-attr]
        missed = line_for(sidecar, logfmt, "req-miss-1")
        assert missed["cache"] == "miss"
        assert float(str(missed["upstream_ms"])) > 0
        assert "fwd=uri-miss" in str(missed["cache_status"])
        passed = line_for(sidecar, logfmt, "req-pass-1")
        assert (passed["cache"], passed["status"]) == ("pass", "200")
        assert float(str(passed["upstream_ms"])) > 0
        assert made["x-request-id"] in [e["request_id"] for e in access_lines(sidecar, logfmt)]
        bad = line_for(sidecar, logfmt, "req-evil-1")  # the quote is escaped: the line parses whole
        assert bad["path"] == '/news/a"b=c%0a?q="'
        assert bad["method"] == "GET"
    finally:
        sidecar.stop()


def test_json_lines_and_the_switch(ops_app: DemoApp, tmp_path: Path) -> None:
    sidecar = sidecar_for(ops_app, tmp_path / "json", {"TINA4_SIDECAR_LOG_FORMAT": "json"})
    try:
        call(f"http://127.0.0.1:{sidecar.port}/news/j", {"X-Request-ID": "req-json-1"})
        entry = line_for(sidecar, json.loads, "req-json-1")
        assert set(entry) >= FIELDS
        assert (entry["status"], entry["cache"], entry["path"]) == (200, "miss", "/news/j")
        others = [
            json.loads(line) for line in sidecar.log_path.read_text().splitlines() if line.startswith("{")
        ]
        assert any(item.get("logger") == "tina4_sidecar" for item in others)  # every log line is JSON
    finally:
        sidecar.stop()
    quiet = sidecar_for(ops_app, tmp_path / "off", {"TINA4_SIDECAR_ACCESS_LOG": "false"})
    try:
        for _ in range(3):
            call(f"http://127.0.0.1:{quiet.port}/news/off")
    finally:
        quiet.stop()
    assert "logger=access" not in quiet.log_path.read_text()
