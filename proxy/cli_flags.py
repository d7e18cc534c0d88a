"""``serve`` flags for every setting, generated from the settings classes.

Each field of ``SidecarSettings`` and ``CacheSettings`` becomes ``--field-name`` (underscores as
dashes), its help the field's description and environment variable; a boolean gets
``--name`` and ``--no-name``. The value goes through the same validation as the variable, so a
bad flag ends with the same one-line error naming the variable. A flag wins over the variable.
A setting added to a class gets its flag without further work (a test checks every field).
"""

from __future__ import annotations

import argparse
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

ALIASES = {"cache_backend": ["--backend"]}
"""Older spellings kept working."""

SECRET_HINT = " Prefer the variable: a command line shows in ps."


def flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def env_name(cls: type[BaseSettings], field: str) -> str:
    return (str(cls.model_config.get("env_prefix", "")) + field).upper()


def add_setting_flags(parser: argparse.ArgumentParser, cls: type[BaseSettings], taken: set[str]) -> None:
    """One flag per field of ``cls`` not in ``taken`` (flags added by hand); adds to ``taken``."""
    for field, info in cls.model_fields.items():
        if field in taken:
            continue
        taken.add(field)
        names = [flag(field), *ALIASES.get(field, [])]
        help_text = _help(cls, field, info)
        if info.annotation is bool:
            parser.add_argument(
                *names,
                dest=f"setting_{field}",
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        else:
            parser.add_argument(
                *names, dest=f"setting_{field}", metavar="VALUE", default=None, help=help_text
            )


def overrides(args: argparse.Namespace, cls: type[BaseSettings]) -> dict[str, Any]:
    """The flags given for ``cls``'s fields (None: not given)."""
    return {field: getattr(args, f"setting_{field}", None) for field in cls.model_fields}


def _help(cls: type[BaseSettings], field: str, info: FieldInfo) -> str:
    description = (info.description or "").replace("%", "%%")
    secret = SECRET_HINT if "token" in field or "password" in field else ""
    return f"{description}{secret} ({env_name(cls, field)})"
