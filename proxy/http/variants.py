"""Several stored variants per URL, selected by the request headers the response ``Vary``-ed on.

The URL's primary key holds either the entry itself (a response without Vary) or a small
*vary index* naming the headers; each variant is stored under the primary key plus the
request's normalised values of those headers. Accept-Encoding is normalised to the one coding
the client would best take (br, gzip, deflate or identity) and that normalised value is what
the app is asked with, so browsers' many spellings share one variant and a stored encoding is
always one the client accepts.

A varied header the request repeats is keyed on all its lines joined in order (RFC 9110 section
5.3), not on the first: Tina4 reads the last one, so ``Accept-Language: en`` followed by
``Accept-Language: <script>`` must never be stored as (or served from) the ``en`` variant.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from tina4_sidecar.proxy.http import fields
from tina4_sidecar.proxy.http.fields import Headers

INDEX_MAGIC = b"T4SV"
_CODINGS = ("br", "gzip", "deflate")


def normalize_accept_encoding(value: str | None) -> str:
    """The best coding of br, gzip, deflate that ``value`` accepts (q above 0), else identity."""
    accepted = set()
    for item in fields.split_list(value or ""):
        coding, *params = (part.strip().lower() for part in item.split(";"))
        if _quality(params) > 0:
            accepted.add(coding)
    return next((coding for coding in _CODINGS if coding in accepted), "identity")


def _quality(params: list[str]) -> float:
    """The ``q`` parameter (RFC 9110 section 12.4.2: 0 to 1, up to three decimals); 1 without one,
    0 when it is malformed (a coding the client did not clearly accept is not used)."""
    for param in params:
        name, _, value = param.partition("=")
        if name.strip() == "q":
            try:
                quality = float(value.strip())
            except ValueError:
                return 0.0
            return quality if 0.0 <= quality <= 1.0 else 0.0
    return 1.0


def normalized(name: str, value: str | None) -> str | None:
    if name == "accept-encoding":
        return normalize_accept_encoding(value)
    if value is None:
        return None
    return " ".join(value.split())


def request_values(names: Iterable[str], headers: Headers) -> tuple[tuple[str, str | None], ...]:
    """The request's normalised values of the (lower-case) header ``names``: all lines of each."""
    out = []
    for name in names:
        lines = fields.lines(headers, name)
        out.append((name, normalized(name, ", ".join(lines) if lines else None)))
    return tuple(out)


def variant_key(primary: str, values: tuple[tuple[str, str | None], ...]) -> str:
    if not values:
        return primary
    parts = "&".join(f"{name}={'' if value is None else value}" for name, value in values)
    return f"{primary}\n{parts}"


def encode_index(names: Iterable[str]) -> bytes:
    return INDEX_MAGIC + json.dumps(sorted(set(names))).encode()


def decode_index(raw: bytes) -> list[str] | None:
    """Header names of a vary index; None when ``raw`` is not an index."""
    if not raw.startswith(INDEX_MAGIC):
        return None
    try:
        names = json.loads(raw[len(INDEX_MAGIC) :])
    except ValueError:
        return None
    return [str(name) for name in names] if isinstance(names, list) else None
