"""The configuration reference, rendered from the settings classes themselves.

    python -m tina4_sidecar.config.reference                        # Markdown on stdout
    python -m tina4_sidecar.config.reference --output docs/configuration.md
    python -m tina4_sidecar.config.reference --check docs/configuration.md

Every field of :class:`CacheSettings`, :class:`QueryCacheSettings` and :class:`SidecarSettings`
becomes one row: its environment variable, its default, the values it takes (type and
constraints) and its ``Field`` description. A setting added to one of the classes appears here
without further work; ``docs/configuration.md`` is this module's output, and a test fails when
the file is out of date.

Defaults come from the field definitions, never from the environment or a ``.env`` file, so the
output is the same on every machine.
"""

from __future__ import annotations

import argparse
import enum
import json
import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import annotated_types
from pydantic import AliasChoices, BaseModel, SecretBytes, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode

from tina4_sidecar.config.cache import CacheSettings
from tina4_sidecar.config.query_cache import QueryCacheSettings
from tina4_sidecar.config.sidecar import SidecarSettings

COMMAND = "python -m tina4_sidecar.config.reference"


@dataclass(frozen=True)
class Group:
    """One settings class, rendered as one section."""

    title: str
    settings: type[BaseSettings]
    read_by: str


GROUPS: tuple[Group, ...] = (
    Group(
        "Store and response cache",
        CacheSettings,
        "Read by the sidecar and by the app's client library: both must name the same store "
        "(and namespace) to act as one cache.",
    ),
    Group(
        "Database query cache",
        QueryCacheSettings,
        "Read by the app's client library (`tina4_sidecar.client.Database`); the sidecar does not use them.",
    ),
    Group("Sidecar", SidecarSettings, "Read by the sidecar (`tina4-sidecar serve` and the other commands)."),
)


@dataclass(frozen=True)
class Row:
    """One variable of the reference."""

    names: tuple[str, ...]
    """The environment variable(s) that set the field; the first is the one to use."""
    default: str
    values: str
    meaning: str


def env_names(settings: type[BaseSettings], field_name: str, field: FieldInfo) -> tuple[str, ...]:
    """The environment variables that pydantic-settings reads for ``field_name``."""
    alias = field.validation_alias
    if isinstance(alias, str):
        names: tuple[str, ...] = (alias,)
    elif isinstance(alias, AliasChoices):
        names = tuple(choice for choice in alias.choices if isinstance(choice, str))
    elif field.alias is not None:
        names = (field.alias,)
    else:
        names = (str(settings.model_config.get("env_prefix", "")) + field_name,)
    if not settings.model_config.get("case_sensitive", False):
        names = tuple(name.upper() for name in names)
    return names


def rows(settings: type[BaseSettings]) -> list[Row]:
    """One row per field of ``settings``, in the order of the class."""
    return [
        Row(
            names=env_names(settings, name, field),
            default=default_text(field),
            values=values_text(field) + ("; empty = unset" if _empty_is_unset(settings, name) else ""),
            meaning=meaning_text(field),
        )
        for name, field in settings.model_fields.items()
    ]


def _empty_is_unset(settings: type[BaseSettings], name: str) -> bool:
    """True when an empty value gives None: the field's validators say so, not its type.

    The field alone is validated, on an instance built without validation, so neither the
    environment nor a ``.env`` file nor the other fields play a part."""
    if settings.model_fields[name].get_default(call_default_factory=True, validated_data={}) is not None:
        return False
    try:
        probe = settings.__pydantic_validator__.validate_assignment(settings.model_construct(), name, "")
    except ValidationError:
        return False
    return getattr(probe, name, False) is None


# -- defaults ----------------------------------------------------------------------------------------


def default_text(field: FieldInfo) -> str:
    """The default as an operator would write it in the environment; ``unset`` for None."""
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True, validated_data={})
    if value is None:
        return "unset"
    if isinstance(value, SecretStr | SecretBytes):
        return "(secret)"
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        if _comma_separated(field):
            return f"`{','.join(_scalar(item) for item in items)}`" if items else "empty"
        return f"`{json.dumps([_jsonable(item) for item in items])}`"
    text = _scalar(value)
    return f"`{text}`" if text else '`""` (empty)'


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return str(value)


def _jsonable(value: object) -> object:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _comma_separated(field: FieldInfo) -> bool:
    """Lists marked ``NoDecode`` are split on commas by their validator; others are JSON."""
    return any(meta is NoDecode or isinstance(meta, NoDecode) for meta in field.metadata)


# -- values ------------------------------------------------------------------------------------------


def values_text(field: FieldInfo) -> str:
    """What the variable accepts: its type, then its constraints."""
    kind = _kind(_strip_none(field.annotation), field)
    limits = _constraints(field)
    parts = [kind, *limits]
    return ", ".join(part for part in parts if part)


def _strip_none(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        return members[0] if len(members) == 1 else annotation
    return annotation


def _kind(annotation: Any, field: FieldInfo) -> str:
    origin = get_origin(annotation)
    if origin in (list, tuple, set, frozenset):
        return "comma-separated list" if _comma_separated(field) else "JSON list"
    if origin is dict:
        return "JSON object"
    if not isinstance(annotation, type):
        return "text"
    if issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(f"`{member.value}`" for member in annotation)
    if issubclass(annotation, bool):
        return "`true` or `false`"
    if issubclass(annotation, int):
        return "integer"
    if issubclass(annotation, float):
        return "number"
    if issubclass(annotation, SecretStr | SecretBytes):
        return "secret text"
    if issubclass(annotation, Path):
        return "path"
    if issubclass(annotation, BaseModel):
        return "JSON object"
    return "text"


_BOUNDS: tuple[tuple[type[Any], str, str], ...] = (
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Ge, "ge", "≥"),
    (annotated_types.Lt, "lt", "<"),
    (annotated_types.Le, "le", "≤"),
)


def _constraints(field: FieldInfo) -> list[str]:
    out: list[str] = []
    for meta in field.metadata:
        for cls, attr, sign in _BOUNDS:
            if isinstance(meta, cls):
                out.append(f"{sign} {_scalar(getattr(meta, attr))}")
        if isinstance(meta, annotated_types.MinLen):
            out.append(f"at least {meta.min_length} characters")
        if isinstance(meta, annotated_types.MaxLen):
            out.append(f"at most {meta.max_length} characters")
        pattern = getattr(meta, "pattern", None)
        if isinstance(pattern, str):
            out.append(f"matching `{pattern}`")
    return out


# -- meaning -----------------------------------------------------------------------------------------


def meaning_text(field: FieldInfo) -> str:
    text = " ".join((field.description or "").split())
    return text.replace("|", "\\|") or "(no description)"


# -- the document ------------------------------------------------------------------------------------


def render(groups: Sequence[Group] = GROUPS) -> str:
    """The whole reference as Markdown (what ``docs/configuration.md`` holds)."""
    tables = [(group, rows(group.settings)) for group in groups]
    count = sum(len(found) for _, found in tables)
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated from the settings classes in config/ by",
        f"     {COMMAND} --output docs/configuration.md",
        "     Do not edit by hand: change a Field's description there and generate again. -->",
        "",
        f"All {count} settings, read from the environment or from a `.env` file in the working",
        "directory (the environment wins over the file); the command line's flags",
        "(`tina4-sidecar serve --help`) win over both. A bad value stops the sidecar at start-up",
        "with one line naming the variable, and exit status 2.",
        "",
        "- Variable names are case-insensitive. Durations are in seconds.",
        "- Booleans: `true` or `false` (`1`/`0`, `yes`/`no`, `on`/`off` work too).",
        "- *empty = unset*: an empty value counts as not set, and the default applies.",
        "",
        "| Group | Class | Variables |",
        "| --- | --- | --- |",
    ]
    for group, found in tables:
        anchor = _anchor(group.title)
        lines.append(f"| [{group.title}](#{anchor}) | `{group.settings.__name__}` | {len(found)} |")
    for group, found in tables:
        lines += ["", f"## {group.title}", "", _summary(group.settings) + " " + group.read_by, ""]
        lines += ["| Variable | Default | Values | Meaning |", "| --- | --- | --- | --- |"]
        for row in found:
            name = "<br>".join(f"`{name}`" for name in row.names)
            lines.append(f"| {name} | {row.default} | {row.values} | {row.meaning} |")
    return "\n".join(lines) + "\n"


def _summary(settings: type[BaseSettings]) -> str:
    doc = (settings.__doc__ or "").strip()
    first = " ".join(doc.split("\n\n", 1)[0].split())
    return f"`{settings.__module__}.{settings.__name__}`: {first}" if first else f"`{settings.__name__}`."


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, spaces to dashes, punctuation dropped."""
    kept = "".join(ch for ch in title.lower() if ch.isalnum() or ch in " -_")
    return kept.replace(" ", "-")


# -- command line ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=COMMAND, description="Print the configuration reference (Markdown) of tina4-sidecar."
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--output", type=Path, help="write the reference to this file")
    where.add_argument("--check", type=Path, help="exit 1 when this file differs from the reference (for CI)")
    args = parser.parse_args(argv)
    text = render()
    if args.check is not None:
        try:
            current = args.check.read_text(encoding="utf-8")
        except OSError as exc:
            print(f"{COMMAND}: cannot read {args.check}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        if current != text:
            print(
                f"{COMMAND}: {args.check} is out of date; run: {COMMAND} --output {args.check}",
                file=sys.stderr,
            )
            return 1
        return 0
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
