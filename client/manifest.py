"""The cache manifest, built from Tina4's live route registry at the moment it is asked for.

Every form of cache annotation that the caching chapter documents means "cache this route", even
the forms that Tina4 3.13 itself leaves inert:

- ``@get(path, middleware=["ResponseCache:N"])``: Tina4 turns the string into ``ResponseCache(N)``.
- ``Router.get(path, handler, middleware=["ResponseCache:N"])`` and ``@middleware("ResponseCache:N")``:
  the string stays a string and Tina4 ignores it.
- ``@middleware(ResponseCache)``: the class; its TTL comes from ``TINA4_CACHE_TTL`` (default 60).
- ``@cached(max_age=N)``: only stamps ``handler._cached`` / ``handler._cache_max_age``, possibly
  after the route was registered, so the handler is read here, not a copy taken at registration.
- ``Router.get(...).cache()`` (``route["cached"]``): TTL ``cache_max_age`` when given, else the default.
- A global ``ResponseCache`` (``Middleware.use``) caches every route and overrides route TTLs.

TTL precedence, as Tina4 applies it: ``@cached(max_age)`` > the ResponseCache TTL >
``TINA4_CACHE_TTL`` > 60, except that a ResponseCache whose own TTL is <= 0 disables caching (its
hooks return early); any TTL <= 0 means not cached.

Tina4 is imported inside :func:`build_manifest` only, so that importing the client stays cheap.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tina4_sidecar.config.rules import Rule, dump_manifest

log = logging.getLogger(__name__)

#: Set on a handler to keep its route out of the manifest (the manifest route itself).
MANIFEST_HANDLER_MARK = "_tina4_sidecar_manifest"

_TINA4_ROUTE_DEFAULT_MAX_AGE = 60  # Router.add stores this when no cache_max_age was given


@dataclass(frozen=True, slots=True)
class _CacheSpec:
    """What one ResponseCache annotation says: TTL, cacheable statuses, and which form it was."""

    ttl: int
    statuses: tuple[int, ...]
    source: str


def default_ttl(environ: Mapping[str, str] | None = None) -> int:
    """``TINA4_CACHE_TTL`` as Tina4 reads it (an empty value means 60)."""
    raw = (os.environ if environ is None else environ).get("TINA4_CACHE_TTL", "")
    if not raw:
        return 60
    try:
        return int(raw)
    except ValueError:
        log.warning("TINA4_CACHE_TTL=%r is not an integer; using 60", raw)
        return 60


def build_manifest() -> bytes:
    """The manifest JSON for the routes registered right now."""
    import tina4_python
    from tina4_python.cache import ResponseCache
    from tina4_python.core.middleware import Middleware
    from tina4_python.core.router import Router

    ttl = default_ttl()
    rules = rules_from_registry(Router.get_routes(), Middleware.get_global(), ResponseCache, ttl)
    return dump_manifest(
        rules, tina4_version=getattr(tina4_python, "__version__", None), default_ttl=max(ttl, 0)
    )


def rules_from_registry(
    routes: Iterable[Mapping[str, Any]],
    global_middleware: Sequence[object],
    response_cache: type,
    env_ttl: int,
) -> list[Rule]:
    """One rule per GET, HEAD and ANY route, in registration order, cached or not."""
    global_spec = _first_spec(global_middleware, response_cache, env_ttl, "global")
    rules: list[Rule] = []
    for route in routes:
        method = str(route.get("method", "")).upper()
        handler = route.get("handler")
        if method not in ("GET", "HEAD", "ANY") or getattr(handler, MANIFEST_HANDLER_MARK, False):
            continue
        rules.append(_rule_for(route, method, handler, global_spec, response_cache, env_ttl))
    return rules


def _rule_for(
    route: Mapping[str, Any],
    method: str,
    handler: object,
    global_spec: _CacheSpec | None,
    response_cache: type,
    env_ttl: int,
) -> Rule:
    path = str(route.get("path", ""))
    if method == "HEAD":
        # ResponseCache only ever stores GET; an explicit HEAD route is listed so that it
        # shadows the GET fallback exactly as in Tina4.
        return Rule(method, path, cache=False, ttl=0, source="none")
    spec = global_spec or _first_spec(route.get("middleware") or (), response_cache, env_ttl, None)
    max_age = _cached_max_age(handler)
    statuses: tuple[int, ...] = (200,)
    if spec is not None:
        statuses = spec.statuses
        if spec.ttl > 0 and max_age is not None:
            ttl, source = max_age, "cached-decorator"
        else:
            ttl, source = spec.ttl, spec.source
    elif max_age is not None:
        ttl, source = max_age, "cached-decorator"
    elif route.get("cached"):
        ttl, source = _route_cached_ttl(route, env_ttl), "route-cached"
    else:
        ttl, source = 0, "none"
    return Rule(method, path, cache=ttl > 0, ttl=ttl, statuses=statuses, source=source)


def _first_spec(
    middleware: Iterable[object], response_cache: type, env_ttl: int, source: str | None
) -> _CacheSpec | None:
    for item in middleware:
        spec = _spec_of(item, response_cache, env_ttl)
        if spec is not None:
            return _CacheSpec(spec.ttl, spec.statuses, source or spec.source)
    return None


def _spec_of(item: object, response_cache: type, env_ttl: int) -> _CacheSpec | None:
    if isinstance(item, str):
        return _spec_of_string(item, env_ttl)
    if isinstance(item, type) and issubclass(item, response_cache):
        if item is response_cache:
            return _CacheSpec(env_ttl, (200,), "middleware-class")
        # The dispatcher instantiates the class per request; a subclass may pick its own TTL.
        try:
            instance = item()
        except Exception as exc:
            log.warning("cannot instantiate %s to read its TTL (%s); using %s", item, exc, env_ttl)
            return _CacheSpec(env_ttl, (200,), "middleware-class")
        return _spec_of_instance(instance, "middleware-class")
    if isinstance(item, response_cache):
        # Tina4 builds exactly this instance from @get(..., middleware=["ResponseCache:N"]), so an
        # instance cannot be told apart from the string form it usually comes from.
        return _spec_of_instance(item, "middleware-string")
    return None


def _spec_of_string(item: str, env_ttl: int) -> _CacheSpec | None:
    head, _, tail = item.partition(":")
    if head != "ResponseCache":
        return None
    if not tail:
        return _CacheSpec(env_ttl, (200,), "middleware-string")
    try:
        ttl = int(tail.split(":", 1)[0])
    except ValueError:
        log.warning("middleware %r has no integer TTL; the route is not cached", item)
        return _CacheSpec(0, (200,), "middleware-string")
    return _CacheSpec(ttl, (200,), "middleware-string")


def _spec_of_instance(instance: object, source: str) -> _CacheSpec:
    ttl = getattr(instance, "ttl", None)
    if not isinstance(ttl, int) or isinstance(ttl, bool):
        log.warning("%r has a non-integer TTL %r; the route is not cached", instance, ttl)
        ttl = 0
    codes = getattr(instance, "status_codes", None) or (200,)
    statuses = tuple(sorted({c for c in codes if isinstance(c, int) and 100 <= c <= 599})) or (200,)
    return _CacheSpec(ttl, statuses, source)


def _cached_max_age(handler: object) -> int | None:
    """The TTL of ``@cached(max_age=N)``, which Tina4 reads off the handler at request time."""
    max_age = getattr(handler, "_cache_max_age", None)
    if max_age is None:
        return None
    try:
        return int(max_age)
    except (TypeError, ValueError):
        log.warning("%r has a non-integer @cached max_age %r; ignored", handler, max_age)
        return None


def _route_cached_ttl(route: Mapping[str, Any], env_ttl: int) -> int:
    max_age = route.get("cache_max_age")
    # Router.add stores 60 when no cache_max_age was passed, which cannot be told apart from
    # an explicit 60: both mean "the default TTL" here, so TINA4_CACHE_TTL applies.
    if isinstance(max_age, int) and not isinstance(max_age, bool) and max_age != _TINA4_ROUTE_DEFAULT_MAX_AGE:
        return max_age
    return env_ttl
