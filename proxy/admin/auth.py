"""The admin token: ``Authorization: Bearer <token>``, compared in constant time.

Both sides are hashed before ``hmac.compare_digest``, so that the comparison does not reveal the
token's length either. A token shorter than ``MIN_ADMIN_TOKEN_LENGTH`` stops the sidecar at start
(``check_token_strength``): the admin API can purge the whole cache.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import Enum

from pydantic import SecretStr

from tina4_sidecar.config import ConfigError
from tina4_sidecar.config.sidecar import MIN_ADMIN_TOKEN_LENGTH


class TokenCheck(Enum):
    OK = "ok"
    MISSING = "missing"
    INVALID = "invalid"


def check_bearer(authorization: str | None, token: SecretStr) -> TokenCheck:
    """Whether an ``Authorization`` header carries ``token`` as a Bearer credential."""
    if not authorization:
        return TokenCheck.MISSING
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return TokenCheck.MISSING
    expected = hashlib.sha256(token.get_secret_value().encode()).digest()
    presented = hashlib.sha256(given.strip().encode()).digest()
    return TokenCheck.OK if hmac.compare_digest(presented, expected) else TokenCheck.INVALID


def check_token_strength(token: SecretStr | None) -> None:
    """Raise ConfigError (without the value) for a token too short to resist guessing."""
    if token is not None and len(token.get_secret_value()) < MIN_ADMIN_TOKEN_LENGTH:
        raise ConfigError(
            f"TINA4_SIDECAR_ADMIN_TOKEN: must be at least {MIN_ADMIN_TOKEN_LENGTH} characters "
            "(generate one with `openssl rand -hex 32`)"
        )
