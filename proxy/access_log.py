"""The access log: one line per request, logfmt or JSON, written in batches.

    time=2026-11-27T04:31:54.242Z level=info logger=access method=GET path=/api/products status=200
    bytes=1234 duration_ms=0.08 cache=hit upstream_ms=- request_id=5f3a9c0e1b2d4a6800000001 pid=4242

``cache`` is the outcome of the metrics (hit, stale, miss, bypass, pass, error); ``cache_status``
the sidecar's own Cache-Status member where the answer has one (``fwd=uri-miss; stored``).
``upstream_ms`` is the time the app took to send its response headers, ``-`` when the app was not
asked. ``path`` is the request target as the client sent it, escaped like every value.

Why not a ``logging.Logger`` call per request: the fast path answers a HIT in a few
microseconds, and a record through the logging machinery plus structlog's renderer costs more
than the HIT itself (measured with ``bench.fast_path_micro``). Lines are formatted here with one
f-string, kept in a list, and written to stderr with one ``os.write`` per batch: when the batch
is large, or ``FLUSH_SECONDS`` after its first line, and at shutdown. The values are escaped as
``proxy/logs.py`` escapes them (quotes, backslashes, every control character), so a client
cannot forge a line.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import time
from contextvars import ContextVar
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Literal

FLUSH_SECONDS = 0.05
FLUSH_LINES = 256
_PLAIN = re.compile(r"[\x21\x23-\x3c\x3e-\x5b\x5d-\x7e]+")
"""Printable ASCII without space, quote, ``=`` and backslash: written unquoted in logfmt."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
"""What an ``X-Request-ID`` from the client may look like to be kept (else a new one is made)."""


class RequestIds:
    """Request ids: a random per-process prefix and a counter, unique across workers and restarts."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._next = 0

    def make(self) -> str:
        self._next += 1
        return f"{self._prefix}{self._next:08x}"

    def of(self, value: str | None) -> str:
        """The client's id when well-formed, else a new one."""
        return value if value is not None and _REQUEST_ID.fullmatch(value) else self.make()

    @staticmethod
    def valid(value: str | None) -> bool:
        return value is not None and _REQUEST_ID.fullmatch(value) is not None


REQUEST_IDS = RequestIds()


@dataclass(slots=True)
class Record:
    """What the aiohttp path learns about one request while answering it (``CURRENT``)."""

    request_id: str
    outcome: str | None = None
    upstream_seconds: float | None = None


CURRENT: ContextVar[Record | None] = ContextVar("tina4_sidecar_access", default=None)
"""The request being answered on the aiohttp path; its tasks (the fetch) share the record."""


def note_outcome(outcome: str, upstream_seconds: float | None = None) -> None:
    """The cache outcome of the request being answered (``Transaction.done`` calls it)."""
    record = CURRENT.get()
    if record is not None:
        record.outcome = outcome
        if upstream_seconds:
            record.upstream_seconds = upstream_seconds


def note_upstream(seconds: float) -> None:
    """The app took ``seconds`` to send its response headers for the request being answered."""
    record = CURRENT.get()
    if record is not None and record.upstream_seconds is None:
        record.upstream_seconds = seconds


def _logfmt(value: str) -> str:
    if _PLAIN.fullmatch(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", escaped) + '"'


def _json(value: str) -> str:
    return encode_basestring(value)  # escapes every control character


class AccessLog:
    """Formats and buffers access lines; ``enabled`` False makes ``line`` a no-op."""

    def __init__(self, log_format: Literal["logfmt", "json"], enabled: bool, fd: int = 2) -> None:
        self.enabled = enabled
        self.json = log_format == "json"
        self.fd = fd
        self.pid = os.getpid()
        self._lines: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._second = -1
        self._stamp = ""

    def line(
        self,
        method: str,
        target: str,
        status: int,
        size: int,
        seconds: float,
        cache: str,
        upstream: float | None,
        request_id: str,
        cache_status: str | None = None,
    ) -> None:
        if not self.enabled:
            return
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        stamp = f"{self._stamp}.{int((now - second) * 1000):03d}Z"
        took = f"{seconds * 1000:.2f}"
        if self.json:
            up = "null" if upstream is None else f"{upstream * 1000:.2f}"
            status_member = "" if cache_status is None else f',"cache_status":{_json(cache_status)}'
            text = (
                f'{{"time":"{stamp}","level":"info","logger":"access","method":{_json(method)},'
                f'"path":{_json(target)},"status":{status},"bytes":{size},"duration_ms":{took},'
                f'"cache":"{cache}"{status_member},"upstream_ms":{up},"request_id":{_json(request_id)},'
                f'"pid":{self.pid}}}\n'
            )
        else:
            up = "-" if upstream is None else f"{upstream * 1000:.2f}"
            status_member = "" if cache_status is None else f" cache_status={_logfmt(cache_status)}"
            text = (
                f"time={stamp} level=info logger=access method={_logfmt(method)} path={_logfmt(target)} "
                f"status={status} bytes={size} duration_ms={took} cache={cache}{status_member} "
                f"upstream_ms={up} request_id={_logfmt(request_id)} pid={self.pid}\n"
            )
        lines = self._lines
        lines.append(text)
        if len(lines) >= FLUSH_LINES:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)
            except RuntimeError:  # no loop (a test calling it directly): write at once
                self.flush()

    def flush(self) -> None:
        """Write every buffered line (whole lines, one write where the pipe takes it)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return
        data = "".join(self._lines).encode("utf-8", "backslashreplace")
        self._lines.clear()
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except BlockingIOError:
                time.sleep(0.001)
                continue
            except OSError:
                return  # stderr gone: the lines are lost, the sidecar goes on
            view = view[written:]


def cache_status_member(value: str | None, name: str) -> str | None:
    """The parameters of the sidecar's own member of a Cache-Status value (``hit; ttl=297``)."""
    if not value:
        return None
    for member in reversed(value.split(",")):
        head, _, params = member.strip().partition(";")
        if head.strip() == name:
            return params.strip() or None
    return None


class Meter:
    """Stands for a client transport in the fast path's forwarder: counts what is written and reads
    the status from the first bytes, for the access line of a forwarded GET."""

    __slots__ = ("bytes", "first_at", "status", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.reset()

    def reset(self) -> None:
        self.bytes = 0
        self.status = 0
        self.first_at = 0.0

    def write(self, data: bytes) -> None:
        if not self.bytes:
            self.first_at = time.monotonic()
            if data[9:12].isdigit():  # b"HTTP/1.1 200 ..."
                self.status = int(data[9:12])
        self.bytes += len(data)
        self.transport.write(data)

    def close(self) -> None:
        self.transport.close()
