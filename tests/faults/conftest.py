"""Registers the ``fault`` marker (pyproject.toml is left as it is)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fault: fault injection and soak tests against real processes (bounded, < 40 s each)"
    )
