"""The access log's line format without a sidecar: what a client sends (paths with quotes, control
bytes, ``=``, a newline; request ids it chose) comes back exactly when the line is parsed, in
logfmt and in JSON, and never splits or forges a line."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tina4_sidecar.proxy.access_log import AccessLog

HOSTILE = [
    "/api/products?page=2",
    '/a b"c=d\\e',
    "/x\x00y\x1b[31m\nlevel=error",
    "/caf\u00e9/\U0001f600",
]
IDS = ["5f3a9c0e1b2d4a6800000001", "client-id.1:2@x", 'quote"id', "ids=with=equals"]


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^ ]*)')
ESCAPE = re.compile(r"\\(x[0-9a-f]{2}|.)")


def logfmt_fields(line: str) -> dict[str, str]:
    """A logfmt line read back: quoted values unescaped (``\\\\``, ``\\"``, ``\\xNN``)."""
    fields = {}
    for name, raw in FIELD.findall(line):
        if raw.startswith('"'):
            raw = ESCAPE.sub(
                lambda m: chr(int(m[1][1:], 16)) if m[1][0] == "x" and len(m[1]) == 3 else m[1], raw[1:-1]
            )
        fields[name] = raw
    return fields


@pytest.mark.parametrize("log_format", ["logfmt", "json"])
def test_every_value_comes_back_exactly(tmp_path: Path, log_format: str) -> None:
    out = tmp_path / "access.log"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT)
    log = AccessLog(log_format, enabled=True, fd=fd)  # type: ignore[arg-type]
    sent = [(path, rid) for _ in range(3) for path in HOSTILE for rid in IDS]
    for path, rid in sent:
        log.line("GET", path, 200, 10, 0.001, "hit", None, rid)
    log.flush()
    os.close(fd)
    got = []
    for line in lines_of(out):
        if log_format == "json":
            entry = json.loads(line)
            got.append((entry["path"], entry["request_id"]))
        else:
            fields = logfmt_fields(line)
            got.append((fields["path"], fields["request_id"]))
    assert got == sent
    assert len(lines_of(out)) == len(sent)  # a newline in a path never splits a line
