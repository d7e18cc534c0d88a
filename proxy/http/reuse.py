"""Whether a stored entry may answer a request now (RFC 9111 section 4, and 5.2.1 in standards mode).

The default mode serves an entry while it is fresh, and within its stale-while-revalidate
window; clients' own ``Cache-Control`` is ignored there (as nginx does), so no client can make
every request reach the app. Standards mode honours the request directives too: ``no-cache``
(and ``Pragma: no-cache`` without Cache-Control) and ``max-age`` ask for a validated answer,
``min-fresh`` for more freshness, ``max-stale`` accepts a stale one, ``only-if-cached`` wants
no fetch at all (504 without an entry), and ``no-store`` keeps the answer out of the cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from tina4_sidecar.proxy.http import fields
from tina4_sidecar.proxy.http.entry import Entry
from tina4_sidecar.proxy.http.fields import MAX_DELTA_SECONDS, Headers


class Reuse(Enum):
    FRESH = "fresh"
    """Serve it: a HIT."""
    STALE = "stale"
    """Serve it as stale (the client's max-stale allows it): a HIT with a negative ttl."""
    STALE_WHILE_REVALIDATE = "stale-while-revalidate"
    """Serve it stale now and refresh it in the background."""
    VALIDATE = "validate"
    """Ask the app first (with the entry's validators); the entry may still serve an error."""


@dataclass(frozen=True, slots=True)
class RequestDirectives:
    no_store: bool = False
    no_cache: bool = False
    max_age: int | None = None
    max_stale: int | None = None
    """Seconds of staleness accepted; ``MAX_DELTA_SECONDS`` for a bare ``max-stale``."""
    min_fresh: int | None = None
    only_if_cached: bool = False

    @property
    def any(self) -> bool:
        return self != NONE


NONE = RequestDirectives()


def request_directives(headers: Headers) -> RequestDirectives:
    """The request's cache directives; ``NONE`` when it sends none (the common case)."""
    cache_control = fields.cache_control(headers)
    if not cache_control.arguments:
        return RequestDirectives(no_cache=True) if fields.pragma_no_cache(headers) else NONE
    max_stale = None
    if "max-stale" in cache_control:
        argument = cache_control.argument("max-stale")
        max_stale = MAX_DELTA_SECONDS if argument is None else fields.delta_seconds(argument)
    return RequestDirectives(
        no_store="no-store" in cache_control,
        no_cache="no-cache" in cache_control,
        max_age=_seconds_or_zero(cache_control, "max-age"),
        max_stale=max_stale,
        min_fresh=_seconds_or_zero(cache_control, "min-fresh"),
        only_if_cached="only-if-cached" in cache_control,
    )


def _seconds_or_zero(directives: fields.Directives, name: str) -> int | None:
    """An invalid ``max-age``/``min-fresh`` asks for the strictest answer rather than none."""
    if name not in directives:
        return None
    seconds = directives.seconds(name)
    return 0 if seconds is None else seconds


def reuse(entry: Entry, now: float, directives: RequestDirectives = NONE) -> Reuse:
    """How ``entry`` may answer a request with ``directives`` at ``now``."""
    if directives is NONE and not entry.revalidate and now < entry.stored_at + entry.ttl:
        return Reuse.FRESH  # the common case, on every HIT: nothing else to weigh
    if entry.revalidate or directives.no_cache:
        return Reuse.VALIDATE
    age = entry.age(now)
    remaining = entry.expires_at() - now
    if directives.max_age is not None and age > directives.max_age:
        return Reuse.VALIDATE
    if directives.min_fresh is not None and remaining < directives.min_fresh:
        return Reuse.VALIDATE
    if remaining > 0:
        return Reuse.FRESH
    if entry.no_stale:
        return Reuse.VALIDATE
    if directives.max_stale is not None and -remaining <= directives.max_stale:
        return Reuse.STALE
    if -remaining < entry.stale_while_revalidate:
        return Reuse.STALE_WHILE_REVALIDATE
    return Reuse.VALIDATE
