"""Hostile and malformed input against a real sidecar process, and properties of keys and manifests.

Raw-socket requests reach the sidecar as written (so the HIT fast path and aiohttp both see
them): malformed request lines and headers, oversized heads and URLs, conflicting framing,
bad percent-encoding, long query strings, header-based cache-poisoning attempts and traversal
paths. Each gets a clear 4xx or is forwarded safely, the process stays alive (its health
endpoint answers after every case) and no cached entry is poisoned. Hypothesis checks
``QueryFilter.canonical`` / ``response_key`` and ``parse_manifest`` on random input.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import textwrap
import time
from collections.abc import Iterator
from itertools import permutations
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.servers.demo_app import start_tina4_script
from tests.servers.process import ServerProcess
from tests.servers.sidecar import start_sidecar, wait_until_cached
from tina4_sidecar.config.rules import ManifestError, RuleSet, parse_manifest
from tina4_sidecar.store.response_key import QueryFilter, response_key

pytestmark = pytest.mark.timeout(90)

type Answer = tuple[int | None, dict[str, str], bytes]
"""A raw answer: the status (None when none came), headers (lower-case names) and body."""


def raw(port: int, request: bytes, timeout: float = 10.0) -> tuple[int | None, dict[str, str], bytes]:
    """Send ``request`` as is on a new connection; the status (None if none came), headers, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        # The server may close early on a huge head; what it answered is still readable.
        with contextlib.suppress(OSError):
            sock.sendall(request)
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
            if _complete(data):
                break
    return _parse(data)


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False  # chunked or close-delimited: read until the server closes


def _parse(data: bytes) -> tuple[int | None, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if not lines[0].startswith(b"HTTP/"):
        return None, {}, data
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def get(port: int, target: str, extra: str = "") -> tuple[int | None, dict[str, str], bytes]:
    request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}Connection: close\r\n\r\n"
    return raw(port, request.encode("latin-1"))


def assert_alive(port: int) -> None:
    status, _, body = get(port, "/__sidecar/health")
    assert status == 200, body


def checked(port: int, name: str, extra: str = "") -> tuple[str, dict[str, Any]]:
    """GET /api/checked/<name> (HTTP/1.1 keep-alive, so a HIT may take the fast path)."""
    request = f"GET /api/checked/{name} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n"
    status, headers, body = raw(port, request.encode("latin-1"))
    assert status == 200, body
    assert headers["x-body-sha256"] == hashlib.sha256(body).hexdigest()
    payload = json.loads(body)
    assert payload["name"] == name
    return headers.get("x-cache", ""), payload


H = "Host: h\r\n"
MALFORMED: dict[str, bytes] = {
    "garbage request line": b"GARBAGE\r\n\r\n",
    "bad version": b"GET /api/products HTTP/9.9\r\n" + H.encode() + b"\r\n",
    "space in target": b"GET /api/pro ducts HTTP/1.1\r\n" + H.encode() + b"\r\n",
    "control char in target": b"GET /api/\x01products HTTP/1.1\r\n" + H.encode() + b"\r\n",
    "header without colon": b"GET /api/products HTTP/1.1\r\nHost: h\r\nNoColonHere\r\n\r\n",
    "space in header name": b"GET /api/products HTTP/1.1\r\nHost: h\r\nBad Name: x\r\n\r\n",
    "space before colon": b"GET /api/products HTTP/1.1\r\nHost : h\r\n\r\n",
    "NUL in header value": b"GET /api/products HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n",
    "bare CR in header": b"GET /api/products HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n",
    "obs-fold": b"GET /api/products HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n",
    "oversized header": b"GET /api/products HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
    "many headers": b"GET /api/products HTTP/1.1\r\nHost: h\r\n"
    + b"".join(b"X-H%d: v\r\n" % i for i in range(2000))
    + b"\r\n",
    "oversized URL": b"GET /api/products?" + b"q" * 20_000 + b" HTTP/1.1\r\nHost: h\r\n\r\n",
    "CL and TE": b"POST /api/echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two different CL": b"POST /api/echo HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
    b"Content-Length: 5\r\n\r\nabcde",
    "negative CL": b"POST /api/echo HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
    "non-numeric CL": b"POST /api/echo HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\n",
    "bad chunk size": b"POST /api/echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"zz\r\nabc\r\n0\r\n\r\n",
    "TE not chunked last": b"POST /api/echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_request_gets_4xx(sidecar: ServerProcess, name: str) -> None:
    status, _, body = raw(sidecar.port, MALFORMED[name])
    assert status is not None, f"no answer to {name}: {body[:200]!r}"
    assert 400 <= status < 500, (status, body[:300])
    assert_alive(sidecar.port)


FORWARDED: dict[str, str] = {
    "invalid percent-encoding": "/api/checked/%zz%",
    "truncated percent-encoding": "/api/checked/abc%4",
    "encoded NUL": "/api/checked/a%00b",
    "long query": "/api/checked/longq?" + "&".join(f"p{i}={'v' * 20}" for i in range(300)),
    "dot segments": "/api/../api/products",
    "encoded traversal": "/api/checked/..%2f..%2f..%2fetc%2fpasswd",
    "double slash": "//etc/passwd",
    "backslash traversal": "/api/checked/..\\..\\etc\\passwd",
}


def test_http09_request_line_is_answered_safely(sidecar: ServerProcess) -> None:
    """``GET /path`` without a version is HTTP/0.9 to llhttp: answered, never a 5xx."""
    status, _, body = raw(sidecar.port, b"GET /api/checked/nine\r\n\r\n")
    assert status is not None, body[:200]
    assert status < 500, body[:300]
    assert_alive(sidecar.port)


@pytest.mark.parametrize("name", list(FORWARDED))
def test_odd_target_is_forwarded_safely(sidecar: ServerProcess, name: str) -> None:
    status, _, body = get(sidecar.port, FORWARDED[name])
    assert status is not None, body[:200]
    assert status < 500 or (status == 502 and b"upstream" in body), (status, body[:300])
    assert b"root:" not in body
    assert_alive(sidecar.port)


POISON_HEADERS = [
    "X-Forwarded-Host: evil.example\r\n",
    "X-Forwarded-Proto: javascript\r\n",
    "X-Forwarded-Prefix: /evil\r\n",
    "X-Original-URL: /api/checked/evil\r\n",
    "X-Rewrite-URL: /api/checked/evil\r\n",
    "X-HTTP-Method-Override: POST\r\n",
    "X-Forwarded-For: 6.6.6.6\r\nForwarded: host=evil.example;proto=https\r\n",
    "Host: evil.example\r\n",
]


@pytest.mark.parametrize("index", range(len(POISON_HEADERS)))
def test_poisoning_headers_do_not_change_the_cached_body(sidecar: ServerProcess, index: int) -> None:
    port = sidecar.port
    name = f"poison{index}"
    # The attacker asks first (the MISS that stores), then again (a HIT, maybe the fast path).
    for _ in range(2):
        status, _, body = raw(
            port,
            (
                f"GET /api/checked/{name} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{POISON_HEADERS[index]}\r\n"
            ).encode(),
        )
        assert status is not None
        assert status < 500, body[:300]
        assert b"evil" not in body
    _, clean = checked(port, name)
    again_cache, again = checked(port, name)
    assert clean["cookie"] is None
    assert clean["authorization"] is None
    assert again["nonce"] == clean["nonce"]  # one entry, and it is the app's body for this URL
    assert again_cache == "HIT"
    assert_alive(port)


def test_clean_entry_survives_all_the_bad_input(sidecar: ServerProcess) -> None:
    """A URL cached first is still the same entry after every kind of bad request above."""
    port = sidecar.port
    checked(port, "survivor")
    _, before = checked(port, "survivor")
    for request in MALFORMED.values():
        raw(port, request.replace(b"/api/products", b"/api/checked/survivor"))
    for header in POISON_HEADERS:
        get(port, "/api/checked/survivor", header)
    cache, after = checked(port, "survivor")
    assert cache == "HIT"
    assert after == before
    assert_alive(port)


# -- Absolute-form request targets (RFC 9112 section 3.2.2) --------------------------------------

HOST_ECHO_APP = textwrap.dedent(
    """
    import secrets

    from tina4_python.core import run
    from tina4_python.core.router import get

    from tina4_sidecar.client import install


    @get("/api/host-echo", middleware=["ResponseCache:60"])
    async def host_echo(request, response):
        return response(
            {
                "host": request.headers.get("host"),
                "forwarded_host": request.headers.get("x-forwarded-host"),
                "nonce": secrets.token_hex(8),
            }
        )


    install()

    if __name__ == "__main__":
        run()
    """
)


@pytest.fixture(scope="module")
def host_echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A sidecar in front of a Tina4 app whose one cached route echoes the Host it was asked for."""
    workdir: Path = tmp_path_factory.mktemp("host-echo")
    script = workdir / "host_echo_app.py"
    script.write_text(HOST_ECHO_APP)
    app = start_tina4_script(script, workdir / "app")
    try:
        server = start_sidecar(app.port, workdir / "sidecar", wait_for_rules=False)
        try:
            wait_until_cached(server.port, "/api/host-echo")
            yield server
            assert "_handle_request" not in server.log_text()
        finally:
            server.stop()
    finally:
        app.stop()


def request_line(port: int, line: str, host: str, extra: str = "", body: bytes = b"") -> Answer:
    """``line`` with a Host header, on a keep-alive connection (so the fast path sees it first)."""
    return raw(port, f"{line}\r\nHost: {host}\r\n{extra}\r\n".encode("latin-1") + body)


def checked_as(port: int, target: str, host: str) -> tuple[str, dict[str, Any]]:
    """GET ``target`` (any form) of a checked route: its X-Cache and verified payload."""
    status, headers, body = request_line(port, f"GET {target} HTTP/1.1", host)
    assert status == 200, body[:300]
    assert headers["x-body-sha256"] == hashlib.sha256(body).hexdigest()
    return headers.get("x-cache", ""), json.loads(body)


def test_absolute_form_is_served_as_its_path_on_the_host_it_names(sidecar: ServerProcess) -> None:
    """The target's authority is the host (the Host header is ignored): one entry with origin-form."""
    port = sidecar.port
    own = f"127.0.0.1:{port}"
    first_cache, first = checked_as(port, "/api/checked/absolute?a=1", own)
    cache, payload = checked_as(port, f"http://{own}/api/checked/absolute?a=1", "ignored.example")
    assert (first_cache, cache) == ("MISS", "HIT")
    assert payload == first
    # Scheme and host are case-insensitive; a fragment is never part of the request.
    cache, payload = checked_as(port, f"HTTP://{own.upper()}/api/checked/absolute?a=1#frag", own)
    assert cache == "HIT"
    assert payload == first
    status, _, body = request_line(port, f"GET http://{own}/api/time HTTP/1.1", own)
    assert status == 200, body[:300]
    data = b"absolute-form body"
    status, _, body = request_line(
        port, f"POST http://{own}/api/echo HTTP/1.1", own, f"Content-Length: {len(data)}\r\n", data
    )
    assert status == 200, body[:300]
    assert json.loads(body)["sha256"] == hashlib.sha256(data).hexdigest()
    assert_alive(port)


def test_absolute_form_never_shares_another_hosts_entry(sidecar: ServerProcess) -> None:
    """Naming another host in the target, with our Host header, neither reads nor writes our entry."""
    port = sidecar.port
    own = f"127.0.0.1:{port}"
    # Ours cached first: the other host's request is a MISS of its own and leaves ours alone.
    _, ours = checked_as(port, "/api/checked/other-host", own)
    cache, theirs = checked_as(port, "http://other.example/api/checked/other-host", own)
    assert cache == "MISS"
    assert theirs["nonce"] != ours["nonce"]
    cache, again = checked_as(port, "/api/checked/other-host", own)
    assert (cache, again["nonce"]) == ("HIT", ours["nonce"])
    # Theirs cached first: our request does not get it.
    _, theirs = checked_as(port, "http://other.example/api/checked/other-host-first", own)
    cache, ours = checked_as(port, "/api/checked/other-host-first", own)
    assert cache == "MISS"
    assert ours["nonce"] != theirs["nonce"]
    # What was stored for the other host is served for that host, whichever form names it.
    cache, again = checked_as(port, "/api/checked/other-host-first", "other.example")
    assert (cache, again["nonce"]) == ("HIT", theirs["nonce"])


def test_the_app_sees_the_host_the_entry_is_stored_under(host_echo: ServerProcess) -> None:
    """The app is asked with Host and X-Forwarded-Host set to the target's authority, so a body that
    names a host is only ever cached (and served) under that host."""
    port = host_echo.port

    def echo(line: str, host: str) -> tuple[str, dict[str, Any]]:
        status, headers, body = request_line(port, line, host)
        assert status == 200, body[:300]
        return headers.get("x-cache", ""), json.loads(body)

    cache, shop = echo("GET http://shop.example:8080/api/host-echo HTTP/1.1", "evil.example")
    assert cache == "MISS"
    assert (shop["host"], shop["forwarded_host"]) == ("shop.example:8080", "shop.example:8080")
    cache, again = echo("GET /api/host-echo HTTP/1.1", "shop.example:8080")
    assert (cache, again) == ("HIT", shop)
    cache, evil = echo("GET /api/host-echo HTTP/1.1", "evil.example")
    assert cache == "MISS"
    assert (evil["host"], evil["forwarded_host"]) == ("evil.example", "evil.example")
    cache, again = echo("GET http://evil.example/api/host-echo HTTP/1.1", "shop.example:8080")
    assert (cache, again) == ("HIT", evil)


BAD_TARGETS: dict[str, str] = {
    "another scheme": "GET ftp://127.0.0.1/api/products HTTP/1.1",
    "a scheme without authority": "GET mailto:someone@example.com HTTP/1.1",
    "credentials in the authority": "GET http://user:secret@127.0.0.1/api/products HTTP/1.1",
    "CONNECT (authority-form)": "CONNECT 127.0.0.1:443 HTTP/1.1",
    "CONNECT with a path": "CONNECT /api/products HTTP/1.1",
    "asterisk-form GET": "GET * HTTP/1.1",
    "asterisk-form POST": "POST * HTTP/1.1",
}


@pytest.mark.parametrize("name", list(BAD_TARGETS))
def test_bad_request_target_gets_400(sidecar: ServerProcess, name: str) -> None:
    status, _, body = request_line(sidecar.port, BAD_TARGETS[name], "h", "Connection: close\r\n")
    # aiohttp refuses "GET *" itself; a 404 from the app means something forwarded it (the fast path
    # must hand a target that is not origin-form to aiohttp, as it does absolute-form).
    assert status == 400, (status, body[:300])
    assert_alive(sidecar.port)


def test_options_asterisk_is_answered_by_the_sidecar(sidecar: ServerProcess) -> None:
    status, headers, body = request_line(sidecar.port, "OPTIONS * HTTP/1.1", "h")
    assert status == 200, body[:300]
    assert headers.get("content-length") == "0"
    assert_alive(sidecar.port)


# -- Properties -----------------------------------------------------------------------------------

_NAME = st.text("abcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1, max_size=8)
_VALUE = st.text("abcdefghijklmnopqrstuvwxyzABC0123456789_-.~%+", max_size=8)
_FILTERS = st.sampled_from([QueryFilter(), QueryFilter(["utm_*"]), QueryFilter(["utm_*", "fbclid", "x?"])])


@st.composite
def _queries(draw: st.DrawFn) -> list[tuple[str, str]]:
    names = draw(st.lists(_NAME, unique=True, max_size=6))
    return [(name, draw(_VALUE)) for name in names]


def _join(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{name}={value}" for name, value in pairs)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60), _FILTERS)
def test_canonical_is_idempotent(query: str, query_filter: QueryFilter) -> None:
    once = query_filter.canonical(query)
    assert query_filter.canonical(once) == once


@settings(max_examples=150, deadline=None)
@given(_queries(), _FILTERS, st.randoms(use_true_random=False))
def test_parameter_order_never_matters(
    pairs: list[tuple[str, str]], query_filter: QueryFilter, rnd: Any
) -> None:
    shuffled = list(pairs)
    rnd.shuffle(shuffled)
    first = query_filter.canonical(_join(pairs))
    assert query_filter.canonical(_join(shuffled)) == first
    key = response_key("GET", "http", "h", "/p", first)
    assert response_key("HEAD", "http", "H", "/p", query_filter.canonical(_join(shuffled))) == key


@settings(max_examples=150, deadline=None)
@given(_queries(), st.data())
def test_different_values_never_collide(pairs: list[tuple[str, str]], data: st.DataObject) -> None:
    if not pairs:
        return
    query_filter = QueryFilter()
    index = data.draw(st.integers(0, len(pairs) - 1))
    other = data.draw(_VALUE.filter(lambda value: value != pairs[index][1]))
    changed = list(pairs)
    changed[index] = (pairs[index][0], other)
    one, two = query_filter.canonical(_join(pairs)), query_filter.canonical(_join(changed))
    assert one != two
    assert response_key("GET", "http", "h", "/p", one) != response_key("GET", "http", "h", "/p", two)


def test_permutations_of_one_query_share_one_key() -> None:
    pairs = [("b", "2"), ("a", "1"), ("c", "3"), ("utm_source", "x")]
    keys = {QueryFilter(["utm_*"]).canonical(_join(list(order))) for order in permutations(pairs)}
    assert keys == {"a=1&b=2&c=3"}


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
_ROUTE = st.fixed_dictionaries(
    {"path": st.one_of(st.text(max_size=30), st.sampled_from(["/api/x", "/a/{id:int}", "/b/*", "/{x}/{x}"]))},
    optional={
        "method": st.sampled_from(["GET", "HEAD", "ANY", "POST", "get", 1]),
        "cache": st.one_of(st.booleans(), st.integers()),
        "ttl": st.one_of(st.integers(-5, 10**10), st.none(), st.text(max_size=3)),
        "public": st.booleans(),
        "statuses": st.lists(st.integers(0, 700), max_size=3),
        "tags": st.lists(st.text(max_size=8), max_size=3),
        "stale_if_error": st.integers(-1, 10),
        "extra": _JSON,
    },
)
_MANIFEST = st.fixed_dictionaries(
    {"version": st.sampled_from([1, 1, 1, 2, True, "1"]), "routes": st.lists(_ROUTE, max_size=4)},
    optional={"default_ttl": st.integers(-3, 100), "app": st.text(max_size=10)},
)


def _parses_or_refuses(data: bytes) -> None:
    """A RuleSet or a one-line ManifestError; any other exception fails the property."""
    message: str | None = None
    try:
        result = parse_manifest(data)
    except ManifestError as exc:
        message = str(exc)
    if message is not None:
        assert "\n" not in message
    else:
        assert isinstance(result, RuleSet)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_JSON, _MANIFEST))
def test_parse_manifest_on_random_json(document: Any) -> None:
    _parses_or_refuses(json.dumps(document).encode())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_parse_manifest_on_random_bytes(data: bytes) -> None:
    _parses_or_refuses(data)
