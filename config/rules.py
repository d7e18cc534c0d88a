"""Cache rules: which routes the sidecar caches, matched exactly the way Tina4 routes requests.

The app's manifest (``GET /__tina4/cache-manifest``) and an operator's static rules file share one
JSON format, read by :func:`parse_manifest` and :func:`load_rules_file` and written by
:func:`dump_manifest`::

    {"version": 1, "app": "tina4-python", "tina4_version": "3.13.154", "default_ttl": 60,
     "routes": [{"method": "GET", "path": "/api/products", "cache": true, "ttl": 300,
                 "public": false, "statuses": [200], "tags": [], "source": "middleware-string"}]}

The manifest lists every GET, HEAD and ANY route of the app in registration order, cached or
not, because in Tina4 the first registered match wins: an uncached route registered earlier
shadows a later cached one. :meth:`RuleSet.match` therefore returns the first matching rule even
when it is uncached, and callers check ``rule.cache``.

Pure Python on purpose: the proxy imports this on its hot path and must not import Tina4.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MANIFEST_VERSION = 1
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_ROUTES = 10_000
METHODS = frozenset({"GET", "HEAD", "ANY"})

# Tina4's typed route parameters, copied verbatim from tina4_python/core/router.py
# (_TYPE_PATTERNS) of tina4-python 3.13.154. The key ".*" is accepted there too.
TYPE_PATTERNS: dict[str, str] = {
    "string": "[^/]+",
    "int": r"\d+",
    "integer": r"\d+",
    "float": r"[\d.]+",
    "number": r"[\d.]+",
    "alpha": "[A-Za-z]+",
    "alnum": "[A-Za-z0-9]+",
    "slug": "[a-z0-9-]+",
    "uuid": "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    "path": ".+",
    ".*": ".+",
}


class PathPatternError(ValueError):
    """A route path that Tina4 would refuse to register (an unknown ``{name:type}``)."""


class ManifestError(ValueError):
    """A manifest or rules file that cannot be used; the message is one line saying why."""


def compile_path(path: str) -> tuple[re.Pattern[str], str | None]:
    """Compile a Tina4 route path the way ``tina4_python.core.router._compile_pattern`` does.

    Returns the regex and, for a path without parameters or wildcard, the literal path that the
    regex accepts (with an optional trailing slash), else None.
    """
    parts: list[str] = []
    literal = True
    for segment in path.strip("/").split("/"):
        if segment == "*":
            parts.append("(.+)")
            literal = False
            break  # Tina4 ignores whatever follows a bare wildcard
        if segment.startswith("{") and segment.endswith("}"):
            literal = False
            inner = segment[1:-1]
            if ":" in inner:
                type_hint = inner.split(":", 1)[1]
                if type_hint not in TYPE_PATTERNS:
                    valid = ", ".join(sorted(k for k in TYPE_PATTERNS if k != ".*"))
                    raise PathPatternError(
                        f"unknown parameter type {type_hint!r} in route {path!r} (valid: {valid})"
                    )
                parts.append("(" + TYPE_PATTERNS[type_hint] + ")")
            else:
                parts.append("([^/]+)")
        else:
            parts.append(re.escape(segment))
    regex = re.compile("^/" + "/".join(parts) + "/?$")
    return regex, ("/" + path.strip("/") if literal else None)


@dataclass(frozen=True, slots=True)
class Rule:
    """One route of the app: its Tina4 path pattern and whether and how long to cache it.

    A ``ttl`` <= 0 means not cached, so such a rule always has ``cache=False``.
    """

    method: str
    path: str
    cache: bool
    ttl: int
    public: bool = False
    statuses: tuple[int, ...] = (200,)
    tags: tuple[str, ...] = ()
    source: str = "manifest"
    stale_while_revalidate: int | None = None
    """Seconds of RFC 5861 grace for this route; None = the sidecar's setting."""
    stale_if_error: int | None = None
    max_bytes: int | None = None
    """Largest body stored for this route; None = the sidecar's TINA4_SIDECAR_MAX_OBJECT_BYTES."""
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)
    literal: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {sorted(METHODS)}, got {self.method!r}")
        regex, literal = compile_path(self.path)
        object.__setattr__(self, "regex", regex)
        object.__setattr__(self, "literal", literal)
        if self.ttl <= 0 and self.cache:
            object.__setattr__(self, "cache", False)

    def to_json(self) -> dict[str, object]:
        document: dict[str, object] = {
            "method": self.method,
            "path": self.path,
            "cache": self.cache,
            "ttl": self.ttl,
            "public": self.public,
            "statuses": list(self.statuses),
            "tags": list(self.tags),
            "source": self.source,
        }
        optional = {
            "stale_while_revalidate": self.stale_while_revalidate,
            "stale_if_error": self.stale_if_error,
            "max_bytes": self.max_bytes,
        }
        document.update({name: value for name, value in optional.items() if value is not None})
        return document


type _Matcher = Callable[[str], re.Match[str] | None]


def _literal_keys(literal: str) -> tuple[str, ...]:
    # Every string that ^<literal>/?$ accepts; "$" also matches before one final "\n".
    return (literal, literal + "/", literal + "\n", literal + "/\n")


class _Table:
    """First-match lookup over the rules one request method may use, in registration order.

    A literal rule accepts only a few exact strings, so the winner for each of them (the literal
    rule, or a parameterised rule registered before it that also matches) is decided once, here,
    and found with one dict lookup. Any other path can only match a parameterised rule: those
    are tried in order.
    """

    __slots__ = ("_exact", "_scan")

    def __init__(self, rules: Iterable[Rule]) -> None:
        self._exact: dict[str, Rule] = {}
        scan: list[tuple[_Matcher, Rule]] = []
        for rule in rules:
            if rule.literal is None:
                scan.append((rule.regex.match, rule))
                continue
            for key in _literal_keys(rule.literal):
                if key not in self._exact:
                    earlier = (r for match, r in scan if match(key) is not None)
                    self._exact[key] = next(earlier, rule)
        self._scan = tuple(scan)

    def find(self, path: str) -> Rule | None:
        rule = self._exact.get(path)
        if rule is not None:
            return rule
        for match, candidate in self._scan:
            if match(path) is not None:
                return candidate
        return None


class RuleSet:
    """Rules in registration order, matched with Tina4's semantics.

    First registered match wins, ``ANY`` matches every method, HEAD falls back to GET when no
    HEAD or ANY rule matches. The path is compared as Tina4 receives it: percent-decoded under
    uvicorn and other ASGI servers (the ASGI ``path``), raw on Tina4's built-in server.
    """

    __slots__ = ("_get", "_head", "_rules")

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self._rules = tuple(rules)
        self._get = _Table(r for r in self._rules if r.method in ("GET", "ANY"))
        self._head = _Table(r for r in self._rules if r.method in ("HEAD", "ANY"))

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self._rules

    def __len__(self) -> int:
        return len(self._rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self._rules)

    def __repr__(self) -> str:
        return f"RuleSet({len(self._rules)} rules)"

    def match(self, method: str, path: str) -> Rule | None:
        """The first rule whose route Tina4 would dispatch ``method path`` to, cached or not.

        Only GET and HEAD are answered (any case); other methods return None, since the
        manifest does not describe the app's POST, PUT, ... routes that would shadow an ANY rule.
        """
        if method == "GET":
            return self._get.find(path)
        if method == "HEAD":
            rule = self._head.find(path)
            return rule if rule is not None else self._get.find(path)
        upper = method.upper()
        if upper != method and upper in ("GET", "HEAD"):
            return self.match(upper, path)
        return None

    @staticmethod
    def merged(first: RuleSet, then: RuleSet) -> RuleSet:
        """One rule set that tries ``first``'s rules before ``then``'s (static rules first)."""
        return RuleSet(first.rules + then.rules)


# ---------------------------------------------------------------------------------------------
# The JSON format

_Tag = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:/@+=-]{1,128}$")]
_Status = Annotated[int, Field(ge=100, le=599)]


class _RouteModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    method: Literal["GET", "HEAD", "ANY"] = "GET"
    path: Annotated[str, Field(max_length=2048, pattern=r"^[^\s\x00-\x1f\x7f]*$")]
    cache: bool = True
    ttl: Annotated[int, Field(ge=-(2**31), le=2**31 - 1)] | None = None
    public: bool = False
    statuses: Annotated[list[_Status], Field(min_length=1, max_length=100)] = [200]
    tags: Annotated[list[_Tag], Field(max_length=64)] = []
    source: Annotated[str, Field(pattern=r"^[a-z0-9-]{1,40}$")] | None = None
    stale_while_revalidate: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    stale_if_error: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    max_bytes: Annotated[int, Field(ge=0, le=2**40)] | None = None


class _ManifestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    version: int
    app: Annotated[str, Field(max_length=64)] | None = None
    tina4_version: Annotated[str, Field(max_length=64)] | None = None
    default_ttl: Annotated[int, Field(ge=0, le=2**31 - 1)] = 60
    routes: Annotated[list[_RouteModel], Field(max_length=MAX_ROUTES)]


@dataclass(frozen=True, slots=True)
class Manifest:
    """A parsed manifest: its rules and what it says about the app."""

    rules: RuleSet
    app: str | None
    tina4_version: str | None
    default_ttl: int


def read_manifest(data: bytes, *, default_source: str = "manifest") -> Manifest:
    """Validate a manifest strictly; raises ManifestError with a one-line reason.

    ``default_source`` names routes that do not say where they came from (a static rules file).
    """
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"too large: {len(data)} bytes (the limit is {MAX_MANIFEST_BYTES})")
    try:
        document = json.loads(data)
    except UnicodeDecodeError:
        raise ManifestError("not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise ManifestError("not usable JSON: nested too deeply") from None
    if not isinstance(document, dict):
        raise ManifestError(f"expected a JSON object, got {type(document).__name__}")
    version = document.get("version")
    if version != MANIFEST_VERSION or isinstance(version, bool):
        raise ManifestError(
            f"unsupported version {version!r} (this sidecar reads version {MANIFEST_VERSION})"
        )
    try:
        model = _ManifestModel.model_validate(document)
    except ValidationError as exc:
        raise ManifestError(_describe(exc, document)) from None
    rules: list[Rule] = []
    for index, route in enumerate(model.routes):
        where = f"routes[{index}] ({route.method} {route.path!r})"
        ttl = model.default_ttl if route.ttl is None else route.ttl
        if route.cache and ttl <= 0:
            raise ManifestError(f"{where}: cache is true but ttl is {ttl}; use cache: false")
        try:
            rules.append(
                Rule(
                    method=route.method,
                    path=route.path,
                    cache=route.cache,
                    ttl=ttl,
                    public=route.public,
                    statuses=tuple(sorted(set(route.statuses))),
                    tags=tuple(dict.fromkeys(route.tags)),
                    source=route.source or default_source,
                    stale_while_revalidate=route.stale_while_revalidate,
                    stale_if_error=route.stale_if_error,
                    max_bytes=route.max_bytes,
                )
            )
        except PathPatternError as exc:
            raise ManifestError(f"{where}: bad path: {exc}") from None
    return Manifest(RuleSet(rules), model.app, model.tina4_version, model.default_ttl)


def parse_manifest(data: bytes) -> RuleSet:
    """The rules of a manifest; raises ManifestError with a one-line reason."""
    return read_manifest(data).rules


def load_rules_file(path: str | Path) -> RuleSet:
    """Static rules from a JSON file in the manifest format; ManifestError names the file."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            data = handle.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise ManifestError(f"{file}: cannot read: {exc.strerror or exc}") from None
    try:
        return read_manifest(data, default_source="static-file").rules
    except ManifestError as exc:
        raise ManifestError(f"{file}: {exc}") from None


def dump_manifest(
    rules: Iterable[Rule],
    *,
    tina4_version: str | None = None,
    default_ttl: int = 60,
    app: str = "tina4-python",
) -> bytes:
    """The manifest JSON for ``rules``, compact and deterministic (same rules, same bytes)."""
    document = {
        "version": MANIFEST_VERSION,
        "app": app,
        "tina4_version": tina4_version,
        "default_ttl": default_ttl,
        "routes": [rule.to_json() for rule in rules],
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def _describe(exc: ValidationError, document: dict[str, object]) -> str:
    error = exc.errors()[0]
    loc = error["loc"]
    where = ".".join(str(part) for part in loc) or "manifest"
    routes = document.get("routes")
    if len(loc) >= 2 and loc[0] == "routes" and isinstance(loc[1], int) and isinstance(routes, list):
        route = routes[loc[1]]
        if isinstance(route, dict):
            rest = ".".join(str(part) for part in loc[2:]) or "route"
            where = f"routes[{loc[1]}] ({route.get('method', 'GET')} {route.get('path')!r}): {rest}"
    more = exc.error_count() - 1
    suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
    return f"{where}: {error['msg']}{suffix}"
