"""Log lines in logfmt (``time=… level=… logger=… msg="…"``): greppable and machine-readable."""

from __future__ import annotations

import logging
import sys
import time


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        message = record.getMessage().replace("\\", "\\\\").replace('"', '\\"')
        line = f'time={stamp}Z level={record.levelname.lower()} logger={record.name} msg="{message}"'
        if record.exc_info and record.levelno >= logging.ERROR:
            line += f' exc="{self.formatException(record.exc_info)!r}"'
        return line


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log costs throughput on the hit path; the sidecar's own counters suffice.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # psycopg_pool warns at every failed reconnect of a PostgreSQL outage; the store logs the outage once.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
