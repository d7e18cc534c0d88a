"""Whether a stored entry answers a request: freshness, stale windows, the client's directives."""

from __future__ import annotations

import pytest

from tina4_sidecar.proxy.http.entry import Entry
from tina4_sidecar.proxy.http.fields import MAX_DELTA_SECONDS
from tina4_sidecar.proxy.http.reuse import NONE, RequestDirectives, Reuse, request_directives, reuse

STORED = 1000.0


def entry(**fields: object) -> Entry:
    values: dict[str, object] = {"status": 200, "headers": (), "body": b"x", "stored_at": STORED, "ttl": 60}
    values.update(fields)
    return Entry(**values)  # type: ignore[arg-type]


def cc(value: str) -> RequestDirectives:
    return request_directives([("Cache-Control", value)])


def test_fresh_then_stale_while_revalidate_then_validate() -> None:
    e = entry(stale_while_revalidate=10)
    assert reuse(e, STORED + 59) is Reuse.FRESH
    assert reuse(e, STORED + 60) is Reuse.STALE_WHILE_REVALIDATE
    assert reuse(e, STORED + 70) is Reuse.VALIDATE


def test_no_cache_entries_are_always_validated() -> None:
    assert reuse(entry(revalidate=True), STORED + 1) is Reuse.VALIDATE


def test_no_stale_entries_are_never_served_stale() -> None:
    e = entry(no_stale=True, stale_while_revalidate=30)
    assert reuse(e, STORED + 61, cc("max-stale=100")) is Reuse.VALIDATE


def test_request_directives() -> None:
    e = entry(initial_age=20)  # arrived 20 s old: age is 20 + resident time
    assert reuse(e, STORED + 5, cc("max-age=30")) is Reuse.FRESH
    assert reuse(e, STORED + 15, cc("max-age=30")) is Reuse.VALIDATE
    assert reuse(e, STORED + 50, cc("min-fresh=20")) is Reuse.VALIDATE
    assert reuse(e, STORED + 30, cc("min-fresh=20")) is Reuse.FRESH
    assert reuse(e, STORED + 70, cc("max-stale=20")) is Reuse.STALE
    assert reuse(e, STORED + 90, cc("max-stale=20")) is Reuse.VALIDATE
    assert reuse(e, STORED + 9999, cc("max-stale")) is Reuse.STALE
    assert reuse(e, STORED + 1, cc("no-cache")) is Reuse.VALIDATE


def test_parsing_request_directives() -> None:
    assert request_directives([]) is NONE
    assert not NONE.any
    assert request_directives([("Pragma", "no-cache")]) == RequestDirectives(no_cache=True)
    assert request_directives([("Cache-Control", "max-age=5"), ("Pragma", "no-cache")]).no_cache is False
    assert cc("max-stale").max_stale == MAX_DELTA_SECONDS
    assert cc("max-age=abc").max_age == 0  # invalid: the strictest reading
    parsed = cc("no-store, only-if-cached, min-fresh=3")
    assert (parsed.no_store, parsed.only_if_cached, parsed.min_fresh) == (True, True, 3)
    assert parsed.any


@pytest.mark.parametrize("now", [STORED, STORED + 59.9])
def test_the_default_mode_ignores_nothing_it_does_not_get(now: float) -> None:
    assert reuse(entry(), now) is Reuse.FRESH  # without directives (the default mode passes NONE)
