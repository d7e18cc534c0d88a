"""A broken app's answers, on both transports and on cached and uncached routes: the client gets
the same well-formed answer either way (relayed, or a 502 logged once, never a traceback or a 500),
and nothing of a 101 the client did not ask for is relayed.

A header continued on the next line (obs-fold, RFC 9112 §5.2) is unfolded by both (aiohttp's client
unfolds it; the fast path parses a head llhttp refuses once more as aiohttp does), to the same value,
and what the unfolded head then carries is judged alike (a control byte or a name that is not a
token is a 502 on both).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.proxy.test_fast_forward import connection, raw_app_sidecar, read_response
from tests.proxy.test_fast_path import get

ANSWERS = {
    "control-byte-in-a-header": b"HTTP/1.1 200 OK\r\nX-Bad: a\x01b\r\nContent-Length: 2\r\n\r\nok",
    "unasked-101": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    "bare-lf": b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
    "space-before-colon": b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
    "obs-fold": b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
    "obs-fold-tab-bare-lf": b"HTTP/1.1 200 OK\nX-Folded: a\n\tb\n  c\nContent-Length: 2\n\nok",
    "obs-fold-control-byte": b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\x01\r\nContent-Length: 2\r\n\r\nok",
    "obs-fold-space-before-colon": b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length : 2\r\n\r\nok",
}
EXPECTED = {
    "control-byte-in-a-header": "502",
    "unasked-101": "502",
    "bare-lf": "200",
    "space-before-colon": "502",
    "obs-fold": "200",
    "obs-fold-tab-bare-lf": "200",
    "obs-fold-control-byte": "502",
    "obs-fold-space-before-colon": "502",
}
FOLDED = {"obs-fold": "a b", "obs-fold-tab-bare-lf": "a\tb  c"}
"""The unfolded value both transports relay: the line break goes, the whitespace after it stays."""


async def status_of(tmp_path: Path, answer: bytes, fast_path: bool, path: str) -> tuple[str, str | None]:
    async def script(_: str, __: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer)
        return False

    async with (
        raw_app_sidecar(script, tmp_path, fast_path=fast_path) as (_, listener),
        connection(listener) as (reader, writer),
    ):
        writer.write(get(path))
        status, headers, body = await read_response(reader)
    if status.startswith("HTTP/1.1 502"):
        assert json.loads(body) == {"error": "upstream unavailable", "status": 502}
    else:
        assert body == b"ok"
    return status.split(" ", 2)[1], headers.get("x-folded")


@pytest.mark.parametrize("path", ["/plain", "/hit/cached"], ids=["uncached", "cached"])
@pytest.mark.parametrize("answer", list(ANSWERS))
async def test_both_transports_answer_a_broken_app_alike(
    tmp_path: Path, answer: str, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    seen = {}
    for fast_path in (True, False):
        caplog.clear()
        seen[fast_path] = await status_of(tmp_path / str(fast_path), ANSWERS[answer], fast_path, path)
        tracebacks = [record for record in caplog.records if record.exc_info]
        assert not tracebacks, caplog.text
    expected = (EXPECTED[answer], FOLDED.get(answer))
    assert seen == {True: expected, False: expected}, seen


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "aiohttp-path"])
async def test_a_folded_head_split_across_reads_is_unfolded_and_its_connection_not_reused(
    tmp_path: Path, fast_path: bool
) -> None:
    """The fold arrives in one read and its continuation in the next; the app keeps the connection
    open for more. The client gets the unfolded value; the next request reaches the app on a new
    connection on the fast path (one that needed lenient parsing is never pooled)."""

    async def script(path: str, _: int, writer: asyncio.StreamWriter) -> bool:
        if path == "/plain":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Folded: a\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b" b\r\n\r\nok")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext")
        return True

    async with (
        raw_app_sidecar(script, tmp_path, fast_path=fast_path) as (app, listener),
        connection(listener) as (reader, writer),
    ):
        writer.write(get("/plain"))
        status, headers, body = await read_response(reader)
        assert (status, headers.get("x-folded"), body) == ("HTTP/1.1 200 OK", "a b", b"ok")
        before = app.connections
        writer.write(get("/plain-next"))
        status, _, body = await read_response(reader)
        assert (status, body) == ("HTTP/1.1 200 OK", b"next")
        if fast_path:
            assert app.connections == before + 1
