"""Helpers of the admin API's tests: admin requests, X-Cache reads and the command line."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.servers.sidecar import SIDECAR_BIN

TOKEN = "admin-token-for-tests-0123456789"
PREFIX = "/__sidecar/"


@dataclass
class Answer:
    status: int
    body: Any
    headers: Mapping[str, str]


async def admin_call(
    session: aiohttp.ClientSession,
    base: str,
    name: str,
    token: str | None = None,
    method: str = "GET",
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    prefix: str = PREFIX,
) -> Answer:
    """One admin request to the listener at ``base`` (``http://127.0.0.1:port``); JSON is parsed."""
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    async with session.request(method, f"{base}{prefix}{name}", headers=sent, data=data) as response:
        text = await response.text()
        parsed: Any = json.loads(text) if text and response.content_type == "application/json" else text
        return Answer(response.status, parsed, response.headers)


async def x_cache(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as response:
        await response.read()
        return response.headers.get("X-Cache", "-")


def run_cli(*args: str, cwd: Path, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``tina4-sidecar ARGS`` with no TINA4_* variables but ``env``, in ``cwd`` (no stray .env)."""
    clean = {name: value for name, value in os.environ.items() if not name.startswith("TINA4_")}
    return subprocess.run(
        [str(SIDECAR_BIN), *args],
        env={**clean, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
