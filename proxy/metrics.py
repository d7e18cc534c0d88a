"""What the sidecar counts: per-request outcomes, origin fetches, coalesced waiters.

The pipeline calls these methods; the admin endpoint reads them (JSON stats and Prometheus).
"""

from __future__ import annotations

from dataclasses import dataclass, field

OUTCOMES = ("hit", "stale", "miss", "bypass", "pass", "error")
"""``hit``: fresh entry served; ``stale``: expired entry served (grace or app failure);
``miss``: fetched from the app for the cache; ``bypass``: cached route, request not allowed to
use the cache; ``pass``: no cached rule; ``error``: the sidecar answered 502/504."""


@dataclass
class RouteCounters:
    hits: int = 0
    stale: int = 0
    misses: int = 0
    bypass: int = 0


@dataclass
class Metrics:
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    routes: dict[str, RouteCounters] = field(default_factory=dict)
    origin_fetches: int = 0
    coalesced: int = 0

    def request(self, outcome: str, route: str | None, seconds: float) -> None:
        """One answered request; ``route`` is the rule's path pattern (None for ``pass``)."""
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if route is not None and outcome in ("hit", "stale", "miss", "bypass"):
            counters = self.routes.setdefault(route, RouteCounters())
            if outcome == "hit":
                counters.hits += 1
            elif outcome == "stale":
                counters.stale += 1
            elif outcome == "miss":
                counters.misses += 1
            else:
                counters.bypass += 1

    def origin_fetch(self, route: str | None, status: int, seconds: float) -> None:
        """One request sent to the app on behalf of the cache (miss, refresh, revalidation)."""
        self.origin_fetches += 1

    def coalesced_waiter(self, route: str | None) -> None:
        """A request that waited for another request's fetch instead of asking the app."""
        self.coalesced += 1
