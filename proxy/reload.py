"""SIGHUP, as nginx does it: read the settings and the rules file again, apply what can change
while the sidecar runs, re-fetch the app's manifest, and log what changed.

The settings come from the same places as at start (environment, ``.env``, the command line's
flags), so in practice a reload applies an edited ``.env`` or rules file. What can change at
run time is ``RUNTIME``; a change of any other setting (the listen address, the app's URL, the
store, the workers) is logged with the advice to restart, and not applied. A reload whose
settings or rules file are invalid changes nothing and says why in one line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from tina4_sidecar.config import ConfigError, SidecarSettings
from tina4_sidecar.config.rules import ManifestError, RuleSet, load_rules_file
from tina4_sidecar.proxy.admin.auth import check_token_strength
from tina4_sidecar.proxy.logs import setup_logging
from tina4_sidecar.proxy.sidecar import Sidecar

log = logging.getLogger("tina4_sidecar")

RUNTIME = frozenset(
    {
        "log_level",
        "log_format",
        "access_log",
        "rules_file",
        "manifest_refresh",
        "stale_while_revalidate",
        "stale_if_error",
        "ttl_jitter",
        "early_refresh_beta",
        "drain_timeout",
        "ready_requires_app",
        "admin_token",
    }
)
"""Settings read from ``sidecar.settings`` on each use, so a new value applies at once."""

SECRET = frozenset({"admin_token"})


def env_name(field: str) -> str:
    return f"TINA4_SIDECAR_{field.upper()}"


async def reload(sidecar: Sidecar, load: Callable[[], SidecarSettings]) -> bool:
    """Apply a fresh reading of the settings; False (nothing changed) when it is invalid."""
    try:
        fresh = load()
        check_token_strength(fresh.admin_token)
        static = _static_rules(fresh)
    except ConfigError as exc:
        log.error("reload (SIGHUP) refused, nothing changed: %s", exc)
        return False
    old = sidecar.settings
    changed = [name for name in type(old).model_fields if getattr(old, name) != getattr(fresh, name)]
    applied = [name for name in changed if name in RUNTIME]
    sidecar.settings = old.model_copy(update={name: getattr(fresh, name) for name in RUNTIME})
    settings = sidecar.settings
    setup_logging(settings.log_level, settings.log_format)
    sidecar.access.json = settings.log_format == "json"
    sidecar.access.enabled = settings.access_log and settings.log_level in ("debug", "info")
    sidecar.manifest.reconfigure(static, settings.manifest_refresh)
    manifest_ok = await sidecar.manifest.refresh()
    described = [_change(name, getattr(old, name), getattr(fresh, name)) for name in applied]
    log.info(
        "reloaded (SIGHUP): %s; rules file: %s; manifest: %s; %d rules in force",
        ", ".join(described) if described else "no setting changed",
        f"{len(static)} rules" if static is not None else "none",
        "fetched" if manifest_ok else f"not fetched ({sidecar.manifest.last_error}), last good rules kept",
        len(sidecar.rules),
    )
    for name in changed:
        if name not in RUNTIME:
            log.warning("%s changed: restart the sidecar to apply it (a reload does not)", env_name(name))
    return True


def _static_rules(settings: SidecarSettings) -> RuleSet | None:
    if settings.rules_file is None:
        return None
    try:
        return load_rules_file(settings.rules_file)
    except ManifestError as exc:
        raise ConfigError(f"TINA4_SIDECAR_RULES_FILE: {exc}") from None


def _change(name: str, before: object, after: object) -> str:
    if name in SECRET:
        return f"{env_name(name)} changed"
    return f"{env_name(name)} {before!s} -> {after!s}"
