"""HTTP-dates: the three forms RFC 9110 section 5.6.7 allows, case-insensitively, and nothing else."""

from __future__ import annotations

import pytest

from tina4_sidecar.proxy.http.dates import parse_http_date

AUG_18_2050 = 2544400878.0
NOW = 1_800_000_000.0  # 2027


@pytest.mark.parametrize(
    "value",
    [
        "Thu, 18 Aug 2050 02:01:18 GMT",
        "THU, 18 AUG 2050 02:01:18 gMT",
        "Thursday, 18-Aug-50 02:01:18 GMT",
        " Thu, 18 Aug 2050 02:01:18 GMT ",
    ],
)
def test_valid_forms(value: str) -> None:
    assert parse_http_date(value, NOW) == AUG_18_2050


def test_asctime_and_two_digit_years() -> None:
    assert parse_http_date("Thu Aug 18 02:01:18 2050") == AUG_18_2050
    assert parse_http_date("Sun Nov  6 08:49:37 1994") == 784111777.0
    assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT", NOW) == 784111777.0  # > 50 years ahead: 1994


@pytest.mark.parametrize(
    "value",
    [
        "Thu, 18 Aug 2050 02:01:18 UTC",
        "Thu, 18 Aug 2050 02:01:18 AEST",
        "Thu, 18 Aug 50 02:01:18 GMT",
        "Thu 18 Aug 2050 02:01:18 GMT",
        "Thu, 18  Aug  2050 02:01:18 GMT",
        "Thu, 18-Aug-2050 02:01:18 GMT",
        "Thu, 18 Aug 2050 02.01.18 GMT",
        "Thu, 18 Aug 2050 2:01:18 GMT",
        "Thu, 32 Aug 2050 02:01:18 GMT",
        "0",
        "",
        None,
    ],
)
def test_everything_else_is_invalid(value: str | None) -> None:
    assert parse_http_date(value) is None
