"""Fixtures of the Tina4-side tests: the demo app process, and a clean in-process route registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers.demo_app import demo_app  # noqa: F401  (the fixture)


@pytest.fixture
def tina4_registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """Tina4's Router with an empty route table and no global middleware; restored afterwards.

    Runs in tmp_path, because building a ResponseCache may create Tina4's data/ folders.
    """
    monkeypatch.chdir(tmp_path)
    from tina4_python.core.middleware import Middleware
    from tina4_python.core.router import Router

    routes = Router.get_routes()
    saved_routes = list(routes)
    saved_globals = Middleware.get_global()
    routes.clear()
    Middleware.reset()
    try:
        yield Router
    finally:
        routes[:] = saved_routes
        Middleware.reset()
        for item in saved_globals:
            Middleware.use(item)
