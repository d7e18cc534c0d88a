"""Stepping aside, through Tina4's own dispatcher: every ResponseCache form passes requests through.

Each case runs a small script in a fresh interpreter (the patch is process-wide) that registers
routes, optionally calls install(), and sends two GETs per route through
``tina4_python.core.server.handle``; the script prints, per route, the X-Cache headers and how
many times the handler ran.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from collections import Counter

    from tina4_python.cache import ResponseCache
    from tina4_python.core.middleware import Middleware
    from tina4_python.core.request import Request
    from tina4_python.core.router import Router, cached, get, middleware
    from tina4_python.core.server import handle

    from tina4_sidecar.client import install

    INSTALL_FIRST = sys.argv[1] == "install"
    if INSTALL_FIRST:
        install()

    runs = Counter()

    def route(name):
        async def handler(request, response):
            runs[name] += 1
            return response({"name": name, "run": runs[name]})
        return handler

    class LateCache(ResponseCache):  # defined after install(): stepped aside by __init_subclass__
        def __init__(self):
            super().__init__(ttl=50)

    class OwnHooks(ResponseCache):  # overrides the hooks: stepped aside too
        def before_cache(self, request, response):
            return super().before_cache(request, response)

        def after_cache(self, request, response):
            return super().after_cache(request, response)

    get("/string", middleware=["ResponseCache:300"])(route("string"))
    middleware(ResponseCache)(get("/class")(route("class")))
    get("/instance", middleware=[ResponseCache(ttl=30)])(route("instance"))
    cached(max_age=20)(get("/cached", middleware=["ResponseCache:300"])(route("cached")))
    middleware(LateCache)(get("/late-subclass")(route("late-subclass")))
    middleware(OwnHooks)(get("/own-hooks")(route("own-hooks")))
    get("/global")(route("global"))

    async def main():
        out = {}
        for path in ("/string", "/class", "/instance", "/cached", "/late-subclass", "/own-hooks"):
            out[path] = await twice(path)
        Middleware.use(ResponseCache)
        out["/global"] = await twice("/global")
        print(json.dumps(out))

    async def twice(path):
        headers = []
        for _ in range(2):
            scope = {"type": "http", "method": "GET", "path": path, "query_string": b"",
                     "headers": [(b"host", b"app.test")], "client": ("127.0.0.1", 1)}
            response = await handle(Request.from_scope(scope))
            headers.append(dict(response._headers).get("X-Cache"))
        return {"x_cache": headers, "runs": runs[path.strip("/")]}

    asyncio.run(main())
    """
)

PATHS = ["/string", "/class", "/instance", "/cached", "/late-subclass", "/own-hooks", "/global"]


def run_script(tmp_path: Path, mode: str) -> dict[str, dict[str, object]]:
    script = tmp_path / "dispatch.py"
    script.write_text(SCRIPT)
    env = {"PATH": "/usr/bin:/bin", "TINA4_DEBUG": "false", "TINA4_SECRET": "x" * 40}
    result = subprocess.run(
        [sys.executable, str(script), mode], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    output: dict[str, dict[str, object]] = json.loads(result.stdout.strip().splitlines()[-1])
    return output


def test_every_form_steps_aside_after_install(tmp_path: Path) -> None:
    out = run_script(tmp_path, "install")
    assert out == {path: {"x_cache": [None, None], "runs": 2} for path in PATHS}


def test_without_install_tina4_caches_every_form(tmp_path: Path) -> None:
    # The same script without install(): Tina4's own cache answers the second request, which
    # shows that the first test would fail if stepping aside did not work.
    out = run_script(tmp_path, "no-install")
    assert out == {path: {"x_cache": ["MISS", "HIT"], "runs": 1} for path in PATHS}
