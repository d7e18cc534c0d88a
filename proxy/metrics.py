"""What the sidecar counts, and how it reads as JSON stats and as Prometheus metrics.

The pipeline calls ``request()``, ``origin_fetch()`` and ``coalesced_waiter()``; the admin API
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
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import choose_encoder

OUTCOMES = ("hit", "stale", "miss", "bypass", "pass", "error")
"""``hit``: fresh entry served; ``stale``: expired entry served (grace or app failure);
``miss``: fetched from the app for the cache; ``bypass``: cached route, request not allowed to
use the cache; ``pass``: no cached rule; ``error``: the sidecar answered 502/504."""

NO_ROUTE = "none"
"""The ``route`` label of requests that no cached rule covers."""

REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds; starting well below a millisecond, where HITs are answered."""

ORIGIN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Seconds the app took to send its response headers."""

PREFIX = "tina4_sidecar"

log = logging.getLogger("tina4_sidecar")


class Buckets:
    """One histogram series as plain numbers: a count per bucket (not cumulative) and a sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.sum += value
        self.counts[bisect_left(self.bounds, value)] += 1  # le: the first bound >= value

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, count)`` pairs as Prometheus wants them, ``+Inf`` last."""
        pairs: list[tuple[str, float]] = []
        total = 0
        for le, count in zip([*map(repr, self.bounds), "+Inf"], self.counts, strict=True):
            total += count
            pairs.append((le, total))
        return pairs


class _Slot:
    """Requests of one (outcome, route): their count, and the outcome's shared duration series."""

    __slots__ = ("count", "durations", "outcome", "route")

    def __init__(self, outcome: str, route: str | None, durations: Buckets) -> None:
        self.outcome = outcome
        self.route = route
        self.count = 0
        self.durations = durations


@dataclass
class RouteCounters:
    """What one route (a rule's path pattern) saw."""

    hits: int = 0
    stale: int = 0
    misses: int = 0
    bypass: int = 0
    errors: int = 0
    origin_fetches: int = 0
    coalesced: int = 0

    @property
    def hit_rate(self) -> float:
        return hit_rate(self.hits, self.stale, self.misses)

    def as_dict(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "stale": self.stale,
            "misses": self.misses,
            "bypass": self.bypass,
            "errors": self.errors,
            "hit_rate": self.hit_rate,
            "origin_fetches": self.origin_fetches,
            "coalesced": self.coalesced,
        }


_ROUTE_FIELD = {"hit": "hits", "stale": "stale", "miss": "misses", "bypass": "bypass", "error": "errors"}


def hit_rate(hits: int, stale: int, misses: int) -> float:
    """Share of cacheable lookups answered from the cache (a stale answer counts): 0 when none."""
    served = hits + stale
    total = served + misses
    return round(served / total, 4) if total else 0.0


@dataclass(frozen=True)
class Gauges:
    """What is read at scrape time rather than counted: the store, the manifest, the app."""

    entries: int
    store_errors: int
    fallback: bool
    manifest_rules: int
    manifest_ok: bool
    manifest_loaded_at: float | None = None
    app_up: bool | None = None
    in_flight: int = 0
    workers: int = 1


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
        self._slots: dict[tuple[str, str | None], _Slot] = {}
        self._durations = {outcome: Buckets(REQUEST_BUCKETS) for outcome in OUTCOMES}
        self._origin_statuses: dict[int, int] = {}
        self._origin_durations = Buckets(ORIGIN_BUCKETS)
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

    def _new_slot(self, outcome: str, route: str | None) -> _Slot:
        durations = self._durations.get(outcome)
        if durations is None:  # an outcome this module does not know yet: counted all the same
            durations = self._durations[outcome] = Buckets(REQUEST_BUCKETS)
        slot = self._slots[outcome, route] = _Slot(outcome, route, durations)
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
            name = _ROUTE_FIELD.get(slot.outcome)
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
            _add_buckets(buckets, counts, total)
        for status, count in snapshot["origin_statuses"].items():
            self._origin_statuses[int(status)] = self._origin_statuses.get(int(status), 0) + count
        _add_buckets(self._origin_durations, *snapshot["origin_durations"])
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


_SCALARS = ("origin_fetches", "coalesced", "fast_hits", "unreadable_entries", "connections_refused")


def _add_buckets(buckets: Buckets, counts: list[int], total: float) -> None:
    buckets.counts = [a + b for a, b in zip(buckets.counts, counts, strict=True)]
    buckets.sum += total


from tina4_sidecar.proxy.metrics_families import MetricsCollector  # noqa: E402  (it reads Metrics)
