"""What one client connection may cost: its request head's size, how long it may take to send it,
how long it may idle, how much it may send ahead while an answer is being made, and how many
connections there may be at once.

The protocol that accepts connections (``transport/fast_path.FastPath``) applies these to every
head it reads, whether or not it answers the request itself; aiohttp's server, which takes over a
connection for everything else, gets line limits a margin above these and the same idle
timeout, and the pipeline checks the sizes once more (``oversized``) so both transports answer
414 and 431 alike. The answers are short and close the connection.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

from tina4_sidecar.config import SidecarSettings

READ_AHEAD = 64 * 1024
"""Bytes a client may send beyond its current request while that is answered (pipelined requests,
or a body it should not send): past it, reading from the client pauses until the answer is out."""


@dataclass(frozen=True, slots=True)
class Limits:
    max_request_line: int
    max_header_bytes: int
    header_timeout: float
    keepalive_timeout: float
    max_connections: int

    @classmethod
    def of(cls, settings: SidecarSettings) -> Limits:
        return cls(
            settings.max_request_line,
            settings.max_header_bytes,
            settings.header_timeout,
            settings.keepalive_timeout,
            settings.max_connections,
        )

    @property
    def pause_above(self) -> int:
        return self.max_header_bytes + READ_AHEAD

    @property
    def smallest(self) -> int:
        """A head this long or shorter is within every limit."""
        return min(self.max_request_line, self.max_header_bytes)


def oversized_head(buffer: bytes | bytearray, head_length: int | None, limits: Limits) -> int | None:
    """414 or 431 when the head at the start of ``buffer`` breaks a limit (``head_length``: its
    length when complete, None while it is still arriving); None when it is within them."""
    line_end = buffer.find(b"\r\n", 0, limits.max_request_line + 2)
    if line_end < 0 and len(buffer) > limits.max_request_line:
        return 414
    if line_end > limits.max_request_line:
        return 414
    seen = head_length if head_length is not None else len(buffer)
    return 431 if seen > limits.max_header_bytes else None


def oversized(method: str, raw_target: str, headers: Mapping[str, str] | Any, limits: Limits) -> int | None:
    """The same check on a head aiohttp parsed (its own limits are set looser, so that the two
    transports answer with the same status)."""
    line = len(method) + len(raw_target) + len(" HTTP/1.1") + 1
    if line > limits.max_request_line:
        return 414
    fields = sum(len(name) + len(value) + 4 for name, value in headers.items())
    return 431 if line + 2 + fields + 2 > limits.max_header_bytes else None


_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
}
_ERRORS = {
    400: "bad request",
    408: "request head not received in time",
    414: "request line too long",
    431: "request head too large",
}


def refusal_body(status: int) -> dict[str, Any]:
    return {"error": _ERRORS[status], "status": status}


def refusal(status: int) -> bytes:
    """A complete ``Connection: close`` answer for a client the sidecar will not serve further."""
    body = json.dumps(refusal_body(status)).encode()
    return b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status].encode()),
            b"Content-Type: application/json; charset=utf-8\r\n",
            b"Content-Length: %d\r\n" % len(body),
            b"Connection: close\r\n",
            b"Date: " + formatdate(usegmt=True).encode() + b"\r\n\r\n",
            body,
        )
    )
