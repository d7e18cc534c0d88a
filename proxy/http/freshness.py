"""How long a response stays fresh, how old it is, and how old an entry may be and still be served.

- Lifetime (RFC 9111 section 4.2.1, standards mode): ``Surrogate-Control: max-age`` (we are the
  surrogate), then ``s-maxage``, ``max-age``, ``Expires`` minus ``Date``, then a heuristic for
  a ``Last-Modified`` response (section 4.2.2: a fraction of its age, capped). Duplicated or
  invalid freshness directives make a response stale (0).
- Age (section 4.2.3): the corrected initial age of a response when it arrived, from its ``Age``
  and ``Date`` and the time the request took.
- States: fresh, stale-while-revalidate, stale-if-error (RFC 5861), dead. The windows come from
  the response's own directives when the app sends them, else from the rule, else from the
  settings.
- Early refresh follows "optimal probabilistic cache stampede prevention" (XFetch, Vattani et
  al.): a HIT refreshes the entry in the background with a probability that rises as expiry
  nears, scaled by how long the app took to produce it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import Enum

from tina4_sidecar.proxy.http import fields
from tina4_sidecar.proxy.http.dates import parse_http_date
from tina4_sidecar.proxy.http.entry import Entry
from tina4_sidecar.proxy.http.fields import Headers

HEURISTIC_FRACTION = 0.1
"""RFC 9111 section 4.2.2's "typical setting": 10 % of the time since Last-Modified."""

HEURISTIC_CAP = 24 * 3600
"""No heuristic lifetime above a day (a guess must not keep a page for weeks)."""


class State(Enum):
    FRESH = "fresh"
    STALE_REVALIDATE = "stale-while-revalidate"
    STALE_IF_ERROR = "stale-if-error"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Lifetime:
    """A response's freshness lifetime in seconds; ``explicit``: set by a directive or Expires
    (not guessed), which also lets it shorten a rule's TTL in standards mode."""

    seconds: int
    explicit: bool


def http_date(value: str | None) -> float | None:
    """An HTTP-date as a timestamp; None when absent or invalid (``dates.parse_http_date``)."""
    return parse_http_date(value)


def date_of(headers: Headers, response_time: float) -> float:
    """The response's ``Date`` (only one line counts), else when it arrived."""
    dates = fields.lines(headers, "Date")
    found = http_date(dates[0]) if len(dates) == 1 else None
    return response_time if found is None else found


def lifetime(headers: Headers, status: int, response_time: float, heuristic: bool) -> Lifetime | None:
    """The freshness lifetime a shared cache gives this response; None when it has none at all
    (no explicit freshness and no heuristic allowed). ``heuristic``: the status is heuristically
    cacheable, or the response is ``public``."""
    surrogate = fields.surrogate_control(headers)
    if "max-age" in surrogate:
        return _directive_lifetime(surrogate, "max-age")
    targeted = fields.cdn_cache_control(headers)
    cache_control = targeted if targeted is not None else fields.cache_control(headers)
    for name in ("s-maxage", "max-age"):
        if name in cache_control:
            return _directive_lifetime(cache_control, name)
    expires = fields.lines(headers, "Expires") if targeted is None else []  # RFC 9213: it replaces both
    if expires:
        when = http_date(expires[0]) if len(expires) == 1 else None
        if when is None:  # invalid (even "0") or repeated: already expired (section 5.3)
            return Lifetime(0, explicit=True)
        seconds = int(when - date_of(headers, response_time))
        return Lifetime(min(max(0, seconds), fields.MAX_DELTA_SECONDS), explicit=True)
    if not heuristic:
        return None
    modified = http_date(next(iter(fields.lines(headers, "Last-Modified")), None))
    if modified is None:
        return Lifetime(0, explicit=False)
    age = date_of(headers, response_time) - modified
    return Lifetime(min(HEURISTIC_CAP, max(0, int(age * HEURISTIC_FRACTION))), explicit=False)


def _directive_lifetime(directives: fields.Directives, name: str) -> Lifetime:
    seconds = directives.seconds(name)
    if seconds is None or name in directives.repeated:
        return Lifetime(0, explicit=True)  # invalid or contradictory: stale (section 4.2.1)
    return Lifetime(seconds, explicit=True)


def initial_age(headers: Headers, request_time: float, response_time: float) -> int:
    """The corrected initial age (RFC 9111 section 4.2.3) of a response when it arrived."""
    ages = fields.items(headers, "Age")  # the first member counts (RFC 9111 section 4.2.1)
    age_value = (fields.delta_seconds(ages[0]) if ages else None) or 0  # an invalid one is ignored
    apparent_age = max(0.0, response_time - date_of(headers, response_time))
    corrected_age_value = age_value + max(0.0, response_time - request_time)
    return int(max(apparent_age, corrected_age_value))


def state_of(entry: Entry, now: float) -> State:
    age_past_ttl = now - entry.expires_at()
    if age_past_ttl < 0:
        return State.FRESH
    if age_past_ttl < entry.stale_while_revalidate:
        return State.STALE_REVALIDATE
    if age_past_ttl < entry.stale_if_error:
        return State.STALE_IF_ERROR
    return State.DEAD


def stale_windows(headers: Headers, rule_swr: int, rule_sie: int) -> tuple[int, int]:
    """(stale-while-revalidate, stale-if-error) seconds for a response about to be stored."""
    cache_control = fields.response_cache_control(headers)
    swr = cache_control.seconds("stale-while-revalidate")
    sie = cache_control.seconds("stale-if-error")
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


REVALIDATION_KEEP = 60
"""Seconds an expired entry with a validator stays in the store for a conditional fetch, beyond
its stale windows (a 304 is cheaper for the app than a whole answer)."""


MAX_STORAGE_TTL = 365 * 24 * 3600
"""No entry is kept longer than a year (a cache may always let one go; the stores' own TTL fields
stay far from their limits, memcached's 32-bit expiry times among them)."""


def storage_ttl(entry: Entry) -> int:
    """How long the store keeps the entry: its TTL plus the longer stale window (never 0, which
    means "no expiry" to the stores, and at most a year)."""
    keep = max(entry.stale_while_revalidate, entry.stale_if_error)
    if entry.header("ETag") is not None or entry.header("Last-Modified") is not None:
        keep = max(keep, REVALIDATION_KEEP)
    return min(max(1, entry.ttl + keep), MAX_STORAGE_TTL)
