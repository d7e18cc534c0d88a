"""``GET <prefix>inspect?url=/path?query[&host=name]``: what the cache holds for one URL.

The entry's metadata, never its body: status, TTL left (negative once stale), age, size, the
stale windows, its tags (the rule's and the app's tag header, recorded as the scopes it is
purgeable by), the ``Vary`` names of a varying URL and the key of the variant looked up, and
whether it is fresh, stale or purged. The lookup is the one requests make (``proxy/lookup.py``),
with the request's other headers absent: a varying URL is shown for the variant a request
without those headers gets. Needs the admin token on the public listener, like ``stats``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from multidict import CIMultiDict, CIMultiDictProxy

from tina4_sidecar.proxy.http.request_head import RequestHead, normalized_host
from tina4_sidecar.proxy.http.variants import decode_index
from tina4_sidecar.proxy.lookup import lookup

if TYPE_CHECKING:
    from aiohttp import web

    from tina4_sidecar.proxy.sidecar import Sidecar

TAG_SCOPE = "~tok:tag:"


async def inspect(sidecar: Sidecar, request: web.BaseRequest) -> web.StreamResponse:
    from tina4_sidecar.proxy.admin.api import error, reply  # the API imports this module

    given = request.query.get("url", "")
    parts = urlsplit(given)
    if not given or not (parts.path or "/").startswith("/") or (parts.scheme and not parts.netloc):
        return error(400, "expected ?url=/path?query (or a full http:// URL), and optionally &host=name")
    host_text = request.query.get("host") or parts.netloc or request.host
    host = normalized_host(host_text, "http")
    if host is None:
        return error(400, f"not a valid host: {host_text!r}")
    raw_path = parts.path or "/"
    head = RequestHead(
        method="GET",
        scheme=parts.scheme or "http",
        host=host,
        path=unquote(raw_path),
        raw_path=raw_path,
        query=parts.query,
        headers=CIMultiDictProxy(CIMultiDict({"Host": host})),
    )
    rule = sidecar.rules.match("GET", head.path)
    primary = sidecar.key_for(head)
    found = await lookup(sidecar, primary, head)
    raw_index = await sidecar.store.get(primary)
    names = decode_index(raw_index) if raw_index is not None else None
    body: dict[str, object] = {
        "key": primary,
        "rule": rule.path if rule is not None and rule.cache else None,
        "variants": {"vary": list(names), "key": found.key} if names is not None else None,
    }
    entry = found.entry
    if entry is None:
        return reply(
            404, {**body, "cached": False, "detail": "no usable entry (never stored, expired, or purged)"}
        )
    now = time.time()
    body |= {
        "cached": True,
        "state": "fresh" if entry.is_fresh(now) else "stale",
        "status": entry.status,
        "ttl": entry.ttl,
        "ttl_left": entry.remaining(now),
        "age": entry.age(now),
        "stored_at": entry.stored_at,
        "size": len(entry.body),
        "headers": len(entry.headers),
        "tags": sorted(name[len(TAG_SCOPE) :] for name, _ in entry.tokens if name.startswith(TAG_SCOPE)),
        "stale_while_revalidate": entry.stale_while_revalidate,
        "stale_if_error": entry.stale_if_error,
        "vary": [name for name, _ in entry.vary],
    }
    return reply(200, body)
