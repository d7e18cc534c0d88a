"""Log lines in logfmt (``time=… level=… logger=… msg="…"``), or JSON: greppable and machine-readable.

The rendering is structlog's (``LogfmtRenderer``, ``JSONRenderer``) over the standard library's
records, so every module keeps using ``logging``. Values a client controls (paths, header values,
the text of a parse error) are escaped: quotes, backslashes and newlines by the renderer, every
other control character as ``\\xNN`` before it (a raw carriage return or escape sequence in a log
line can forge another line or drive a terminal). Timestamps are UTC with milliseconds.
A traceback is logged only for the sidecar's own errors (level ERROR), as one escaped field.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import MutableMapping
from typing import Any, Literal

import structlog
from aiohttp.http_exceptions import HttpProcessingError
from structlog.processors import JSONRenderer, LogfmtRenderer
from structlog.stdlib import ProcessorFormatter

LogFormat = Literal["logfmt", "json"]
KEY_ORDER = ["time", "level", "logger", "msg"]
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # \n (0x0a) is the renderer's to escape

EventDict = MutableMapping[str, Any]


def _from_record(_: object, __: str, event: EventDict) -> EventDict:
    """time, level, logger and msg from the standard library's record."""
    record: logging.LogRecord = event["_record"]
    seconds = int(record.created)
    millis = int((record.created - seconds) * 1000)
    event["time"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"
    event["level"] = record.levelname.lower()
    event["logger"] = record.name
    event["msg"] = event.pop("event")
    exc_info = event.pop("exc_info", None) or record.exc_info
    event.pop("stack_info", None)
    if isinstance(exc_info, tuple) and record.levelno >= logging.ERROR:
        event["exc"] = logging.Formatter().formatException(exc_info)
    return event


class Formatter(ProcessorFormatter):
    """structlog's rendering, then every control character left in the line escaped: the
    renderer escapes quotes, backslashes and newlines, not a carriage return or an ESC."""

    def format(self, record: logging.LogRecord) -> str:
        return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", super().format(record))


def formatter(log_format: LogFormat = "logfmt") -> logging.Formatter:
    renderer: Any = JSONRenderer() if log_format == "json" else LogfmtRenderer(key_order=KEY_ORDER)
    return Formatter(
        processors=[_from_record, ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=[],
        pass_foreign_args=False,
    )


class ClientErrors(logging.Filter):
    """aiohttp's server logs a request it cannot parse as an ERROR with its parser's traceback.
    That is the client's mistake, not the sidecar's: one line at INFO, with the parser's reason."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.levelno, record.levelname = logging.INFO, "INFO"
            reason = str(exc.message).splitlines()[0] if exc.message else type(exc).__name__
            record.msg, record.args = "%s: %s", (record.getMessage(), reason)
            record.exc_info = record.exc_text = None
        return True


def setup_logging(level: str, log_format: LogFormat = "logfmt") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    handler.addFilter(ClientErrors())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log costs throughput on the hit path; the sidecar's own counters suffice.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # psycopg_pool warns at every failed reconnect of a PostgreSQL outage; the store logs the outage once.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    structlog.configure(cache_logger_on_first_use=True)
