"""docs/: the configuration reference is the generator's output, and what the docs name exists.

When ``test_configuration_reference_is_up_to_date`` fails, a setting was added or changed:
run ``python -m tina4_sidecar.config.reference --output docs/configuration.md``.
"""

from __future__ import annotations

import enum
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tests.deploy.deploy_files import REPO
from tina4_sidecar.config.reference import GROUPS, Group, env_names, render
from tina4_sidecar.config.rules import RuleSet
from tina4_sidecar.proxy import deliver, pipeline
from tina4_sidecar.proxy.http import cacheability
from tina4_sidecar.proxy.origin import fetch
from tina4_sidecar.store.contract import Store

CONFIGURATION = REPO / "docs" / "configuration.md"
ARCHITECTURE = REPO / "docs" / "architecture.md"
REGENERATE = "python -m tina4_sidecar.config.reference --output docs/configuration.md"


def test_configuration_reference_is_up_to_date() -> None:
    assert CONFIGURATION.read_text(encoding="utf-8") == render(), f"out of date: run {REGENERATE}"


def test_reference_command_ignores_the_environment(tmp_path: Path) -> None:
    """The module's command prints the same reference whatever TINA4_* and .env say."""
    (tmp_path / ".env").write_text("TINA4_SIDECAR_LISTEN=garbage\n")
    env = {**os.environ, "TINA4_CACHE_TTL": "999", "TINA4_CACHE_BACKEND": "nonsense"}
    argv = [sys.executable, "-m", "tina4_sidecar.config.reference"]

    printed = subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False
    )
    checked = subprocess.run(
        [*argv, "--check", str(CONFIGURATION)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )

    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == render()
    assert checked.returncode == 0, checked.stderr


def test_reference_check_reports_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text(render().replace("TINA4_CACHE_TTL", "TINA4_CACHE_TLL"))
    argv = [sys.executable, "-m", "tina4_sidecar.config.reference", "--check", str(stale)]

    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)

    assert done.returncode == 1
    assert "out of date" in done.stderr


def test_every_setting_of_the_three_classes_is_documented() -> None:
    text = CONFIGURATION.read_text(encoding="utf-8")
    for group in GROUPS:
        for name, field in group.settings.model_fields.items():
            for variable in env_names(group.settings, name, field):
                assert f"| `{variable}`" in text, variable
    assert {group.settings.__name__ for group in GROUPS} == {
        "CacheSettings",
        "QueryCacheSettings",
        "SidecarSettings",
    }


class Colour(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


class Sample(BaseSettings):
    """Settings that exercise every kind of row.

    Only the first paragraph is the summary."""

    model_config = SettingsConfigDict(env_prefix="SAMPLE_", env_file=None)

    colour: Colour = Field(Colour.RED, description="An enum | with a pipe.")
    names: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["a", "b*"], description="Split.")
    numbers: list[int] = Field(default_factory=lambda: [1, 2], description="JSON.")
    ratio: Annotated[float, Field(gt=0, le=1)] = Field(0.5, description="A ratio.")
    whole: float = Field(30.0, description="Shown without .0")
    flag: bool = Field(False, description="")
    secret: SecretStr | None = Field(None, description="Secret.")
    optional: str | None = Field(None, description="Empty is unset.")
    path: Path = Field(Path("data/x"), description="A path.")
    pattern: str = Field("x", pattern=r"^[a-z]+$", description="Patterned.")
    aliased: str = Field("v", validation_alias=AliasChoices("SAMPLE_NEW", "SAMPLE_OLD"), description="Two.")
    required: int = Field(description="No default.")

    @field_validator("optional", mode="before")
    @classmethod
    def _empty(cls, value: object) -> object:
        return None if value == "" else value


def test_reference_renders_each_kind_of_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAMPLE_RATIO", "not a number")  # the environment must not matter
    text = render([Group("Sample", Sample, "For the test.")])
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| `")}

    assert "All 12 settings" in text
    assert "Settings that exercise every kind of row. For the test." in text
    assert "Only the first paragraph" not in text
    assert "one of `red`, `blue`" in rows["`SAMPLE_COLOUR`"]
    assert "An enum \\| with a pipe." in rows["`SAMPLE_COLOUR`"]
    assert "| `a,b*` | comma-separated list |" in rows["`SAMPLE_NAMES`"]
    assert "| `[1, 2]` | JSON list |" in rows["`SAMPLE_NUMBERS`"]
    assert "| `0.5` | number, > 0, ≤ 1 |" in rows["`SAMPLE_RATIO`"]
    assert "| `30` | number |" in rows["`SAMPLE_WHOLE`"]
    assert "| `false` | `true` or `false` | (no description) |" in rows["`SAMPLE_FLAG`"]
    assert "| unset | secret text |" in rows["`SAMPLE_SECRET`"]
    assert "| unset | text; empty = unset |" in rows["`SAMPLE_OPTIONAL`"]
    assert "| `data/x` | path |" in rows["`SAMPLE_PATH`"]
    assert "matching `^[a-z]+$`" in rows["`SAMPLE_PATTERN`"]
    assert rows["`SAMPLE_NEW`<br>`SAMPLE_OLD`"].endswith("| `v` | text | Two. |")
    assert "| required | integer |" in rows["`SAMPLE_REQUIRED`"]


# -- architecture.md ---------------------------------------------------------------------------------


def test_architecture_names_only_files_that_exist() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    paths = set(re.findall(r"\b((?:proxy|client|config|store|examples|tests)/[\w/.-]+\.(?:py|yml))\b", text))

    assert len(paths) > 20
    missing = sorted(path for path in paths if not (REPO / path).exists())
    assert not missing, missing


def test_architecture_names_only_steps_that_exist() -> None:
    """Every function the request diagram and the step table name is still there."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    modules = {"pipeline": pipeline, "deliver": deliver, "fetch": fetch}
    qualified = re.findall(r"\b(pipeline|deliver|fetch)\.(?!py\b)(\w+)", text)
    diagram = text.split("## 2.", 1)[1].split("```")[1]
    snake = set(re.findall(r"\b[a-z]+(?:_[a-z]+)+\b", diagram))
    elsewhere = (cacheability, Store, RuleSet)

    assert {"receive", "fetch_and_stream", "ClientSink", "make_entry"} <= {name for _, name in qualified}
    assert "`proxy/lookup.py`" in text  # the lookup step has a module of its own
    missing = [f"{module}.{name}" for module, name in qualified if not hasattr(modules[module], name)]
    missing += sorted(
        name for name in snake if not any(hasattr(place, name) for place in (*modules.values(), *elsewhere))
    )
    assert not missing, missing


def test_readme_links_to_the_docs() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")

    for target in ("docs/configuration.md", "docs/architecture.md"):
        assert f"]({target})" in readme
        assert (REPO / target).is_file()
