"""aiohttp responses built from a stored entry: HIT, stale, collapsed, revalidated, and 304s.

Every one replays the entry's status, end-to-end headers and exact body bytes, then adds the
sidecar's own X-Cache, X-Cache-TTL, Age and Cache-Status, all from ``http.cache_headers`` (the
fast path builds its bytes from the same functions). A request whose validators match the entry
gets a 304 instead of the body.
"""

from __future__ import annotations

import time

from multidict import CIMultiDict

from tina4_sidecar.proxy.http import cache_headers as ch
from tina4_sidecar.proxy.http.cache_headers import Kind
from tina4_sidecar.proxy.http.conditional import headers_for_304, not_modified
from tina4_sidecar.proxy.http.entry import Entry
from tina4_sidecar.proxy.responses import Response
from tina4_sidecar.proxy.transaction import Transaction


def answer(tx: Transaction, entry: Entry, kind: Kind, error_status: int | None = None) -> Response:
    """``entry`` as the answer to ``tx`` (or a 304 when the client's copy is current)."""
    now = time.time()
    replayed = ch.replayed(entry)
    if entry.status == 200 and not_modified(
        tx.head.headers, entry.header("ETag"), entry.header("Last-Modified")
    ):
        headers = CIMultiDict(headers_for_304(replayed.headers))
        status, body = 304, b""
    else:
        headers = CIMultiDict(replayed.headers)
        status, body = entry.status, entry.body
    headers.extend(ch.answer_headers(kind, entry, now, tx.sidecar.name, replayed.inner_status, error_status))
    response = Response(status=status, headers=headers)
    # aiohttp sends no body for HEAD but keeps this Content-Length: the GET entry's length.
    response.body = body
    return response
