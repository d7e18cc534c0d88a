"""The plain numbers behind the sidecar's metrics: histogram series, per-route counters, the
gauges read at scrape time, and the label values they may take (``proxy/metrics.py`` counts with
them; ``proxy/metrics_families.py`` turns them into Prometheus families)."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

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

STORE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Seconds a store call took: an in-process store answers in microseconds, a network one in
about a millisecond, and calls are bounded by TINA4_CACHE_TIMEOUT."""

STORE_OPERATIONS = ("get", "get_many", "set", "add", "delete", "clear", "size")
"""The ``operation`` label of the store's latency: the store contract's calls."""

PREFIX = "tina4_sidecar"


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


class Slot:
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


ROUTE_FIELD = {"hit": "hits", "stale": "stale", "miss": "misses", "bypass": "bypass", "error": "errors"}


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


def add_buckets(buckets: Buckets, counts: list[int], total: float) -> None:
    """Add another worker's counts and sum of one series to ``buckets``."""
    buckets.counts = [a + b for a, b in zip(buckets.counts, counts, strict=True)]
    buckets.sum += total
