"""Properties of sharing, over random header repetitions, casings and whitespace.

The invariant: a response is shared only if every field line allows it, and a variant's key
reflects what the app sees. Checked against an independent model of the rules, once on the pure
decision (both modes, many examples) and once end to end through a real sidecar on both
transports (fewer examples: each one starts a sidecar).
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from tests.proxy.test_fast_forward import connection, raw_app_sidecar, read_response
from tests.proxy.test_fast_path import get
from tina4_sidecar.config.rules import Rule
from tina4_sidecar.proxy.http.storage import Exchange, Storage, decide
from tina4_sidecar.proxy.http.variants import request_values

RULE = Rule(method="GET", path="/hit/*", cache=True, ttl=60, source="test")
FORBIDDING = {
    "cache-control": ["private", "no-store", "no-cache", 'private="x-user"'],
    "pragma": ["no-cache"],
    "surrogate-control": ["no-store"],
    "vary": ["*"],
}
HARMLESS = {
    "cache-control": ["public", "max-age=60", "s-maxage=30", "must-revalidate", 'ext="private, no-store"'],
    "pragma": ["x-harmless"],
    "surrogate-control": ["max-age=60"],
    "vary": ["Accept-Language", "X-Thing"],
}


def spelled(name: str) -> st.SearchStrategy[str]:
    """``name`` in a random casing."""
    return st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda upper: "".join(c.upper() if u else c for c, u in zip(name, upper, strict=True))
    )


@st.composite
def field_lines(draw: st.DrawFn) -> list[tuple[str, str]]:
    """A few lines of the fields that decide sharing, each a random mix of items, spelled and
    spaced at random, split over one or more lines; sometimes a Set-Cookie."""
    lines: list[tuple[str, str]] = []
    for field, harmless in HARMLESS.items():
        items = draw(st.lists(st.sampled_from(harmless + FORBIDDING[field]), max_size=3))
        while items:
            take = draw(st.integers(1, len(items)))
            chunk, items = items[:take], items[take:]
            spaces = draw(st.sampled_from(["", " ", "  ", "\t"]))
            value = f",{spaces}".join(draw(spelled(item)) if '"' not in item else item for item in chunk)
            lines.append((draw(spelled(field.title())), spaces + value))
    if draw(st.booleans()) and draw(st.booleans()):
        lines.append((draw(spelled("Set-Cookie")), "session=someone"))
    return draw(st.permutations(lines))


def forbidden(lines: list[tuple[str, str]]) -> bool:
    """The model: any forbidding item in any line of its field, or any Set-Cookie."""
    for name, value in lines:
        field = name.lower()
        if field == "set-cookie":
            return True
        items = [item.strip().lower() for item in value.split(",") if item.strip()]
        if any(item in FORBIDDING.get(field, []) or item.startswith('private="') for item in items):
            return True
    return False


@settings(max_examples=400, deadline=None)
@given(field_lines(), st.booleans())
def test_no_mode_shares_what_a_line_forbids(lines: list[tuple[str, str]], honor: bool) -> None:
    headers = [*lines, ("Content-Length", "2")]
    decision = decide(Exchange("GET", (), 200, headers, 0.0, 0.0), RULE, honor, 0, 300)
    if forbidden(lines):
        assert not isinstance(decision, Storage) or (honor and decision.revalidate), (lines, decision)
        # standards mode stores no-cache/Pragma answers only to revalidate them before any reuse
        if isinstance(decision, Storage):
            assert not any(
                "private" in v.lower() or "no-store" in v.lower() for _, v in lines if '"' not in v
            )


@st.composite
def repeated_request_header(draw: st.DrawFn) -> list[str]:
    return draw(
        st.lists(st.sampled_from(["en", "fr", "<script>x</script>", " en ", "en-GB"]), min_size=1, max_size=3)
    )


@settings(max_examples=300, deadline=None)
@given(repeated_request_header(), repeated_request_header())
def test_one_variant_key_means_one_value_the_app_sees(first: list[str], second: list[str]) -> None:
    def key(values: list[str]) -> tuple[tuple[str, str | None], ...]:
        headers = CIMultiDictProxy(CIMultiDict([("Accept-Language", value) for value in values]))
        return request_values(["accept-language"], headers)

    if key(first) == key(second):
        assert first[-1].strip() == second[-1].strip()  # Tina4 reads the last line


def live_share(lines: list[tuple[str, str]], fast_path: bool) -> tuple[str, bytes, bytes]:
    """Two anonymous GETs of a fresh cached URL whose answer carries ``lines``: the second's
    X-Cache, and both bodies (each answer of the app is unique)."""
    answers = iter(range(10))

    async def script(path: str, number: int, writer: asyncio.StreamWriter) -> bool:
        body = f"answer {next(answers)} of {path}".encode()
        head = "".join(f"{name}: {value}\r\n" for name, value in lines)
        writer.write(
            b"HTTP/1.1 200 OK\r\n" + head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body
        )
        return True

    async def run() -> tuple[str, bytes, bytes]:
        with tempfile.TemporaryDirectory() as tmp:
            async with raw_app_sidecar(script, Path(tmp), fast_path=fast_path) as (_, listener):
                path = f"/hit/{uuid.uuid4().hex}"
                async with connection(listener) as (reader, writer):
                    writer.write(get(path))
                    _, _, first = await read_response(reader)
                    writer.write(get(path))
                    _, headers, second = await read_response(reader)
        return headers.get("x-cache", ""), first, second

    return asyncio.run(run())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field_lines(), st.booleans())
def test_a_live_sidecar_never_shares_what_a_line_forbids(
    lines: list[tuple[str, str]], fast_path: bool
) -> None:
    x_cache, first, second = live_share(lines, fast_path)
    if forbidden(lines):
        assert x_cache != "HIT", lines
        assert second != first, lines
    else:
        assert (x_cache, second) == ("HIT", first), lines  # and what is allowed is shared
