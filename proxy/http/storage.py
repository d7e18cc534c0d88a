"""The decision to store a response, and on what terms: for how long, how old it already is, and
how it may be reused (stale windows, revalidation, credentialed requests).

Default mode: a rule's route, stored for the rule's TTL unless the response forbids storing
(``cacheability.unstorable_reason``). Standards mode (``honor``): as an RFC 9111 shared cache,
by the response's freshness (``freshness.lifetime``); on a rule's route the stricter of the rule
and the response wins (the response can forbid storing, ask for revalidation or shorten the TTL,
never lengthen it).
"""

from __future__ import annotations

from dataclasses import dataclass

from tina4_sidecar.config.rules import Rule
from tina4_sidecar.proxy.http import fields
from tina4_sidecar.proxy.http.cacheability import (
    HEURISTIC_STATUSES,
    shareable_with_credentials,
    standards_unstorable_reason,
    unstorable_reason,
)
from tina4_sidecar.proxy.http.fields import Headers
from tina4_sidecar.proxy.http.freshness import initial_age, lifetime, stale_windows


@dataclass(frozen=True, slots=True)
class Storage:
    ttl: int
    """Seconds the entry is fresh from now (its lifetime less the age it arrived with)."""
    rule_ttl: bool
    """The TTL is the rule's (jitter may shorten it), not the response's own lifetime."""
    initial_age: int = 0
    stale_while_revalidate: int = 0
    stale_if_error: int = 0
    revalidate: bool = False
    no_stale: bool = False
    shared_auth: bool = False


@dataclass(frozen=True, slots=True)
class Exchange:
    """What the decision reads: the request's method and headers, the response, and when the
    request went out and the response's headers came back (wall clock)."""

    method: str
    request_headers: Headers
    status: int
    headers: Headers
    request_time: float
    response_time: float


def decide(
    exchange: Exchange, rule: Rule | None, honor: bool, default_swr: int, default_sie: int
) -> Storage | str:
    """How to store the response, or why not (a short reason, for logs and Cache-Status)."""
    rule_swr = (
        default_swr if rule is None or rule.stale_while_revalidate is None else rule.stale_while_revalidate
    )
    rule_sie = default_sie if rule is None or rule.stale_if_error is None else rule.stale_if_error
    covered = rule is not None and rule.cache and rule.ttl > 0
    if not honor:
        if rule is None or not covered:
            return "no-rule"
        refused = unstorable_reason(exchange.status, exchange.headers, rule)
        if refused is not None:
            return refused
        swr, sie = stale_windows(exchange.headers, rule_swr, rule_sie)
        return Storage(rule.ttl, rule_ttl=True, stale_while_revalidate=swr, stale_if_error=sie)
    return _standards(exchange, rule if covered else None, rule_swr, rule_sie)


def _standards(exchange: Exchange, rule: Rule | None, rule_swr: int, rule_sie: int) -> Storage | str:
    headers = exchange.headers
    refused = standards_unstorable_reason(
        exchange.method, exchange.status, headers, exchange.request_headers, rule
    )
    if refused is not None:
        return refused
    cache_control = fields.response_cache_control(headers)
    heuristic = exchange.status in HEURISTIC_STATUSES or "public" in cache_control
    found = lifetime(headers, exchange.status, exchange.response_time, heuristic)
    if found is None and rule is None:
        return "no-freshness"
    age = initial_age(headers, exchange.request_time, exchange.response_time)
    if rule is None:
        assert found is not None
        ttl, rule_ttl = max(0, found.seconds - age), False
    elif found is not None and found.explicit and found.seconds - age < rule.ttl:
        ttl, rule_ttl = max(0, found.seconds - age), False  # the response's shorter lifetime wins
    else:
        ttl, rule_ttl = rule.ttl, True
    revalidate = "no-cache" in cache_control or fields.pragma_no_cache(headers)
    no_stale = not {"must-revalidate", "proxy-revalidate", "s-maxage"}.isdisjoint(cache_control.arguments)
    swr, sie = (0, 0) if no_stale else stale_windows(headers, rule_swr, rule_sie)
    validator = fields.has(headers, "ETag") or fields.has(headers, "Last-Modified")
    if (ttl <= 0 or revalidate) and not validator and not swr:
        return "stale-on-arrival"  # nothing could reuse it (stale-if-error alone is not worth a write)
    return Storage(
        ttl,
        rule_ttl=rule_ttl,
        initial_age=age,
        stale_while_revalidate=swr,
        stale_if_error=sie,
        revalidate=revalidate,
        no_stale=no_stale,
        shared_auth=shareable_with_credentials(headers),
    )
