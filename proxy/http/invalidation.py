"""What an unsafe request invalidates (RFC 9111 section 4.4).

A non-error answer (2xx, 3xx) to POST, PUT, PATCH, DELETE, or any method not known to be safe,
invalidates what is stored for the request's URL, and for the URLs its ``Location`` and
``Content-Location`` name when they are on the same host (another host's entries are not this
request's to drop: that would let anyone purge any page). Safe methods (GET, HEAD, OPTIONS,
TRACE and the WebDAV reads) invalidate nothing.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from tina4_sidecar.proxy.http import fields
from tina4_sidecar.proxy.http.cacheability import SAFE_METHODS
from tina4_sidecar.proxy.http.fields import Headers


def invalidates(method: str, status: int) -> bool:
    return method not in SAFE_METHODS and 200 <= status < 400


def invalidated_targets(
    method: str, status: int, host: str, raw_path: str, query: str, response_headers: Headers
) -> list[tuple[str, str]]:
    """``(raw path, raw query)`` of every URL on ``host`` whose stored responses are now invalid."""
    if not invalidates(method, status):
        return []
    targets = [(raw_path, query)]
    base = f"http://{host}{raw_path}"
    for name in ("Location", "Content-Location"):
        for value in fields.lines(response_headers, name):
            parts = urlsplit(urljoin(base, value.strip()))
            if parts.netloc.lower() != host.lower() or not parts.path.startswith("/"):
                continue
            target = (parts.path, parts.query)
            if target not in targets:
                targets.append(target)
    return targets
