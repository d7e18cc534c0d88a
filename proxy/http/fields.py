"""Reading HTTP fields the way RFC 9110 section 5.3 defines them: every line of a field, as one list.

A response may carry a field on several lines (Tina4's ``response.header()`` appends, so a site
middleware's ``Cache-Control: public, max-age=60`` and a handler's ``Cache-Control: private``
both reach the wire). Recipients must treat the lines as one comma-separated list, so every
decision reads fields through this module, never through ``headers.get(name)``, which sees the
first line only. Commas inside quoted strings do not separate items (``extension="a, b"``).

Headers come as aiohttp's multidicts (anything with ``getall``) or as ``(name, value)`` pairs
(a stored entry's headers).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import http_sf
from multidict import MultiMapping

MAX_DELTA_SECONDS = 2**31
"""RFC 9111 section 1.2.2: a larger delta-seconds is sent, and read, as this."""

Headers = MultiMapping[str] | Iterable[tuple[str, str]]
"""A case-insensitive multidict (aiohttp's, the fast path's), or an entry's ``(name, value)`` pairs."""


def lines(headers: Headers, name: str) -> list[str]:
    """Every value of the field ``name``, in order (case-insensitive name)."""
    if isinstance(headers, MultiMapping):
        return list(headers.getall(name, ()))
    lower = name.lower()
    return [value for key, value in headers if key.lower() == lower]


def has(headers: Headers, name: str) -> bool:
    return bool(lines(headers, name))


def split_list(value: str) -> list[str]:
    """The items of one comma-separated field value; commas in quoted strings stay in their item."""
    items: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            items.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    items.append("".join(current).strip())
    return [item for item in items if item]


def items(headers: Headers, name: str) -> list[str]:
    """Every list item of the field ``name`` over all its lines (RFC 9110 section 5.6.1)."""
    return [item for value in lines(headers, name) for item in split_list(value)]


def tokens(headers: Headers, name: str) -> list[str]:
    """The items of a list of tokens (``Vary``, ``Connection``), lower-cased."""
    return [item.lower() for item in items(headers, name)]


@dataclass(frozen=True, slots=True)
class Directives:
    """Cache-Control (or Surrogate-Control) directives: name -> argument (None when it has none).

    The first occurrence of a name gives its argument; ``repeated`` names the directives that
    occurred more than once with different arguments (RFC 9111 section 4.2.1: the first may be
    used, or the response taken as stale)."""

    arguments: dict[str, str | None] = field(default_factory=dict)
    repeated: frozenset[str] = frozenset()

    def __contains__(self, name: str) -> bool:
        return name in self.arguments

    def argument(self, name: str) -> str | None:
        return self.arguments.get(name)

    def seconds(self, name: str) -> int | None:
        """A delta-seconds argument (``max-age=60``, also quoted); None when absent or invalid."""
        if name not in self.arguments:
            return None
        return delta_seconds(self.arguments[name])

    def invalid(self, name: str) -> bool:
        """Present, but without a valid delta-seconds argument (``max-age=abc``, ``max-age``)."""
        return name in self.arguments and delta_seconds(self.arguments[name]) is None

    def field_names(self, name: str) -> frozenset[str]:
        """The header names a qualified directive lists (``no-cache="Set-Cookie"``), lower-cased."""
        argument = self.arguments.get(name)
        if argument is None:
            return frozenset()
        return frozenset(part.strip().lower() for part in argument.split(",") if part.strip())


def directives(headers: Headers, name: str = "Cache-Control") -> Directives:
    arguments: dict[str, str | None] = {}
    repeated: set[str] = set()
    for item in items(headers, name):
        key, sep, argument = item.partition("=")
        key = key.strip().lower()
        if not key:
            continue
        value = unquote(argument.strip()) if sep else None
        if key in arguments:
            if arguments[key] != value:
                repeated.add(key)
            continue
        arguments[key] = value
    return Directives(arguments, frozenset(repeated))


def cache_control(headers: Headers) -> Directives:
    return directives(headers, "Cache-Control")


def response_cache_control(headers: Headers) -> Directives:
    """The directives a response gives this cache: its ``CDN-Cache-Control`` when it has a valid one
    (RFC 9213: a field targeted at caches like us, which then replaces Cache-Control and Expires),
    else its ``Cache-Control``."""
    targeted = cdn_cache_control(headers)
    return targeted if targeted is not None else cache_control(headers)


_NUMERIC = frozenset({"max-age", "s-maxage", "stale-while-revalidate", "stale-if-error"})


def cdn_cache_control(headers: Headers) -> Directives | None:
    """``CDN-Cache-Control`` as directives; None when absent or not a valid Structured Field
    Dictionary (RFC 9651), which RFC 9213 says to ignore. A directive whose value has the wrong
    type (``max-age="60"``: a string, not an integer) is left out."""
    values = lines(headers, "CDN-Cache-Control")
    if not values:
        return None
    try:
        parsed = http_sf.parse(", ".join(values).encode("latin-1", "replace"), tltype="dictionary")
    except (http_sf.StructuredFieldError, ValueError):
        return None
    if not isinstance(parsed, dict):
        return None
    arguments: dict[str, str | None] = {}
    for name, member in parsed.items():
        if not isinstance(member, tuple):
            continue  # an inner list: no directive of ours takes one
        value = member[0]
        if name in _NUMERIC:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                continue
            arguments[name] = str(min(value, MAX_DELTA_SECONDS))
        elif value is True:
            arguments[name] = None
        elif isinstance(value, str):
            arguments[name] = value
    return Directives(arguments)


def surrogate_control(headers: Headers) -> Directives:
    return directives(headers, "Surrogate-Control")


def pragma_no_cache(headers: Headers) -> bool:
    """``Pragma: no-cache`` on any line (RFC 9111 section 5.4)."""
    return "no-cache" in tokens(headers, "Pragma")


def vary(headers: Headers) -> list[str]:
    """The header names of every ``Vary`` line, lower-cased, in order, each once."""
    return list(dict.fromkeys(tokens(headers, "Vary")))


def unquote(value: str) -> str:
    """A quoted-string's content (backslash escapes resolved); any other value as it is."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        out: list[str] = []
        escaped = False
        for char in value[1:-1]:
            if escaped or char != "\\":
                out.append(char)
                escaped = False
            else:
                escaped = True
        return "".join(out)
    return value


def delta_seconds(argument: str | None) -> int | None:
    """RFC 9111 section 1.2.2: one or more digits, capped at 2**31; None for anything else."""
    if argument is None or not argument.isascii() or not argument.isdigit():
        return None
    return min(int(argument), MAX_DELTA_SECONDS)
