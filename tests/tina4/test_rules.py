"""The rule model and the manifest format: compilation, first-match lookup, strict parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tina4_sidecar.config.rules import (
    MAX_MANIFEST_BYTES,
    ManifestError,
    PathPatternError,
    Rule,
    RuleSet,
    compile_path,
    dump_manifest,
    load_rules_file,
    parse_manifest,
    read_manifest,
)


def manifest(routes: list[dict[str, object]], **top: object) -> bytes:
    return json.dumps({"version": 1, "default_ttl": 60, "routes": routes, **top}).encode()


def test_literal_paths_accept_exactly_the_trailing_slash_variants() -> None:
    regex, literal = compile_path("/api/products/")
    assert literal == "/api/products"
    assert regex.pattern == "^/api/products/?$"
    assert compile_path("/")[1] == "/"
    assert compile_path("/api/{id}")[1] is None
    assert compile_path("/docs/*")[1] is None


def test_unknown_parameter_type_names_the_route() -> None:
    with pytest.raises(PathPatternError, match=r"'inetger' in route '/u/\{id:inetger\}'"):
        compile_path("/u/{id:inetger}")
    with pytest.raises(ValueError, match="method"):
        Rule("POST", "/x", cache=True, ttl=1)


def test_rule_with_ttl_zero_or_less_is_never_cached() -> None:
    assert Rule("GET", "/x", cache=True, ttl=0).cache is False
    assert Rule("GET", "/x", cache=True, ttl=-5).cache is False
    assert Rule("GET", "/x", cache=True, ttl=1).cache is True


def test_rules_compare_without_their_regex() -> None:
    assert Rule("GET", "/a/{id:int}", True, 5) == Rule("GET", "/a/{id:int}", True, 5)
    assert Rule("GET", "/a", True, 5) != Rule("GET", "/a", True, 6)
    assert "regex" not in Rule("GET", "/a", True, 5).to_json()


def test_first_registered_match_wins_even_when_it_is_uncached() -> None:
    rules = RuleSet(
        [
            Rule("GET", "/shadow/{name}", cache=False, ttl=0),
            Rule("GET", "/shadow/fixed", cache=True, ttl=300),
            Rule("GET", "/lit", cache=True, ttl=10),
            Rule("GET", "/lit/{x}", cache=True, ttl=20),
        ]
    )
    hit = rules.match("GET", "/shadow/fixed")
    assert hit is not None
    assert (hit.path, hit.cache) == ("/shadow/{name}", False)
    assert (rule := rules.match("GET", "/lit/")) is not None
    assert rule.ttl == 10
    assert (rule := rules.match("GET", "/lit/y")) is not None
    assert rule.ttl == 20
    assert rules.match("GET", "/LIT") is None  # case-sensitive
    assert rules.match("GET", "/nothing") is None


def test_a_literal_registered_after_a_matching_regex_loses() -> None:
    rules = RuleSet([Rule("GET", "/{any}", cache=False, ttl=0), Rule("GET", "/exact", cache=True, ttl=9)])
    rule = rules.match("GET", "/exact")
    assert rule is not None
    assert rule.path == "/{any}"


def test_any_matches_get_and_head_falls_back_to_get() -> None:
    rules = RuleSet(
        [
            Rule("HEAD", "/h", cache=False, ttl=0),
            Rule("GET", "/h", cache=True, ttl=5),
            Rule("GET", "/g", cache=True, ttl=6),
            Rule("ANY", "/any", cache=True, ttl=7),
        ]
    )
    assert (rule := rules.match("HEAD", "/h")) is not None
    assert rule.method == "HEAD"
    assert (rule := rules.match("GET", "/h")) is not None
    assert rule.method == "GET"
    assert (rule := rules.match("HEAD", "/g")) is not None
    assert rule.ttl == 6
    assert (rule := rules.match("head", "/g")) is not None
    assert rule.ttl == 6
    assert (rule := rules.match("GET", "/any")) is not None
    assert rule.ttl == 7
    assert (rule := rules.match("HEAD", "/any")) is not None
    assert rule.ttl == 7
    assert rules.match("POST", "/any") is None  # POST routes are not in the manifest


def test_merged_checks_the_first_set_before_the_second() -> None:
    static = RuleSet([Rule("GET", "/api/products", cache=True, ttl=5, source="static-file")])
    app = RuleSet([Rule("GET", "/api/products", cache=True, ttl=300), Rule("GET", "/x", cache=True, ttl=1)])
    both = RuleSet.merged(static, app)
    assert (rule := both.match("GET", "/api/products")) is not None
    assert rule.ttl == 5
    assert (rule := both.match("GET", "/x")) is not None
    assert rule.ttl == 1
    assert len(both) == 3


def test_dump_then_parse_gives_the_same_rules() -> None:
    rules = [
        Rule("GET", "/api/products", True, 300, source="middleware-string"),
        Rule("ANY", "/api/{id:uuid}", True, 30, public=True, statuses=(200, 404), tags=("p", "q")),
        Rule("HEAD", "/h", False, 0, source="none"),
    ]
    data = dump_manifest(rules, tina4_version="3.13.154", default_ttl=60)
    parsed = read_manifest(data)
    assert list(parsed.rules) == rules
    assert (parsed.tina4_version, parsed.default_ttl, parsed.app) == ("3.13.154", 60, "tina4-python")
    assert dump_manifest(rules, tina4_version="3.13.154") == data


def test_omitted_fields_take_their_defaults() -> None:
    rules = parse_manifest(manifest([{"path": "/x"}], default_ttl=42))
    assert list(rules) == [Rule("GET", "/x", True, 42, source="manifest")]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "not JSON"),
        (b'{"version": 1, "routes": [], "app": "\xff"}', "not UTF-8 text"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (json.dumps({"routes": []}).encode(), "unsupported version None"),
        (json.dumps({"version": 2, "routes": []}).encode(), "unsupported version 2"),
        (json.dumps({"version": "1", "routes": []}).encode(), "unsupported version '1'"),
        (json.dumps({"version": True, "routes": []}).encode(), "unsupported version True"),
        (json.dumps({"version": 1}).encode(), "routes: Field required"),
        (manifest([{"path": "/u/{id:inetger}"}]), "routes[0] (GET '/u/{id:inetger}'): bad path: unknown"),
        (manifest([{"path": "/x", "statuses": [-200]}]), "routes[0] (GET '/x'): statuses.0:"),
        (manifest([{"path": "/x", "statuses": [600]}]), "statuses.0: Input should be less than or equal"),
        (manifest([{"path": "/x", "statuses": []}]), "statuses: List should have at least 1 item"),
        (manifest([{"path": "/x", "ttl": "300"}]), "ttl: Input should be a valid integer"),
        (manifest([{"path": "/x", "ttl": 1.5}]), "ttl: Input should be a valid integer"),
        (manifest([{"path": "/x", "cache": "yes"}]), "cache: Input should be a valid boolean"),
        (manifest([{"path": "/x", "method": "POST"}]), "method: Input should be 'GET', 'HEAD' or 'ANY'"),
        (manifest([{"path": "/x", "cache": True, "ttl": 0}]), "cache is true but ttl is 0"),
        (manifest([{"path": "/x", "colour": "red"}]), "colour: Extra inputs are not permitted"),
        (manifest([{"path": "/x", "tags": ["a b"]}]), "tags.0: String should match pattern"),
        (manifest([{"path": "/x\n"}]), "path: String should match pattern"),
        (manifest([{"ttl": 5}]), "routes[0] (GET None): path: Field required"),
        (json.dumps({"version": 1, "routes": [1]}).encode(), "routes.0: Input should be"),
        (manifest([], default_ttl=-1), "default_ttl: Input should be greater than or equal to 0"),
        (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
        (b" " * (MAX_MANIFEST_BYTES + 1), f"too large: {MAX_MANIFEST_BYTES + 1} bytes"),
    ],
)
def test_bad_manifests_are_refused_with_one_line_saying_why(data: bytes, message: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(data)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text


def test_several_errors_are_counted_not_listed() -> None:
    with pytest.raises(ManifestError, match=r"\(and 1 more error\)$"):
        parse_manifest(manifest([{"path": "/x", "ttl": "1", "cache": "no"}]))


def test_rules_file_defaults_to_static_file_source(tmp_path: Path) -> None:
    file = tmp_path / "rules.json"
    file.write_bytes(manifest([{"path": "/api/products", "ttl": 5, "tags": ["products"]}, {"path": "/x"}]))
    rules = load_rules_file(file)
    assert [(r.path, r.ttl, r.source, r.tags) for r in rules] == [
        ("/api/products", 5, "static-file", ("products",)),
        ("/x", 60, "static-file", ()),
    ]


def test_rules_file_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(ManifestError, match=r"missing\.json: cannot read: No such file"):
        load_rules_file(missing)
    bad = tmp_path / "bad.json"
    bad.write_bytes(manifest([{"path": "/x", "statuses": [-1]}]))
    with pytest.raises(ManifestError, match=r"bad\.json: routes\[0\] \(GET '/x'\): statuses\.0"):
        load_rules_file(bad)
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (MAX_MANIFEST_BYTES + 10))
    with pytest.raises(ManifestError, match=r"big\.json: too large"):
        load_rules_file(big)
