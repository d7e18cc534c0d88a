"""What this sidecar is: its version and the versions of what it runs on.

One place for ``tina4-sidecar --version``, the ``tina4_sidecar_build_info`` gauge and the line
logged at start, so the three never disagree. The package's version is ``tina4_sidecar.__version__``
(the single source: pyproject.toml reads it too); the others come from the installed
distributions' metadata, read once.
"""

from __future__ import annotations

import functools
import platform
import sys
from importlib.metadata import PackageNotFoundError, version

import tina4_sidecar

RUNTIME = ("aiohttp", "uvloop", "httptools")
"""The libraries whose versions decide how the sidecar behaves on the wire."""


@functools.cache
def build_info() -> dict[str, str]:
    """``version``, ``python`` (as ``3.12.1``), then each of ``RUNTIME`` (``none`` when absent)."""
    info = {"version": tina4_sidecar.__version__, "python": platform.python_version()}
    for name in RUNTIME:
        try:
            info[name] = version(name)
        except PackageNotFoundError:
            info[name] = "none"
    return info


def version_text(verbose: bool) -> str:
    """What ``--version`` prints: one line, or one line per component with ``--verbose``."""
    info = build_info()
    if not verbose:
        return f"tina4-sidecar {info['version']}"
    lines = [
        f"tina4-sidecar {info['version']}",
        f"python {info['python']} ({platform.python_implementation()}, {sys.executable})",
    ]
    lines.extend(f"{name} {info[name]}" for name in RUNTIME)
    return "\n".join(lines)


def start_line() -> str:
    """The start-up log line's text: every component as ``name=version``."""
    return " ".join(f"{name}={value}" for name, value in build_info().items())
