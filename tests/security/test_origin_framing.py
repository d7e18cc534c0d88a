"""An app whose bytes do not frame one response per request must never mix two users' answers.

A raw-socket app answers ``/no-content`` with a 204 followed by bytes that parse as a second,
complete response (Tina4's own server sends a body with a 204 just so), and every other request
with a page naming who asked. Afterwards many users ask at once, on both transports: each must
get their own page, none may hang, and the connection that carried the stray bytes must never
carry another request.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.proxy.test_fast_forward import connection, raw_app_sidecar, read_response
from tests.proxy.test_fast_path import get

STRAY = b"HTTP/1.1 200 OK\r\nContent-Length: 24\r\n\r\nsomeone else's page here"
TRAILING = {
    "second-response": STRAY,
    "partial-status-line": b"HTT",
    "body-on-204": b"a body a 204 must not have",
    "unfinished-response": b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\nthe attacker's ",
}


def page(user: str) -> bytes:
    body = f"page of {user}".encode()
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


@pytest.mark.parametrize("trailing", list(TRAILING), ids=list(TRAILING))
@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "aiohttp"])
async def test_bytes_after_a_whole_response_never_reach_another_user(
    tmp_path: Path, fast_path: bool, trailing: str
) -> None:
    poisoned: set[int] = set()
    served_users: set[int] = set()

    async def script(path: str, number: int, writer: asyncio.StreamWriter) -> bool:
        if path == "/no-content":
            poisoned.add(id(writer))
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n" + TRAILING[trailing])
        else:
            served_users.add(id(writer))
            await asyncio.sleep(0.01)
            writer.write(page(path.rsplit("/", 1)[1]))
        return True

    async with raw_app_sidecar(script, tmp_path, fast_path=fast_path) as (_, listener):
        async with connection(listener) as (reader, writer):
            writer.write(get("/no-content"))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            # The fast path relays the 204 (and closes the app's connection); aiohttp's client
            # refuses a read that does not parse and answers 502.
            assert head.startswith(b"HTTP/1.1 204") or (not fast_path and head.startswith(b"HTTP/1.1 502"))

        async def ask(user: str) -> bytes:
            async with connection(listener) as (reader, writer):
                writer.write(get(f"/me/{user}"))
                return (await asyncio.wait_for(read_response(reader), 10))[2]

        users = [f"user{i}" for i in range(20)]
        bodies = await asyncio.gather(*(ask(user) for user in users))

        assert bodies == [f"page of {user}".encode() for user in users]
        if fast_path or trailing != "partial-status-line":
            assert poisoned
            assert not poisoned & served_users  # the poisoned connection carried nothing more
        # aiohttp's client keeps a connection whose parser holds a partial status line ("HTT"); the
        # next request sent on it fails to parse and is retried on a new connection, so its user
        # still gets their own page (checked above), but the connection is reused once.
        if fast_path:
            pool = listener.sidecar.origin
            assert pool is not None
            assert len(pool._idle) == len(set(map(id, pool._idle)))  # never pooled twice


async def test_a_connection_is_released_once_per_request(tmp_path: Path) -> None:
    """Sequential requests on one client connection reuse one app connection, never two copies."""

    used: set[int] = set()

    async def script(path: str, number: int, writer: asyncio.StreamWriter) -> bool:
        used.add(id(writer))
        writer.write(page(f"{path}#{number}"))
        return True

    async with raw_app_sidecar(script, tmp_path) as (_, listener), connection(listener) as (reader, writer):
        for index in range(5):
            writer.write(get(f"/me/{index}"))
            assert (await read_response(reader))[2] == f"page of /me/{index}#{index + 1}".encode()
        pool = listener.sidecar.origin
        assert pool is not None
        assert pool.idle == 1
        assert len(used) == 1
