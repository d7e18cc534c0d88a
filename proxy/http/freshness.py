"""How old an entry may be and still be served: fresh, stale-while-revalidate, stale-if-error.

RFC 5861's windows come from the response's own ``Cache-Control`` directives when the app sends
them, else from the rule, else from the sidecar's settings. Early refresh follows "optimal
probabilistic cache stampede prevention" (XFetch, Vattani et al.): a HIT refreshes the entry in
the background with a probability that rises as expiry nears, scaled by how long the app took
to produce it, so a hot key is renewed by one request before it ever expires for everyone.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from enum import Enum

from tina4_sidecar.proxy.http.entry import Entry


class State(Enum):
    FRESH = "fresh"
    STALE_REVALIDATE = "stale-while-revalidate"
    STALE_IF_ERROR = "stale-if-error"
    DEAD = "dead"


def state_of(entry: Entry, now: float) -> State:
    age_past_ttl = now - entry.expires_at()
    if age_past_ttl < 0:
        return State.FRESH
    if age_past_ttl < entry.stale_while_revalidate:
        return State.STALE_REVALIDATE
    if age_past_ttl < entry.stale_if_error:
        return State.STALE_IF_ERROR
    return State.DEAD


def directive_seconds(cache_control: str, name: str) -> int | None:
    """``stale-if-error=600`` in a Cache-Control value -> 600; None when absent or malformed."""
    for item in cache_control.split(","):
        key, _, value = item.strip().partition("=")
        if key.strip().lower() == name:
            value = value.strip().strip('"')
            return int(value) if value.isdigit() else None
    return None


def stale_windows(headers: Mapping[str, str], rule_swr: int, rule_sie: int) -> tuple[int, int]:
    """(stale-while-revalidate, stale-if-error) seconds for a response about to be stored."""
    cache_control = headers.get("Cache-Control", "")
    swr = directive_seconds(cache_control, "stale-while-revalidate")
    sie = directive_seconds(cache_control, "stale-if-error")
    return (rule_swr if swr is None else swr, rule_sie if sie is None else sie)


def jittered(ttl: int, fraction: float, rng: random.Random | None = None) -> int:
    """``ttl`` shortened by up to ``fraction`` at random, so entries stored together expire apart."""
    if fraction <= 0 or ttl <= 1:
        return ttl
    return max(1, ttl - int((rng or random).random() * fraction * ttl))


def should_refresh_early(entry: Entry, now: float, beta: float, rng: random.Random | None = None) -> bool:
    """XFetch: refresh when ``now - delta * beta * ln(rand) >= expiry``."""
    if beta <= 0 or entry.fetch_seconds <= 0:
        return False
    if entry.expires_at() - now > entry.fetch_seconds * beta * 30:
        return False  # firing needs -ln(draw) > 30: a chance below 1e-13, not worth the draw
    draw = (rng or random).random() or 1e-12
    return now - entry.fetch_seconds * beta * math.log(draw) >= entry.expires_at()


def storage_ttl(entry: Entry) -> int:
    """How long the store keeps the entry: its TTL plus the longer stale window."""
    return entry.ttl + max(entry.stale_while_revalidate, entry.stale_if_error)
