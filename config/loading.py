"""Loading settings with errors an operator can act on: one line that names the variable."""

from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings


class ConfigError(ValueError):
    """A bad configuration value; the message is one line naming the variable.

    A ``ValueError``, as Tina4 raises for a bad ``TINA4_CACHE_BACKEND``: code written against
    Tina4 that catches ``ValueError`` catches ours too."""


def load_settings[S: BaseSettings](cls: type[S], **overrides: Any) -> S:
    """Build ``cls`` from env, ``.env`` and ``overrides`` (command-line flags, which win).

    Raises ConfigError whose message names the offending environment variable.
    """
    clean = {key: value for key, value in overrides.items() if value is not None}
    try:
        return cls(**clean)
    except ValidationError as exc:
        raise ConfigError(_describe(cls, exc)) from None


def _describe(cls: type[BaseSettings], exc: ValidationError) -> str:
    prefix = str(cls.model_config.get("env_prefix", ""))
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "?"
        name = (prefix + field).upper()
        message = str(error["msg"]).removeprefix("Value error, ")
        given = error.get("input")
        shown = (
            f" (got {given!r})" if isinstance(given, str | int | float) and repr(given) not in message else ""
        )
        problems.append(f"{name}: {message}{shown}")
    return "; ".join(problems)
