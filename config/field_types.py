"""Input rules several settings share: an empty variable means "unset", backend names ignore case
and take Tina4's aliases."""

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


_BACKEND_ALIASES = {"": "memory", "memcache": "memcached", "mongo": "mongodb", "db": "database"}


def _backend_name(value: object) -> object:
    if not isinstance(value, str):
        return value
    name = value.strip().lower()
    return _BACKEND_ALIASES.get(name, name)


BackendName = BeforeValidator(_backend_name)
"""A store name as Tina4 reads it: any case, ``""`` is memory (the default), and Tina4's aliases
``memcache``, ``mongo`` and ``db`` name memcached, mongodb and database."""
