"""Answers for an app that cannot be reached: short JSON, a log line, never a traceback."""

from __future__ import annotations

import json
import logging

from aiohttp import web

from tina4_sidecar.proxy.origin.upstream import UpstreamTimeout

log = logging.getLogger("tina4_sidecar.proxy")


def gateway_error(upstream: str, exc: Exception) -> web.Response:
    """502 when the app is unreachable, 504 when it did not answer in time."""
    status, body = gateway_error_body(upstream, exc)
    return web.Response(status=status, text=body, content_type="application/json")


def gateway_error_body(upstream: str, exc: Exception) -> tuple[int, str]:
    """The status and JSON body of ``gateway_error`` (logged once), for servers below aiohttp."""
    timed_out = isinstance(exc, UpstreamTimeout)
    status = 504 if timed_out else 502
    error = "upstream timed out" if timed_out else "upstream unavailable"
    log.warning("%s: %s (%s)", error, upstream, exc)
    # The app's address is logged, never told to clients: it maps the network behind the sidecar.
    return status, json.dumps({"error": error, "status": status})
