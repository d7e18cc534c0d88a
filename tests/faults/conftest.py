"""Registers the ``fault`` marker (pyproject.toml is left as it is), and the module-wide sidecar that
the bad-input and fuzz tests send their input to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.demo_app import start_demo_app
from tests.servers.process import ServerProcess
from tests.servers.sidecar import start_sidecar


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fault: fault injection and soak tests against real processes (bounded, < 40 s each)"
    )


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One demo app behind one sidecar (memory store, HIT fast path on) for the whole module."""
    workdir: Path = tmp_path_factory.mktemp("sidecar")
    app = start_demo_app(workdir / "app")
    try:
        server = start_sidecar(app.port, workdir / "sidecar", env={"TINA4_SIDECAR_LOG_LEVEL": "info"})
        try:
            yield server
            # aiohttp logs each unparsable request with its parser's traceback (data_received);
            # a handler that raised (a 500) would show _handle_request.
            assert "_handle_request" not in server.log_text()
        finally:
            server.stop()
    finally:
        app.stop()
