"""RuleSet.match picks the same route as Tina4's own Router.match, for every path we can think of.

The routes are registered with Tina4's real Router (its global registry, emptied and restored by
the ``tina4_registry`` fixture); the rules are built from what Tina4 registered, in its order.
"""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tina4_sidecar.config.rules import PathPatternError, Rule, RuleSet, compile_path

UUID = "550e8400-e29b-41d4-a716-446655440000"

PATTERNS = [
    "/",
    "/api",
    "/api/",
    "/api/products",
    "/api/products/new",
    "/api/products/{id:int}",
    "/api/products/{id:integer}",
    "/api/products/{id}",
    "/api/products/{slug:slug}",
    "/api/products/{name:alpha}",
    "/api/products/{code:alnum}",
    "/api/products/{price:float}",
    "/api/products/{n:number}",
    "/api/products/{s:string}",
    "/api/items/{u:uuid}",
    "/api/users/{id:int}/posts/{post}",
    "/api/users/{id:int}/posts",
    "/files/{p:path}",
    "/files/{p:.*}",
    "/docs/*",
    "/docs/*/ignored",
    "/*",
    "/{any}",
    "/a/{x}/b/{y}",
    "/a/{x}/b",
    "/a/b/{y}",
    "/a//b",
    "/api/v1.0/x",
    "/api/(group)/x",
    "/api/[x]",
    "/x+y",
    "/x$",
    "/^x",
    "/a/{b",
    "/a/c}",
    "/a/{}",
    "/API/products",
    "/café/{name}",
    "prefixless/route",
    "",
]

EXAMPLES = [
    "1",
    "42",
    "007",
    "4.5",
    "1.2.3",
    ".",
    "abc",
    "ABC",
    "aBc",
    "a-b",
    "a_b",
    "a1",
    "new",
    "café",
    UUID,
    UUID.upper(),
    "550e8400",
    "%20",
    "a%2Fb",
    "+",
    "(group)",
    "[x]",
    "{b",
    "c}",
    "{}",
    "",
    "x$",
    "^x",
    "x+y",
    "products",
    "api",
    "v1.0",
    "ignored",
    "*",
]


def _fill(pattern: str, rng: random.Random) -> str:
    segments = []
    for segment in pattern.strip("/").split("/"):
        if segment.startswith("{") and segment.endswith("}") and len(segment) > 1:
            segments.append(rng.choice(EXAMPLES))
        elif segment == "*":
            segments.append("/".join(rng.choice(EXAMPLES) for _ in range(rng.randint(1, 3))))
        else:
            segments.append(segment)
    return "/" + "/".join(segments)


def _request_paths() -> list[str]:
    rng = random.Random(4)
    paths = {"/", "", "//", "///", "/\n", "\n", "/api\n", "/api/\n", "/api//", "/API", "/api/products//"}
    for pattern in PATTERNS:
        for _ in range(12):
            path = _fill(pattern, rng)
            doubled = path.replace("/", "//", 1)
            paths.update({path, path + "/", path + "//", path + "\n", path.upper(), doubled})
    for a in EXAMPLES:
        for b in EXAMPLES[:12]:
            paths.update({f"/{a}", f"/{a}/{b}", f"/api/products/{a}", f"/a/{a}/b/{b}", f"/docs/{a}/{b}"})
    return sorted(paths)


REQUEST_PATHS = _request_paths()
ROUTE_METHODS = ["GET", "GET", "GET", "ANY", "HEAD", "POST"]


def register(router: Any, routes: list[tuple[str, str]]) -> RuleSet:
    """Register (method, path) routes with Tina4 and build the rules from Tina4's table."""
    router.get_routes().clear()

    async def handler(request: Any, response: Any) -> Any:
        return response("")

    for method, path in routes:
        router.add(method, path, handler)
    return RuleSet(
        Rule(r["method"], r["path"], cache=False, ttl=0)
        for r in router.get_routes()
        if r["method"] in ("GET", "HEAD", "ANY")
    )


def assert_same_choice(router: Any, rules: RuleSet, method: str, path: str) -> None:
    route, _ = router.match(method, path)
    expected = None if route is None else (route["method"], route["path"])
    rule = rules.match(method, path)
    got = None if rule is None else (rule.method, rule.path)
    assert got == expected, f"{method} {path!r}: Tina4 chose {expected}, RuleSet chose {got}"


@pytest.mark.parametrize("seed", range(12))
def test_corpus_in_many_registration_orders(tina4_registry: Any, seed: int) -> None:
    rng = random.Random(seed)
    routes = [(rng.choice(ROUTE_METHODS), p) for p in PATTERNS]
    if seed:
        rng.shuffle(routes)
        routes = routes[: rng.randint(5, len(routes))]
    rules = register(tina4_registry, routes)
    for path in REQUEST_PATHS:
        for method in ("GET", "HEAD"):
            assert_same_choice(tina4_registry, rules, method, path)


def test_regex_is_the_one_tina4_compiles(tina4_registry: Any) -> None:
    from tina4_python.core.router import _compile_pattern

    for pattern in PATTERNS:
        assert compile_path(pattern)[0].pattern == _compile_pattern(pattern)[0].pattern


@pytest.mark.parametrize("pattern", ["/u/{id:inetger}", "/u/{id:}", "/u/{id:int:x}", "/u/{id:INT}"])
def test_the_types_tina4_refuses_are_refused(tina4_registry: Any, pattern: str) -> None:
    with pytest.raises(ValueError, match="Unknown param type"):
        tina4_registry.add("GET", pattern, lambda request, response: None)
    with pytest.raises(PathPatternError, match=re.escape(repr(pattern))):
        compile_path(pattern)


segment_text = st.one_of(
    st.sampled_from(EXAMPLES),
    st.text(alphabet=st.characters(exclude_characters="/", codec="utf-8"), max_size=8),
)
request_path = st.builds(
    lambda segments, trailing, newline: "/" + "/".join(segments) + trailing + newline,
    st.lists(segment_text, max_size=5),
    st.sampled_from(["", "/", "//"]),
    st.sampled_from(["", "", "", "\n"]),
)
route_table = st.lists(
    st.tuples(st.sampled_from(ROUTE_METHODS), st.sampled_from(PATTERNS)), min_size=1, max_size=20
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(routes=route_table, paths=st.lists(request_path, min_size=1, max_size=20))
def test_generated_tables_and_paths(
    tina4_registry: Any, routes: list[tuple[str, str]], paths: list[str]
) -> None:
    rules = register(tina4_registry, routes)
    for path in paths:
        for method in ("GET", "HEAD"):
            assert_same_choice(tina4_registry, rules, method, path)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pattern=st.lists(segment_text.filter(lambda s: s not in ("*",) and not s.startswith("{")), max_size=4),
    path=request_path,
)
def test_generated_literal_patterns(tina4_registry: Any, pattern: list[str], path: str) -> None:
    route = "/" + "/".join(pattern)
    rules = register(tina4_registry, [("GET", "/{a}/{b:int}"), ("GET", route), ("ANY", "/z/*")])
    for candidate in (path, route, route + "/", route + "\n"):
        assert_same_choice(tina4_registry, rules, "GET", candidate)
