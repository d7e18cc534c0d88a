"""The manifest built from Tina4's real route registry: every annotation form, TTL precedence.

Routes are registered with Tina4's own decorators and Router in this process (the
``tina4_registry`` fixture empties the registry and restores it afterwards).
"""

from __future__ import annotations

from typing import Any

import pytest

from tina4_sidecar.client.manifest import build_manifest
from tina4_sidecar.config.rules import Rule, read_manifest


async def handler(request: Any, response: Any) -> Any:
    return response({"ok": True})


def fresh(name: str) -> Any:
    async def route(request: Any, response: Any) -> Any:
        return response({"route": name})

    route.__name__ = name
    return route


def table() -> dict[tuple[str, str], tuple[bool, int, str, tuple[int, ...]]]:
    rules = read_manifest(build_manifest()).rules
    return {(r.method, r.path): (r.cache, r.ttl, r.source, r.statuses) for r in rules}


def test_every_annotation_form(tina4_registry: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINA4_CACHE_TTL", "25")
    from tina4_python.cache import ResponseCache
    from tina4_python.core.router import Router, any_method, cached, get, middleware, post

    get("/decorator-string", middleware=["ResponseCache:300"])(fresh("a"))
    middleware(ResponseCache)(get("/class")(fresh("b")))
    cached(max_age=120)(get("/cached-after")(fresh("c")))
    get("/cached-before")(cached(max_age=15)(fresh("d")))
    Router.get("/router-string", fresh("e"), middleware=["ResponseCache:60"])
    middleware("ResponseCache:30")(get("/middleware-string")(fresh("f")))
    get("/middleware-string-below")(middleware("ResponseCache:31")(fresh("g")))
    Router.get("/route-cached", fresh("h")).cache()
    Router.add("GET", "/route-cached-age", fresh("i"), cached=True, cache_max_age=15)
    get("/statuses", middleware=[ResponseCache(ttl=90, status_codes=[404, 200, 301])])(fresh("j"))
    get("/bare-string", middleware=["ResponseCache"])(fresh("k"))
    Router.get("/bare-unconverted", fresh("l"), middleware=["ResponseCache"])
    Router.get("/not-a-ttl", fresh("m"), middleware=["ResponseCache:soon"])
    get("/disabled", middleware=["ResponseCache:0"])(fresh("n"))
    cached(max_age=0)(get("/cached-zero", middleware=["ResponseCache:300"])(fresh("o")))
    cached(max_age=45)(get("/cached-over-string", middleware=["ResponseCache:300"])(fresh("p")))
    any_method("/any", middleware=["ResponseCache:11"])(fresh("q"))
    Router.head("/head", fresh("r"))
    post("/post", middleware=["ResponseCache:300"])(fresh("s"))
    get("/plain")(fresh("t"))
    Router.group("/group", lambda g: g.get("/x", fresh("u")), middleware=["ResponseCache:77"])

    class LongCache(ResponseCache):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(ttl=3600)

    middleware(LongCache)(get("/subclass")(fresh("v")))

    assert table() == {
        ("GET", "/decorator-string"): (True, 300, "middleware-string", (200,)),
        ("GET", "/class"): (True, 25, "middleware-class", (200,)),
        ("GET", "/cached-after"): (True, 120, "cached-decorator", (200,)),
        ("GET", "/cached-before"): (True, 15, "cached-decorator", (200,)),
        ("GET", "/router-string"): (True, 60, "middleware-string", (200,)),
        ("GET", "/middleware-string"): (True, 30, "middleware-string", (200,)),
        ("GET", "/middleware-string-below"): (True, 31, "middleware-string", (200,)),
        ("GET", "/route-cached"): (True, 25, "route-cached", (200,)),
        ("GET", "/route-cached-age"): (True, 15, "route-cached", (200,)),
        ("GET", "/statuses"): (True, 90, "middleware-string", (200, 301, 404)),
        ("GET", "/bare-string"): (True, 25, "middleware-class", (200,)),
        ("GET", "/bare-unconverted"): (True, 25, "middleware-string", (200,)),
        ("GET", "/not-a-ttl"): (False, 0, "middleware-string", (200,)),
        ("GET", "/disabled"): (False, 0, "middleware-string", (200,)),
        ("GET", "/cached-zero"): (False, 0, "cached-decorator", (200,)),
        ("GET", "/cached-over-string"): (True, 45, "cached-decorator", (200,)),
        ("ANY", "/any"): (True, 11, "middleware-string", (200,)),
        ("HEAD", "/head"): (False, 0, "none", (200,)),
        ("GET", "/plain"): (False, 0, "none", (200,)),
        ("GET", "/group/x"): (True, 77, "middleware-string", (200,)),
        ("GET", "/subclass"): (True, 3600, "middleware-class", (200,)),
    }


def test_cached_stamped_after_the_manifest_was_first_built_is_seen(tina4_registry: Any) -> None:
    from tina4_python.core.router import get

    route = get("/late")(fresh("late"))
    assert table()[("GET", "/late")] == (False, 0, "none", (200,))
    route._cache_max_age = 33  # what @cached does, whenever it runs
    route._cached = True
    assert table()[("GET", "/late")] == (True, 33, "cached-decorator", (200,))


def test_global_response_cache_caches_every_route_and_overrides_route_ttls(
    tina4_registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TINA4_CACHE_TTL", raising=False)
    from tina4_python.cache import ResponseCache
    from tina4_python.core.middleware import Middleware
    from tina4_python.core.router import cached, get

    get("/plain")(fresh("a"))
    get("/own", middleware=["ResponseCache:300"])(fresh("b"))
    cached(max_age=7)(get("/decorated")(fresh("c")))
    Middleware.use(ResponseCache)
    assert table() == {
        ("GET", "/plain"): (True, 60, "global", (200,)),
        ("GET", "/own"): (True, 60, "global", (200,)),
        ("GET", "/decorated"): (True, 7, "cached-decorator", (200,)),
    }
    Middleware.reset()
    Middleware.use(ResponseCache(ttl=0))
    assert {key: value[:2] for key, value in table().items()} == {
        ("GET", "/plain"): (False, 0),
        ("GET", "/own"): (False, 0),
        ("GET", "/decorated"): (False, 0),
    }


def test_routes_keep_tina4s_order_and_replacement(tina4_registry: Any) -> None:
    from tina4_python.core.router import get

    get("/shadow/{name}")(fresh("a"))
    get("/shadow/fixed", middleware=["ResponseCache:300"])(fresh("b"))
    get("/shadow/{name}", middleware=["ResponseCache:5"])(fresh("c"))  # replaces the first in place
    manifest = read_manifest(build_manifest())
    assert [(r.path, r.ttl) for r in manifest.rules] == [("/shadow/{name}", 5), ("/shadow/fixed", 300)]
    assert manifest.rules.match("GET", "/shadow/fixed") == Rule(
        "GET", "/shadow/{name}", True, 5, source="middleware-string"
    )
    assert manifest.tina4_version == __import__("tina4_python").__version__
