"""The Dockerfiles and docker-compose.yml, checked without a Docker engine.

Compose's own binary validates the compose file, hadolint lints both Dockerfiles, and the
values that must agree across files are compared with their source: the sidecar's settings
defaults (listen port, admin prefix, manifest path), the console script, the demo app's
command, the healthchecks, and the build context that .dockerignore leaves.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.deploy_files import (
    APP_DOCKERFILE,
    REPO,
    SIDECAR_DOCKERFILE,
    Stage,
    copy_sources,
    dockerignore_patterns,
    dockerignored,
    load_compose,
    option,
    parse_dockerfile,
    run_compose,
    service,
    tool,
)
from tina4_sidecar.config import CacheSettings, QueryCacheSettings, SidecarSettings, load_settings
from tina4_sidecar.config.reference import GROUPS, env_names
from tina4_sidecar.config.sidecar import split_host_port
from tina4_sidecar.proxy.admin.api import ENDPOINTS

DEFAULT_LISTEN = str(SidecarSettings.model_fields["listen"].default)
DEFAULT_PORT = split_host_port(DEFAULT_LISTEN)[1]
DEFAULT_ADMIN_PREFIX = str(SidecarSettings.model_fields["admin_prefix"].default)
DEFAULT_MANIFEST_PATH = str(SidecarSettings.model_fields["manifest_path"].default)
DOCKERFILES = [SIDECAR_DOCKERFILE, APP_DOCKERFILE]
PINNED_BASE = parse_dockerfile(SIDECAR_DOCKERFILE)[0].base


def relative(path: Path) -> str:
    return str(path.relative_to(REPO))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def sidecar_image() -> list[Stage]:
    return parse_dockerfile(SIDECAR_DOCKERFILE)


@pytest.fixture(scope="module")
def app_image() -> list[Stage]:
    return parse_dockerfile(APP_DOCKERFILE)


# -- the tools ---------------------------------------------------------------------------------------


def test_compose_config_is_valid() -> None:
    done = run_compose("config", "--quiet")

    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr  # no warnings either (obsolete keys, unset variables)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=relative)
def test_hadolint_passes(dockerfile: Path) -> None:
    argv = [tool("hadolint"), "--no-color", "--failure-threshold", "info", str(dockerfile)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO, check=False)

    assert done.returncode == 0, done.stdout + done.stderr


# -- the sidecar's image -----------------------------------------------------------------------------


def test_sidecar_image_installs_the_lock_without_extras(sidecar_image: list[Stage]) -> None:
    builder = sidecar_image[0]
    syncs = uv_syncs(builder)

    assert syncs[-1] == ["uv", "sync", "--locked", "--no-dev", "--no-editable", "--no-cache"]
    assert not any("--extra" in sync for sync in syncs)  # no Tina4, no test tools in the sidecar


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=relative)
def test_images_build_from_the_lock_on_a_pinned_base(dockerfile: Path) -> None:
    stages = parse_dockerfile(dockerfile)
    builder, final = stages[0], stages[-1]
    environment = builder.env()["UV_PROJECT_ENVIRONMENT"]

    assert len(stages) >= 2
    assert {stage.base for stage in stages} == {PINNED_BASE}
    assert re.fullmatch(r"python:3\.12\.\d+-slim-bookworm", PINNED_BASE)  # a patch release, not 3.12
    installs = [ins.args for ins in builder.all("RUN") if "pip install" in ins.args]
    assert installs == [f"pip install --no-cache-dir uv=={locked_uv_version()}"]  # the pin of .ci/uv.sh
    syncs = uv_syncs(builder)
    assert all("--frozen" in sync or "--locked" in sync for sync in syncs)  # never a fresh resolution
    assert "--locked" in syncs[-1]  # and the last one fails on a lock that lags pyproject.toml
    assert all("--no-editable" in sync and "--no-dev" in sync for sync in syncs)
    copied = [ins.args for ins in final.all("COPY") if ins.args.startswith("--from=builder")]
    assert copied == [f"--from=builder {environment} {environment}"]
    assert final.env()["PATH"].startswith(f"{environment}/bin:")
    runs = " ".join(ins.args for ins in final.all("RUN"))
    assert not any(word in runs for word in ("pip", "uv ", "apt-get"))  # nothing resolved at run time
    assert final.last("USER").args.split(":")[0] not in ("root", "0")


def test_the_wheel_is_built_by_the_locked_setuptools() -> None:
    """The build backend is pinned for the images' (isolated) builds to the lock's setuptools."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    constraint = pyproject["tool"]["uv"]["build-constraint-dependencies"]

    assert constraint == [f"setuptools=={locked_version('setuptools')}"]


def uv_syncs(stage: Stage) -> list[list[str]]:
    return [shlex.split(ins.args) for ins in stage.all("RUN") if ins.args.startswith("uv sync")]


def locked_version(name: str) -> str:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    versions = [package["version"] for package in lock["package"] if package["name"] == name]
    assert len(versions) == 1, versions
    return str(versions[0])


def locked_uv_version() -> str:
    match = re.search(r"^UV_VERSION=(\S+)$", (REPO / ".ci" / "uv.sh").read_text(), re.M)
    assert match
    return match.group(1)


def test_sidecar_image_listens_where_the_settings_say(sidecar_image: list[Stage]) -> None:
    final = sidecar_image[-1]
    env = final.env()

    assert final.exposed() == [DEFAULT_PORT]
    assert env["TINA4_SIDECAR_LISTEN"] == f"0.0.0.0:{DEFAULT_PORT}"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"


def test_sidecar_image_runs_the_console_script_as_a_user(sidecar_image: list[Stage]) -> None:
    final = sidecar_image[-1]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]

    assert final.exec_form("ENTRYPOINT") == ["tina4-sidecar"]
    assert "tina4-sidecar" in scripts
    assert final.exec_form("CMD") == ["serve"]
    assert final.last("USER").args.split(":")[0] not in ("root", "0")


def healthcheck_url(stage: Stage, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> str:
    """The URL the image's HEALTHCHECK asks for, in ``env``: its code run with urlopen recorded."""
    command = stage.healthcheck()[1]
    assert command[:2] == ["python", "-c"], command
    asked: list[str] = []

    def urlopen(url: str, timeout: float) -> None:
        asked.append(url)

    for name in list(os.environ):
        if name.startswith("TINA4_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    exec(command[2], {"__name__": "healthcheck"})
    assert len(asked) == 1
    return asked[0]


def test_sidecar_healthcheck_asks_the_readiness_endpoint(
    sidecar_image: list[Stage], monkeypatch: pytest.MonkeyPatch
) -> None:
    final = sidecar_image[-1]
    ready = f"http://127.0.0.1:{DEFAULT_PORT}{DEFAULT_ADMIN_PREFIX}ready"

    assert "ready" in ENDPOINTS
    assert healthcheck_url(final, monkeypatch, {}) == ready
    assert healthcheck_url(final, monkeypatch, final.env()) == ready
    moved = {"TINA4_SIDECAR_LISTEN": "0.0.0.0:9000", "TINA4_SIDECAR_ADMIN_PREFIX": "/ops/"}
    assert healthcheck_url(final, monkeypatch, moved) == "http://127.0.0.1:9000/ops/ready"


# -- the demo app's image ----------------------------------------------------------------------------


def test_app_image_runs_the_asgi_app_under_uvicorn(app_image: list[Stage], compose: dict[str, Any]) -> None:
    final = app_image[-1]
    command = final.exec_form("CMD")
    app_dir = option(command, "--app-dir")
    copies = [ins.args.split() for ins in final.all("COPY")]

    assert command[:2] == ["uvicorn", "asgi:app"]
    assert (REPO / "examples" / "demo_app" / "asgi.py").is_file()
    assert ["examples/demo_app/*.py", app_dir.rstrip("/") + "/"] in copies
    assert final.exposed() == [int(option(command, "--port"))]
    assert service(compose, "app")["command"] == command
    assert final.last("USER").args.split(":")[0] not in ("root", "0")
    assert "--extra demo" in " ".join(ins.args for ins in app_image[0].all("RUN"))  # Tina4 + uvicorn


def test_app_healthcheck_asks_the_manifest(app_image: list[Stage], monkeypatch: pytest.MonkeyPatch) -> None:
    port = int(option(app_image[-1].exec_form("CMD"), "--port"))

    url = healthcheck_url(app_image[-1], monkeypatch, {})

    assert url == f"http://127.0.0.1:{port}{DEFAULT_MANIFEST_PATH}"


# -- the build context -------------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=relative)
def test_build_context_keeps_what_the_images_copy(dockerfile: Path) -> None:
    patterns = dockerignore_patterns()
    sources = [source for stage in parse_dockerfile(dockerfile) for source in copy_sources(stage)]

    assert sources
    for source in sources:
        matches = list(REPO.glob(source.rstrip("/")))
        assert matches, f"{source} is not in the repository"
        for path in matches:
            assert not dockerignored(relative(path), patterns), f".dockerignore leaves out {source}"


@pytest.mark.parametrize("local", [".venv", ".git", "build", "tests", ".env", "proxy/__pycache__"])
def test_build_context_leaves_local_state_out(local: str) -> None:
    assert dockerignored(local, dockerignore_patterns())


def test_dockerignore_matching() -> None:
    patterns = ["**/__pycache__", "docs", "examples/**/data", "*.md", "!README.md"]

    assert dockerignored("store/backends/__pycache__/x.pyc", patterns)
    assert dockerignored("docs/architecture.md", patterns)
    assert dockerignored("examples/demo_app/data/tina4.db", patterns)
    assert dockerignored("CHANGES.md", patterns)
    assert not dockerignored("README.md", patterns)
    assert not dockerignored("store/backends/redis.py", patterns)


# -- the compose file --------------------------------------------------------------------------------


def test_compose_services_start_in_order_of_health(compose: dict[str, Any]) -> None:
    services = compose["services"]

    assert set(services) == {"redis", "app", "sidecar"}
    assert services["redis"]["image"] == "redis:7-alpine"
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert services["app"]["depends_on"] == {"redis": {"condition": "service_healthy", "required": True}}
    assert services["sidecar"]["depends_on"] == {
        "redis": {"condition": "service_healthy", "required": True},
        "app": {"condition": "service_healthy", "required": True},
    }
    for name, found in services.items():
        assert found["healthcheck"]["test"][0] == "CMD", name


def test_compose_sidecar_is_the_image_in_front_of_the_app(
    compose: dict[str, Any], sidecar_image: list[Stage], app_image: list[Stage]
) -> None:
    sidecar, app = service(compose, "sidecar"), service(compose, "app")
    app_port = option(app["command"], "--port")
    env = sidecar["environment"]

    assert Path(sidecar["build"]["context"]) == REPO
    assert sidecar["build"]["dockerfile"] == "Dockerfile"
    assert Path(app["build"]["context"]) == REPO
    assert app["build"]["dockerfile"] == relative(APP_DOCKERFILE)
    assert env["TINA4_CACHE_BACKEND"] == "redis"
    assert env["TINA4_CACHE_URL"] == "redis://redis:6379/0"
    assert env["TINA4_SIDECAR_UPSTREAM"] == f"http://app:{app_port}"
    assert [(port["target"], port["published"]) for port in sidecar["ports"]] == [
        (DEFAULT_PORT, str(DEFAULT_PORT))
    ]
    assert "ports" not in app  # only the sidecar is published
    assert sidecar["healthcheck"]["test"] == ["CMD", *sidecar_image[-1].healthcheck()[1]]
    assert app["healthcheck"]["test"] == ["CMD", *app_image[-1].healthcheck()[1]]


def test_compose_app_shares_the_sidecars_store(compose: dict[str, Any]) -> None:
    sidecar, app = service(compose, "sidecar"), service(compose, "app")

    for name in ("TINA4_CACHE_BACKEND", "TINA4_CACHE_URL"):
        assert app["environment"][name] == sidecar["environment"][name]
    assert len(app["environment"]["TINA4_SECRET"]) >= 32  # Tina4 exits without it outside debug


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No TINA4_* of the caller and no .env file: only what a test sets."""
    for name in list(os.environ):
        if name.startswith("TINA4_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_compose_sidecar_environment_is_valid_and_known(
    compose: dict[str, Any], clean_env: pytest.MonkeyPatch
) -> None:
    env = {name: str(value) for name, value in service(compose, "sidecar")["environment"].items()}
    known = {
        name
        for group in GROUPS
        for field_name, field in group.settings.model_fields.items()
        for name in env_names(group.settings, field_name, field)
    }

    assert {name for name in env if name.startswith("TINA4_")} <= known  # a typo would be ignored
    for name, value in env.items():
        clean_env.setenv(name, value)
    settings = load_settings(SidecarSettings)  # raises ConfigError for a bad value
    assert settings.listen_address == ("0.0.0.0", DEFAULT_PORT)
    assert settings.admin_token is None  # empty = unset: the admin API stays closed by default
    assert load_settings(CacheSettings).cache_backend == "redis"
    load_settings(QueryCacheSettings)
