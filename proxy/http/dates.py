"""HTTP-dates (RFC 9110 section 5.6.7): the three formats a recipient must accept, and nothing else.

``Sun, 06 Nov 1994 08:49:37 GMT`` (IMF-fixdate), the obsolete ``Sunday, 06-Nov-94 08:49:37 GMT``
(RFC 850) and ``Sun Nov  6 08:49:37 1994`` (asctime). Names are read case-insensitively, as
recipients do. Anything else (another zone, a two-digit year in IMF-fixdate, a missing comma,
doubled spaces, a one-digit hour) is invalid: for ``Expires`` that means "already expired"
(RFC 9111 section 5.3), which the standard library's lenient ``parsedate`` would not say. The
grammar is three fixed patterns, so it is written out here rather than pulled in.
"""

from __future__ import annotations

import calendar
import re
import time

_DAY = r"(?:mon|tue|wed|thu|fri|sat|sun)"
_LONG_DAY = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH = "(?P<month>" + "|".join(_MONTHS) + ")"
_TIME = r"(?P<hour>\d\d):(?P<minute>\d\d):(?P<second>\d\d)"

_IMF_FIXDATE = re.compile(rf"{_DAY}, (?P<day>\d\d) {_MONTH} (?P<year>\d{{4}}) {_TIME} gmt", re.I)
_RFC_850 = re.compile(rf"{_LONG_DAY}, (?P<day>\d\d)-{_MONTH}-(?P<year>\d\d) {_TIME} gmt", re.I)
_ASCTIME = re.compile(rf"{_DAY} {_MONTH} (?P<day>[ \d]\d) {_TIME} (?P<year>\d{{4}})", re.I)


def parse_http_date(value: str | None, now: float | None = None) -> float | None:
    """The timestamp of an HTTP-date; None when ``value`` is absent or not one of the three forms."""
    if value is None:
        return None
    text = value.strip()
    for pattern in (_IMF_FIXDATE, _RFC_850, _ASCTIME):
        match = pattern.fullmatch(text)
        if match is not None:
            return _timestamp(match, pattern is _RFC_850, now)
    return None


def _timestamp(match: re.Match[str], two_digit_year: bool, now: float | None) -> float | None:
    year = int(match.group("year"))
    if two_digit_year:
        # RFC 9110: a two-digit year more than 50 years in the future is in the past century.
        this_year = time.gmtime(time.time() if now is None else now).tm_year
        year += this_year - this_year % 100
        if year > this_year + 50:
            year -= 100
    fields = (
        year,
        _MONTHS.index(match.group("month").lower()) + 1,
        int(match.group("day")),
        int(match.group("hour")),
        int(match.group("minute")),
        int(match.group("second")),
    )
    _, day, hour, minute, second = fields[1:]
    if not (1 <= day <= 31 and hour <= 23 and minute <= 59 and second <= 60):
        return None
    try:
        return float(calendar.timegm((*fields, 0, 0, 0)))
    except (OverflowError, ValueError):
        return None
