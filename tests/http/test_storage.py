"""The storage decision in both modes: what is stored, for how long, and how it may be reused."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from tina4_sidecar.config.rules import Rule
from tina4_sidecar.proxy.http.storage import Exchange, Storage, decide

NOW = 1_800_000_000.0
RULE = Rule(method="GET", path="/p", cache=True, ttl=300, source="test")
Pairs = tuple[tuple[str, str], ...]


def exchange(
    *headers: tuple[str, str], status: int = 200, request: Pairs = (), took: float = 0.0
) -> Exchange:
    """A response with a body framed by Content-Length (unless ``headers`` frame it otherwise)."""
    framed = any(name.lower() in ("content-length", "transfer-encoding") for name, _ in headers)
    return Exchange(
        "GET", request, status, (*headers, *(() if framed else (("Content-Length", "5"),))), NOW - took, NOW
    )


def default(ex: Exchange, rule: Rule | None = RULE) -> Storage | str:
    return decide(ex, rule, honor=False, default_swr=0, default_sie=300)


def standards(ex: Exchange, rule: Rule | None = None) -> Storage | str:
    return decide(ex, rule, honor=True, default_swr=0, default_sie=300)


def date(offset: float = 0.0) -> str:
    return formatdate(NOW + offset, usegmt=True)


# -- default mode: the rule decides, the response can only refuse ------------------------------------


def test_default_mode_stores_for_the_rule_ttl_whatever_the_response_says() -> None:
    stored = default(exchange(("Cache-Control", "max-age=5")))
    assert stored == Storage(300, rule_ttl=True, stale_while_revalidate=0, stale_if_error=300)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ((("Cache-Control", "public, max-age=60"), ("Cache-Control", "private")), "cache-control"),
        ((("Cache-Control", "max-age=60"), ("Cache-Control", "no-store")), "cache-control"),
        ((("Cache-Control", "max-age=60"), ("Cache-Control", "no-cache")), "cache-control"),
        ((("Cache-Control", 'private="X-User"'),), "cache-control"),
        ((("Pragma", "no-cache"),), "cache-control"),
        ((("Vary", "Accept-Language"), ("Vary", "*")), "vary-star"),
        ((("Surrogate-Control", "max-age=60"), ("Surrogate-Control", "no-store")), "surrogate-control"),
        ((("Set-Cookie", "a=b"),), "set-cookie"),
    ],
)
def test_default_mode_refuses_what_any_line_forbids(headers: Pairs, reason: str) -> None:
    assert default(exchange(*headers)) == reason


def test_default_mode_needs_a_rule_and_a_listed_status() -> None:
    assert default(exchange(("Cache-Control", "max-age=60")), rule=None) == "no-rule"
    assert default(exchange(status=404)) == "status"


def test_response_stale_windows_win_over_the_rule_and_the_settings() -> None:
    stored = default(exchange(("Cache-Control", "max-age=5"), ("Cache-Control", "stale-while-revalidate=30")))
    assert isinstance(stored, Storage)
    assert (stored.stale_while_revalidate, stored.stale_if_error) == (30, 300)


# -- standards mode -------------------------------------------------------------------------------------


def test_standards_mode_caches_by_the_responses_lifetime() -> None:
    stored = standards(exchange(("Cache-Control", "max-age=60")))
    assert isinstance(stored, Storage)
    assert (stored.ttl, stored.rule_ttl, stored.initial_age, stored.no_stale) == (60, False, 0, False)


def test_s_maxage_wins_forbids_stale_and_lets_users_share() -> None:
    stored = standards(exchange(("Cache-Control", "max-age=60, s-maxage=10")))
    assert isinstance(stored, Storage)
    assert (stored.ttl, stored.no_stale, stored.shared_auth) == (10, True, True)
    assert (stored.stale_while_revalidate, stored.stale_if_error) == (0, 0)


def test_surrogate_control_max_age_wins_over_cache_control() -> None:
    stored = standards(exchange(("Cache-Control", "max-age=600"), ("Surrogate-Control", "max-age=20")))
    assert isinstance(stored, Storage)
    assert stored.ttl == 20


def test_age_and_the_time_the_request_took_count() -> None:
    stored = standards(exchange(("Cache-Control", "max-age=60"), ("Age", "50"), took=3))
    assert isinstance(stored, Storage)
    assert (stored.ttl, stored.initial_age) == (7, 53)
    late = standards(exchange(("Cache-Control", "max-age=60"), ("Date", date(-40))))
    assert isinstance(late, Storage)
    assert (late.ttl, late.initial_age) == (20, 40)


def test_expires_minus_date_and_invalid_expires_is_stale() -> None:
    stored = standards(exchange(("Date", date()), ("Expires", date(120))))
    assert isinstance(stored, Storage)
    assert stored.ttl == 120
    invalid = standards(exchange(("Expires", "0"), ("ETag", '"v1"')))
    assert isinstance(invalid, Storage)
    assert invalid.ttl == 0  # kept only to revalidate
    assert standards(exchange(("Expires", "0"))) == "stale-on-arrival"


def test_a_far_future_expires_is_capped_like_any_delta_seconds() -> None:
    stored = standards(exchange(("Date", date()), ("Expires", "Sun, 21 Nov 2286 04:46:39 GMT")))
    assert isinstance(stored, Storage)
    assert stored.ttl == 2**31


def test_duplicate_freshness_makes_it_stale() -> None:
    stored = standards(
        exchange(("Cache-Control", "max-age=1800"), ("Cache-Control", "max-age=1"), ("ETag", "x"))
    )
    assert isinstance(stored, Storage)
    assert stored.ttl == 0


def test_heuristic_freshness_is_a_tenth_of_the_age_capped_at_a_day() -> None:
    ten_hours = standards(exchange(("Date", date()), ("Last-Modified", date(-36000))))
    assert isinstance(ten_hours, Storage)
    assert ten_hours.ttl == 3600
    long_ago = standards(exchange(("Date", date()), ("Last-Modified", date(-100 * 86400))))
    assert isinstance(long_ago, Storage)
    assert long_ago.ttl == 86400


def test_statuses_without_heuristics_need_explicit_freshness() -> None:
    assert standards(exchange(status=500)) == "no-freshness"
    explicit = standards(exchange(("Cache-Control", "max-age=10"), status=500))
    assert isinstance(explicit, Storage)
    assert explicit.ttl == 10
    unknown = standards(exchange(("Cache-Control", "max-age=10"), status=299))  # any final status
    assert isinstance(unknown, Storage)
    assert standards(exchange(("Cache-Control", "max-age=10, must-understand"), status=299)) == "status"
    for never in (101, 206, 304):
        assert standards(exchange(("Cache-Control", "max-age=10"), status=never)) == "status"


def test_cdn_cache_control_replaces_cache_control_and_expires() -> None:
    fresh = standards(exchange(("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=600")))
    assert isinstance(fresh, Storage)
    assert fresh.ttl == 600
    assert (
        standards(exchange(("Cache-Control", "max-age=600"), ("CDN-Cache-Control", "private")))
        == "cache-control"
    )
    zero = standards(exchange(("CDN-Cache-Control", "max-age=0"), ("Expires", date(600)), ("ETag", "x")))
    assert isinstance(zero, Storage)
    assert zero.ttl == 0
    invalid = standards(exchange(("CDN-Cache-Control", "max-age=600, &&&"), ("Cache-Control", "no-store")))
    assert invalid == "cache-control"  # not a Structured Field: ignored, so Cache-Control decides
    wrong_type = standards(exchange(("CDN-Cache-Control", 'max-age="600"'), ("Cache-Control", "max-age=5")))
    assert wrong_type == "stale-on-arrival"  # the field stands (Cache-Control's max-age is not read), its
    # max-age of the wrong type is left out: a 200 with no freshness and no validator


def test_no_cache_is_stored_to_be_revalidated() -> None:
    stored = standards(exchange(("Cache-Control", "no-cache, max-age=60"), ("ETag", '"a"')))
    assert isinstance(stored, Storage)
    assert stored.revalidate


@pytest.mark.parametrize("directive", ["must-revalidate", "proxy-revalidate"])
def test_revalidate_directives_forbid_stale(directive: str) -> None:
    stored = standards(exchange(("Cache-Control", f"max-age=60, {directive}")))
    assert isinstance(stored, Storage)
    assert stored.no_stale
    assert stored.stale_if_error == 0


def test_credentials_are_shared_only_when_the_response_says_so() -> None:
    auth = (("Authorization", "Bearer a"),)
    assert standards(exchange(("Cache-Control", "max-age=60"), request=auth)) == "authorization"
    cookie = (("Cookie", "s=1"),)
    assert (
        standards(exchange(("Cache-Control", "max-age=60, must-revalidate"), request=cookie))
        == "authorization"
    )
    public = standards(exchange(("Cache-Control", "public, max-age=60"), request=auth))
    assert isinstance(public, Storage)
    assert public.shared_auth


def test_request_no_store_and_response_private_are_never_stored() -> None:
    no_store = (("Cache-Control", "no-store"),)
    assert standards(exchange(("Cache-Control", "max-age=60"), request=no_store)) == "request-no-store"
    assert (
        standards(exchange(("Cache-Control", "max-age=60"), ("Cache-Control", "private"))) == "cache-control"
    )


def test_a_rule_keeps_its_ttl_unless_the_response_is_stricter() -> None:
    shorter = standards(exchange(("Cache-Control", "max-age=60")), rule=RULE)
    assert isinstance(shorter, Storage)
    assert (shorter.ttl, shorter.rule_ttl) == (60, False)
    longer = standards(exchange(("Cache-Control", "max-age=6000")), rule=RULE)
    assert isinstance(longer, Storage)
    assert (longer.ttl, longer.rule_ttl) == (300, True)
    silent = standards(exchange(), rule=RULE)
    assert isinstance(silent, Storage)
    assert silent.ttl == 300
    assert standards(exchange(("Cache-Control", "no-store")), rule=RULE) == "cache-control"
