"""The preset dictionary the entry format's metadata is deflated with (``entry.py``, format 2).

An entry's metadata is mostly header names and values that every response of an app repeats
(Tina4 sends the same security headers on every answer) and invalidation token names. Deflate
with a preset dictionary holding such strings stores each repeat as a back-reference of two or
three bytes: a Tina4 answer's ~590 bytes of metadata take about 100, request id, CSP nonce and
URL included, for ~5 us per fill and ~1 us per decode (measured on the bench's header set).

The dictionary is part of the stored format: entries written with one dictionary cannot be read
with another. Changing ``WORDS`` or ``TINA4_ANSWER`` means a new ``entry.VERSION`` (a test pins
its digest).
Deflate reaches back 32 KiB; the strings most likely to repeat go last (the nearest distances
are the cheapest to encode).
"""

from __future__ import annotations

import msgpack

# fmt: off
WORDS: tuple[str, ...] = (
    # Names and values seen on many apps' responses.
    "Cache-Control", "no-cache", "no-store", "private", "public", "max-age=", "s-maxage=",
    "must-revalidate", "stale-while-revalidate=", "stale-if-error=", "Expires", "Pragma",
    "Last-Modified", "Accept-Ranges", "bytes", "Content-Encoding", "gzip", "br", "Vary",
    "Accept-Encoding", "Origin", "Content-Language", "Content-Disposition", "inline", "attachment",
    "Link", "Access-Control-Allow-Origin", "*", "Strict-Transport-Security",
    "max-age=31536000; includeSubDomains", "Server", "nginx", "uvicorn", "hypercorn",
    "Content-Type", "text/html; charset=utf-8", "text/plain; charset=utf-8", "text/css",
    "application/javascript", "image/png", "image/svg+xml", "application/octet-stream",
    "application/json", "application/json; charset=utf-8",
    # An HTTP-date: "Fri, 04 Dec 2026 20:00:00 GMT".
    "Mon, ", "Tue, ", "Wed, ", "Thu, ", "Fri, ", "Sat, ", "Sun, ", " Jan ", " Feb ", " Mar ",
    " Apr ", " May ", " Jun ", " Jul ", " Aug ", " Sep ", " Oct ", " Nov ", " Dec ", " 2026 ",
    " 2027 ", ":00 GMT",
    # Tina4's own headers, on every answer of a Tina4 app.
    "X-Request-ID", "X-Frame-Options", "SAMEORIGIN", "X-Content-Type-Options", "nosniff",
    "Content-Security-Policy",
    "default-src 'self'; style-src 'self' 'nonce-; script-src 'self' 'nonce-",
    "Referrer-Policy", "strict-origin-when-cross-origin", "X-XSS-Protection", "0",
    "Permissions-Policy", "camera=(), microphone=(), geolocation=()",
    "Cross-Origin-Opener-Policy", "same-origin-allow-popups", "Content-Length", "Date", "ETag",
    # Invalidation tokens every entry records (store/response_key.py).
    "~tok:all", "~tok:host:", "~tok:prefix:", "~tok:route:", "~tok:tag:", "~tok:url:",
)
# fmt: on

TINA4_ANSWER: tuple[tuple[str, str], ...] = (
    ("X-Request-ID", "00000000"),
    ("X-Frame-Options", "SAMEORIGIN"),
    ("X-Content-Type-Options", "nosniff"),
    (
        "Content-Security-Policy",
        "default-src 'self'; style-src 'self' 'nonce-AAAAAAAAAAAAAAAAAAAAAA=='; "
        "script-src 'self' 'nonce-AAAAAAAAAAAAAAAAAAAAAA=='",
    ),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
    ("X-XSS-Protection", "0"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
    ("Cross-Origin-Opener-Policy", "same-origin-allow-popups"),
    ("Content-Type", "application/json; charset=utf-8"),
    ("Content-Length", "1024"),
    ("Date", "Fri, 04 Dec 2026 20:00:00 GMT"),
)
"""A Tina4 answer's headers in the order Tina4 sends them, with placeholders of the usual length
for the per-answer request id and CSP nonce (a MessagePack string's length is in its first byte)."""

_SAMPLE_META = [
    [item for pair in TINA4_ANSWER for item in pair],
    [],
    ["~tok:all", None, "~tok:host:", None, "~tok:url:/", None],
    *(0, 0, 0.0, 0, False, False, False),
]

DICTIONARY: bytes = msgpack.packb(list(WORDS)) + msgpack.packb(_SAMPLE_META)
"""The words as MessagePack strings, then a Tina4 answer's metadata laid out as ``Entry.encode``
writes it: the bytes entries' metadata repeats."""
