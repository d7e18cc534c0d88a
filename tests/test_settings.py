"""Settings: the spec's variables and defaults, and one clear line for a bad value."""

import subprocess
import sys
from pathlib import Path

import pytest

from tina4_sidecar.config import (
    Backend,
    CacheSettings,
    ConfigError,
    QueryCacheSettings,
    SidecarSettings,
    load_settings,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("TINA4_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_spec_defaults() -> None:
    cache = load_settings(CacheSettings)
    assert cache.cache_backend is Backend.MEMORY
    assert cache.cache_ttl == 60
    assert cache.cache_max_entries == 1000
    assert cache.cache_dir == Path("data/cache")
    assert cache.cache_url is None
    query = load_settings(QueryCacheSettings)
    assert (query.auto_caching, query.auto_caching_ttl) == (True, 5)
    assert (query.db_cache, query.db_cache_ttl, query.db_cache_backend) == (False, 30, Backend.MEMORY)
    sidecar = load_settings(SidecarSettings)
    assert sidecar.listen == "0.0.0.0:7145"
    assert sidecar.listen_address == ("0.0.0.0", 7145)
    assert sidecar.manifest_path == "/__tina4/cache-manifest"


def test_env_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINA4_CACHE_BACKEND", "Redis")
    monkeypatch.setenv("TINA4_CACHE_URL", "redis://:pw@cache:6379/2")
    monkeypatch.setenv("TINA4_CACHE_TTL", "0")
    monkeypatch.setenv("TINA4_SIDECAR_UPSTREAM", "http://app:7146/")
    monkeypatch.setenv("TINA4_SIDECAR_IGNORED_QUERY_PARAMS", "utm_*, ref")
    cache = load_settings(CacheSettings)
    assert cache.cache_backend is Backend.REDIS
    assert cache.cache_url == "redis://:pw@cache:6379/2"
    assert cache.cache_ttl == 0
    sidecar = load_settings(SidecarSettings)
    assert sidecar.upstream == "http://app:7146"
    assert sidecar.ignored_query_params == ["utm_*", "ref"]


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TINA4_CACHE_TTL=42\nTINA4_SIDECAR_LISTEN=127.0.0.1:9000\n")
    assert load_settings(CacheSettings).cache_ttl == 42
    assert load_settings(SidecarSettings).listen_address == ("127.0.0.1", 9000)


def test_flags_override_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINA4_SIDECAR_LISTEN", "127.0.0.1:1")
    assert load_settings(SidecarSettings, listen="127.0.0.1:2", upstream=None).listen == "127.0.0.1:2"


@pytest.mark.parametrize(
    ("cls", "name", "value"),
    [
        (CacheSettings, "TINA4_CACHE_TTL", "soon"),
        (CacheSettings, "TINA4_CACHE_TTL", "-1"),
        (CacheSettings, "TINA4_CACHE_BACKEND", "postgres"),
        (CacheSettings, "TINA4_CACHE_MAX_ENTRIES", "0"),
        (QueryCacheSettings, "TINA4_DB_CACHE", "maybe"),
        (SidecarSettings, "TINA4_SIDECAR_LISTEN", "7145"),
        (SidecarSettings, "TINA4_SIDECAR_LISTEN", "host:99999"),
        (SidecarSettings, "TINA4_SIDECAR_UPSTREAM", "app:7146"),
        (SidecarSettings, "TINA4_SIDECAR_MANIFEST_PATH", "no-slash"),
        (SidecarSettings, "TINA4_SIDECAR_LOG_LEVEL", "loud"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, cls: type, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings(cls)
    message = str(info.value)
    assert message.startswith(f"{name}: ")
    assert "\n" not in message


def test_cli_exits_2_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"TINA4_CACHE_TTL": "soon", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "tina4_sidecar.proxy.cli", "serve", "--upstream", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "tina4-sidecar: configuration error: TINA4_CACHE_TTL: "
        "Input should be a valid integer, unable to parse string as an integer (got 'soon')"
    ]
    assert "Traceback" not in result.stderr
