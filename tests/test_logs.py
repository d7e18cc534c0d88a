"""Log lines: one line per record whatever the values hold, logfmt or JSON, milliseconds, and a
traceback only for the sidecar's own errors."""

from __future__ import annotations

import json
import logging
import re

import pytest

from tina4_sidecar.proxy.logs import formatter

FORGED = '/a\r\nlevel=error msg="forged" \x1b[31m=\x00'


def record(message: str, *args: object, level: int = logging.WARNING, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("broken\nvalue")
        except ValueError:
            import sys

            exc_info = sys.exc_info()
    return logging.LogRecord("tina4_sidecar.proxy", level, __file__, 1, message, args, exc_info)


@pytest.mark.parametrize("log_format", ["logfmt", "json"])
def test_client_controlled_values_stay_on_one_line(log_format: str) -> None:
    line = formatter(log_format).format(record("stream of GET %s broke off", FORGED))  # type: ignore[arg-type]

    assert "\n" not in line
    assert "\r" not in line
    assert "\x1b" not in line
    assert "\x00" not in line
    if log_format == "json":
        assert json.loads(line)["msg"].startswith("stream of GET /a")
    else:
        assert line.count(" level=") == 1  # the forged pair is inside the quoted msg
        assert re.match(r'time=\S+ level=warning logger=tina4_sidecar.proxy msg="stream of GET /a', line)


def test_milliseconds_and_order() -> None:
    line = formatter().format(record("plain"))
    assert re.fullmatch(
        r"time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=warning logger=\S+ msg=plain", line
    )


def test_tracebacks_only_for_errors_and_escaped() -> None:
    warning = formatter().format(record("went on", exc=True))
    error = formatter().format(record("failed", level=logging.ERROR, exc=True))
    assert "Traceback" not in warning
    assert "exc=" in error
    assert "ValueError: broken\\nvalue" in error
    assert "\n" not in error


def test_a_request_aiohttp_cannot_parse_is_one_info_line() -> None:
    from aiohttp.http_exceptions import BadHttpMessage

    from tina4_sidecar.proxy.logs import ClientErrors

    try:
        raise BadHttpMessage("Invalid header value char:\n\n  b'X-A: a'\n      ^")
    except BadHttpMessage:
        import sys

        exc_info = sys.exc_info()
    item = logging.LogRecord(
        "aiohttp.server", logging.ERROR, __file__, 1, "Error handling request", (), exc_info
    )

    assert ClientErrors().filter(item)
    line = formatter().format(item)
    assert item.levelname == "INFO"
    assert 'msg="Error handling request: Invalid header value char:"' in line
    assert "exc=" not in line
