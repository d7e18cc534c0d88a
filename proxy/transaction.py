"""One request's way through the cache: what each step of the pipeline reads and leaves for the next.

The steps (``pipeline``: decide, lookup, hit or miss, fetch, store, deliver; ``origin/refresh``
for background refreshes) are functions of one ``Transaction``. It holds the request as the
cache sees it (``head``, the matching rule, the decision, the client's directives), what the
lookup found, the flight that coalesced requests wait on, and the timings of the fetch, which
the storage decision needs (a response's age counts the time its request took).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tina4_sidecar.config.rules import Rule
from tina4_sidecar.proxy.access_log import note_outcome
from tina4_sidecar.proxy.flights import Shared
from tina4_sidecar.proxy.http.cacheability import Decision
from tina4_sidecar.proxy.http.entry import Entry
from tina4_sidecar.proxy.http.request_head import RequestHead
from tina4_sidecar.proxy.http.reuse import NONE, RequestDirectives
from tina4_sidecar.proxy.lookup import Lookup
from tina4_sidecar.proxy.sidecar import Sidecar

if TYPE_CHECKING:
    from aiohttp import web


@dataclass(slots=True, eq=False)
class Transaction:
    sidecar: Sidecar
    head: RequestHead
    rule: Rule | None
    decision: Decision
    client_ip: str | None
    request: web.Request | None = None
    """The aiohttp request to answer; None for a background refresh (nobody waits on it)."""
    directives: RequestDirectives = NONE
    started: float = field(default_factory=time.monotonic)
    key: str = ""
    """The URL's primary key (the lookup's variant key is ``found.key``)."""
    found: Lookup | None = None
    flight: asyncio.Future[Shared] | None = None
    request_time: float = 0.0
    """Wall clock when the fetch went out."""
    response_time: float = 0.0
    """Wall clock when the app's response headers came back."""
    fetch_seconds: float = 0.0

    @property
    def route(self) -> str | None:
        """The metrics label: the rule's path pattern; None (``none``) without a cached rule."""
        return self.rule.path if self.rule is not None and self.rule.cache else None

    @property
    def object_limit(self) -> int:
        """The largest body stored: the rule's ``max_bytes``, else TINA4_SIDECAR_MAX_OBJECT_BYTES."""
        if self.rule is not None and self.rule.max_bytes is not None:
            return self.rule.max_bytes
        return self.sidecar.settings.max_object_bytes

    @property
    def fetch_target(self) -> str:
        """The request target the app is asked for: the path as sent, the query without the
        parameters left out of the cache key (TINA4_SIDECAR_IGNORED_QUERY_PARAMS)."""
        head = self.head
        query = self.sidecar.query_filter.stripped(head.query)
        return f"{head.raw_path}?{query}" if query else head.raw_path

    @property
    def entry(self) -> Entry | None:
        """The stored entry this request may use (fresh or stale), if the lookup found one."""
        return self.found.entry if self.found is not None else None

    @property
    def variant_key(self) -> str:
        return self.found.key if self.found is not None else self.key

    def share(self, outcome: Shared) -> None:
        """Wake the requests waiting on this transaction's fetch (no-op when it leads none)."""
        if self.flight is not None:
            self.sidecar.flights.land(self.variant_key, self.flight, outcome)

    def done[R](self, outcome: str, response: R) -> R:
        self.sidecar.metrics.request(outcome, self.route, time.monotonic() - self.started)
        note_outcome(outcome)  # the access log's cache field
        return response
