"""Input rules several settings share: an empty variable means "unset", backend names ignore case."""

from __future__ import annotations

from pydantic import BeforeValidator


def _empty_as_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


def _lowered(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


EmptyIsUnset = BeforeValidator(_empty_as_none)
"""``TINA4_X=`` (empty) behaves as if the variable were not set."""

CaseInsensitive = BeforeValidator(_lowered)
"""``Redis`` and ``redis `` both name the redis store."""
