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
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from tina4_sidecar.proxy.build_info import build_info

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
    """What is read at scrape time rather than counted: the store and the manifest."""

    entries: int
    store_errors: int
    fallback: bool
    manifest_rules: int
    manifest_ok: bool


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
        self._refusal_logged = -math.inf
        self._slots: dict[tuple[str, str | None], _Slot] = {}
        self._durations = {outcome: Buckets(REQUEST_BUCKETS) for outcome in OUTCOMES}
        self._origin_statuses: dict[int, int] = {}
        self._origin_durations = Buckets(ORIGIN_BUCKETS)
        self._route_fetches: dict[str, int] = {}
        self._route_coalesced: dict[str, int] = {}
        self._gauges: Gauges | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
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


class _Collector(Collector):
    """Turns a ``Metrics``' numbers into Prometheus families at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        metrics = self._metrics
        requests = CounterMetricFamily(
            f"{PREFIX}_requests",
            "Requests answered, by cache outcome and rule path pattern ('none': no cached rule).",
            labels=("outcome", "route"),
        )
        for slot in metrics._slots.values():
            requests.add_metric((slot.outcome, slot.route or NO_ROUTE), slot.count)
        yield requests

        durations = HistogramMetricFamily(
            f"{PREFIX}_request_duration_seconds",
            "Time the sidecar took to answer a request, by cache outcome.",
            labels=("outcome",),
        )
        for outcome, buckets in metrics._durations.items():
            durations.add_metric((outcome,), buckets.cumulative(), buckets.sum)
        yield durations

        fetches = CounterMetricFamily(
            f"{PREFIX}_origin_fetches",
            "Requests sent to the app for the cache (misses, refreshes), by the app's status.",
            labels=("status",),
        )
        for status, count in sorted(metrics._origin_statuses.items()):
            fetches.add_metric((str(status),), count)
        yield fetches

        origin = HistogramMetricFamily(
            f"{PREFIX}_origin_duration_seconds", "Time the app took to answer a fetch for the cache."
        )
        origin.add_metric((), metrics._origin_durations.cumulative(), metrics._origin_durations.sum)
        yield origin

        info = build_info()
        build = GaugeMetricFamily(
            f"{PREFIX}_build_info",
            "Always 1; the labels say which sidecar this is (its version, Python's, aiohttp's, uvloop's).",
            labels=tuple(info),
        )
        build.add_metric(tuple(info.values()), 1)
        yield build

        yield CounterMetricFamily(
            f"{PREFIX}_coalesced_waiters",
            "Requests that waited for another request's fetch instead of asking the app.",
            value=metrics.coalesced,
        )

        yield CounterMetricFamily(
            f"{PREFIX}_connections_refused",
            "Client connections closed at once because TINA4_SIDECAR_MAX_CONNECTIONS were open.",
            value=metrics.connections_refused,
        )

        yield CounterMetricFamily(
            f"{PREFIX}_unreadable_entries",
            "Reads of stored entries taken as a miss because this sidecar cannot read them (written by "
            "another format version during a rolling upgrade, or corrupt); the fetch overwrites them.",
            value=metrics.unreadable_entries,
        )

        gauges = metrics._gauges
        if gauges is None:
            return
        yield CounterMetricFamily(
            f"{PREFIX}_store_errors",
            "Store calls that failed or timed out (each request went on without the cache).",
            value=gauges.store_errors,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_store_fallback",
            "1 while the file store stands in for the configured store, else 0.",
            value=int(gauges.fallback),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_cache_entries",
            "Keys in the store's response layer (entries and purge tokens; memcached: approximate).",
            value=gauges.entries,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_manifest_rules", "Caching rules in force.", value=gauges.manifest_rules
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_manifest_ok",
            "1 when the last manifest refresh succeeded, else 0 (the last good rules stay in force).",
            value=int(gauges.manifest_ok),
        )
