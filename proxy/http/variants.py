"""Several stored variants per URL, selected by the request headers the response ``Vary``-ed on.

The URL's primary key holds either the entry itself (a response without Vary) or a small
*vary index* naming the headers; each variant is stored under the primary key plus the
request's normalised values of those headers. Accept-Encoding is normalised to the one coding
the client would best take (br, gzip, deflate or identity) and that normalised value is what
the app is asked with, so browsers' many spellings share one variant and a stored encoding is
always one the client accepts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

INDEX_MAGIC = b"T4SV"
_CODINGS = ("br", "gzip", "deflate")


def normalize_accept_encoding(value: str | None) -> str:
    accepted = set()
    for item in (value or "").split(","):
        coding, _, params = item.strip().lower().partition(";")
        if "q=0" in params.replace(" ", "") and not params.replace(" ", "").startswith("q=0."):
            continue  # q=0 means "not acceptable"
        accepted.add(coding.strip())
    return next((coding for coding in _CODINGS if coding in accepted), "identity")


def normalized(name: str, value: str | None) -> str | None:
    if name == "accept-encoding":
        return normalize_accept_encoding(value)
    if value is None:
        return None
    return " ".join(value.split())


def request_values(names: Iterable[str], headers: Mapping[str, str]) -> tuple[tuple[str, str | None], ...]:
    """The request's normalised values of the (lower-case) header ``names``."""
    return tuple((name, normalized(name, headers.get(name))) for name in names)


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
