"""What the sidecar counts, and how it reads as JSON stats and as Prometheus metrics.

The pipeline calls ``request()``, ``origin_fetch()`` and ``coalesced_waiter()``, the connections
to the app ``origin_received()``, the store ``store_call()``; the admin API
reads ``stats()`` and ``exposition()``. Each sidecar has its own ``CollectorRegistry`` (several
sidecars run in one test process; the global registry would mix them).

``request()`` runs on every request, HITs included, so it only bumps plain numbers in a slot
cached per (outcome, route): measured here (best of 7 runs of 1M calls), prometheus-client's
cached labelled children, ``Counter.inc()`` plus ``Histogram.observe()``, cost about 1.4 us a call
(a lock per value, a Python loop over the buckets), this about 0.33 us. The numbers become
Prometheus families when scraped, through a custom collector; the text format is
prometheus-client's. Everything runs on the event loop's thread, so the plain increments need no
lock.

Label cardinality stays bounded: ``route`` is a rule's path pattern (the manifest's, never a raw
URL) or ``none``; ``outcome`` is one of ``OUTCOMES``; ``status`` an HTTP status code.
"""

from __future__ import annotations

import logging
import math
import time
from bisect import bisect_left
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import choose_encoder

from tina4_sidecar.proxy.metrics_series import (
    NO_ROUTE,
    ORIGIN_BUCKETS,
    OUTCOMES,
    PREFIX,
    REQUEST_BUCKETS,
    ROUTE_FIELD,
    STORE_BUCKETS,
    Buckets,
    Gauges,
    RouteCounters,
    Slot,
    add_buckets,
    hit_rate,
)

__all__ = ["NO_ROUTE", "OUTCOMES", "PREFIX", "Gauges", "Metrics", "RouteCounters", "hit_rate"]

log = logging.getLogger("tina4_sidecar")


class Metrics:
    """The sidecar's counters. Not thread-safe: called from the event loop only."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.origin_fetches = 0
        self.coalesced = 0
        self.fast_hits = 0
        """HITs answered by the protocol-level fast path (a subset of the ``hit`` outcome)."""
        self.unreadable_entries = 0
        self._unreadable_reasons: set[str] = set()
        self.connections_refused = 0
        self.status_classes = [0] * 6
        """Answers by status class: index 1 for 1xx ... 5 for 5xx (0: anything else)."""
        self.bytes_sent: dict[str, int] = {}
        """Bytes sent to clients (headers included), by cache outcome."""
        self.purges: dict[str, int] = {}
        """Admin purges by kind (url, route, prefix, tag, host, all, and soft- ones)."""
        self._refusal_logged = -math.inf
        self._slots: dict[tuple[str, str | None], Slot] = {}
        self._durations = {outcome: Buckets(REQUEST_BUCKETS) for outcome in OUTCOMES}
        self._origin_statuses: dict[int, int] = {}
        self._origin_durations = Buckets(ORIGIN_BUCKETS)
        self.origin_bytes = 0
        """Bytes of bodies received from the app, on both transports (fetches and forwards)."""
        self._store_durations: dict[str, Buckets] = {}
        """Seconds each store call took, by operation (``store.contract.Store.observe``)."""
        self._route_fetches: dict[str, int] = {}
        self._route_coalesced: dict[str, int] = {}
        self._gauges: Gauges | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(MetricsCollector(self))
        ProcessCollector(registry=self.registry)  # memory, CPU, open files of this process

    # -- what the pipeline calls ------------------------------------------------------------------

    def request(self, outcome: str, route: str | None, seconds: float) -> None:
        """One answered request; ``route`` is the rule's path pattern (None for ``pass``)."""
        slot = self._slots.get((outcome, route))
        if slot is None:
            slot = self._new_slot(outcome, route)
        slot.count += 1
        durations = slot.durations  # Buckets.observe() inlined: a call costs a third of this method
        durations.sum += seconds
        durations.counts[bisect_left(durations.bounds, seconds)] += 1

    def answered(self, outcome: str, status: int, size: int) -> None:
        """One answer sent: its status class and bytes (the access log's hook calls it)."""
        self.status_classes[status // 100 if 100 <= status < 600 else 0] += 1
        self.bytes_sent[outcome] = self.bytes_sent.get(outcome, 0) + size

    def purged(self, kind: str) -> None:
        self.purges[kind] = self.purges.get(kind, 0) + 1

    def origin_fetch(self, route: str | None, status: int, seconds: float) -> None:
        """One request sent to the app on behalf of the cache (miss, refresh, revalidation)."""
        self.origin_fetches += 1
        self._origin_statuses[status] = self._origin_statuses.get(status, 0) + 1
        self._origin_durations.observe(seconds)
        if route is not None:
            self._route_fetches[route] = self._route_fetches.get(route, 0) + 1

    def origin_received(self, size: int) -> None:
        """Body bytes received from the app (the transports' connections to it call it)."""
        self.origin_bytes += size

    def store_call(self, operation: str, seconds: float) -> None:
        """One call of the sidecar's store and how long it took, failed ones included."""
        durations = self._store_durations.get(operation)
        if durations is None:
            durations = self._store_durations[operation] = Buckets(STORE_BUCKETS)
        durations.sum += seconds
        durations.counts[bisect_left(durations.bounds, seconds)] += 1

    def coalesced_waiter(self, route: str | None) -> None:
        """A request that waited for another request's fetch instead of asking the app."""
        self.coalesced += 1
        if route is not None:
            self._route_coalesced[route] = self._route_coalesced.get(route, 0) + 1

    def connection_refused(self, limit: int) -> None:
        """A connection closed at once because TINA4_SIDECAR_MAX_CONNECTIONS were open (logged at
        most once a minute, with the count since the last line)."""
        self.connections_refused += 1
        now = time.monotonic()
        if now - self._refusal_logged >= 60:
            self._refusal_logged = now
            log.warning(
                "connection limit reached (%d open, TINA4_SIDECAR_MAX_CONNECTIONS): closing new "
                "connections; %d refused so far",
                limit,
                self.connections_refused,
            )

    def unreadable_entry(self, reason: str) -> bool:
        """A stored entry this sidecar cannot read (another format version, corrupt bytes), taken
        as a miss; True the first time ``reason`` is seen (log it then, not on every request)."""
        self.unreadable_entries += 1
        if reason in self._unreadable_reasons or len(self._unreadable_reasons) >= 64:
            return False
        self._unreadable_reasons.add(reason)
        return True

    def _new_slot(self, outcome: str, route: str | None) -> Slot:
        durations = self._durations.get(outcome)
        if durations is None:  # an outcome this module does not know yet: counted all the same
            durations = self._durations[outcome] = Buckets(REQUEST_BUCKETS)
        slot = self._slots[outcome, route] = Slot(outcome, route, durations)
        return slot

    # -- what the admin API reads -------------------------------------------------------------------

    @property
    def uptime(self) -> float:
        return time.monotonic() - self.started

    @property
    def outcomes(self) -> dict[str, int]:
        """Requests per outcome, every outcome present."""
        counts = dict.fromkeys(self._durations, 0)
        for slot in self._slots.values():
            counts[slot.outcome] += slot.count
        return counts

    @property
    def routes(self) -> dict[str, RouteCounters]:
        """Counters per rule path pattern, for routes that saw a cacheable outcome or a fetch."""
        routes: dict[str, RouteCounters] = {}
        for slot in self._slots.values():
            name = ROUTE_FIELD.get(slot.outcome)
            if slot.route is None or name is None:
                continue
            counters = routes.setdefault(slot.route, RouteCounters())
            setattr(counters, name, getattr(counters, name) + slot.count)
        for route, count in self._route_fetches.items():
            routes.setdefault(route, RouteCounters()).origin_fetches = count
        for route, count in self._route_coalesced.items():
            routes.setdefault(route, RouteCounters()).coalesced = count
        return routes

    def stats(self) -> dict[str, Any]:
        """The counted part of the admin API's stats document."""
        outcomes = self.outcomes
        return {
            "hits": outcomes["hit"],
            "misses": outcomes["miss"],
            "stale": outcomes["stale"],
            "bypass": outcomes["bypass"],
            "pass": outcomes["pass"],
            "errors": outcomes["error"],
            "hit_rate": hit_rate(outcomes["hit"], outcomes["stale"], outcomes["miss"]),
            "origin_fetches": self.origin_fetches,
            "coalesced": self.coalesced,
            "routes": {route: counters.as_dict() for route, counters in sorted(self.routes.items())},
            "uptime_seconds": round(self.uptime, 3),
        }

    def exposition(self, gauges: Gauges, accept: str | None = None) -> tuple[bytes, str]:
        """Prometheus text (or OpenMetrics when ``accept`` asks for it) and its content type."""
        self._gauges = gauges  # read by the collector during the (synchronous) rendering below
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    # -- one view of several workers (proxy/workers_view.py) ----------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Every counter as plain JSON, to be summed with other workers' snapshots."""
        return {
            "slots": [[slot.outcome, slot.route, slot.count] for slot in self._slots.values()],
            "durations": {name: [b.counts, b.sum] for name, b in self._durations.items()},
            "origin_statuses": {str(status): count for status, count in self._origin_statuses.items()},
            "origin_durations": [self._origin_durations.counts, self._origin_durations.sum],
            "store_durations": {name: [b.counts, b.sum] for name, b in self._store_durations.items()},
            "route_fetches": self._route_fetches,
            "route_coalesced": self._route_coalesced,
            "scalars": {name: getattr(self, name) for name in _SCALARS},
            "status_classes": self.status_classes,
            "bytes_sent": self.bytes_sent,
            "purges": self.purges,
        }

    def add(self, snapshot: dict[str, Any]) -> None:
        """Add another worker's ``snapshot()`` to these counters."""
        for outcome, route, count in snapshot["slots"]:
            slot = self._slots.get((outcome, route)) or self._new_slot(outcome, route)
            slot.count += count
        for name, (counts, total) in snapshot["durations"].items():
            buckets = self._durations.setdefault(name, Buckets(REQUEST_BUCKETS))
            add_buckets(buckets, counts, total)
        for status, count in snapshot["origin_statuses"].items():
            self._origin_statuses[int(status)] = self._origin_statuses.get(int(status), 0) + count
        add_buckets(self._origin_durations, *snapshot["origin_durations"])
        for name, (counts, total) in snapshot.get("store_durations", {}).items():
            add_buckets(self._store_durations.setdefault(name, Buckets(STORE_BUCKETS)), counts, total)
        for mine, theirs in ((self._route_fetches, snapshot["route_fetches"]),
                             (self._route_coalesced, snapshot["route_coalesced"]),
                             (self.bytes_sent, snapshot["bytes_sent"]),
                             (self.purges, snapshot["purges"])):  # fmt: skip
            for name, count in theirs.items():
                mine[name] = mine.get(name, 0) + count
        for name, value in snapshot["scalars"].items():
            setattr(self, name, getattr(self, name) + value)
        self.status_classes = [
            a + b for a, b in zip(self.status_classes, snapshot["status_classes"], strict=True)
        ]


_SCALARS = (
    "origin_fetches",
    "coalesced",
    "fast_hits",
    "unreadable_entries",
    "connections_refused",
    "origin_bytes",
)


from tina4_sidecar.proxy.metrics_families import MetricsCollector  # noqa: E402  (it reads Metrics)
