"""A broken app's answers, on both transports and on cached and uncached routes: the client gets
the same well-formed answer either way (relayed, or a 502 logged once, never a traceback or a 500),
and nothing of a 101 the client did not ask for is relayed.

One difference is left: a header continued on the next line (obs-fold) is unfolded by aiohttp's
client (fills and the aiohttp path's forwarding) and refused with 502 by llhttp (the fast path's
forwarding); nothing of it can reach a client in two pieces either way."""

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
}
EXPECTED = {
    "control-byte-in-a-header": "502",
    "unasked-101": "502",
    "bare-lf": "200",
    "space-before-colon": "502",
}


async def status_of(tmp_path: Path, answer: bytes, fast_path: bool, path: str) -> str:
    async def script(_: str, __: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer)
        return False

    async with (
        raw_app_sidecar(script, tmp_path, fast_path=fast_path) as (_, listener),
        connection(listener) as (reader, writer),
    ):
        writer.write(get(path))
        status, _, body = await read_response(reader)
    if status.startswith("HTTP/1.1 502"):
        assert json.loads(body) == {"error": "upstream unavailable", "status": 502}
    return status.split(" ", 2)[1]


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
    assert seen == {True: EXPECTED[answer], False: EXPECTED[answer]}, seen
