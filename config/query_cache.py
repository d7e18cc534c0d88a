"""Settings of the database query cache (spec sections 2 and 3)."""

from typing import Annotated

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tina4_sidecar.config.cache import Backend
from tina4_sidecar.config.field_types import BackendName, EmptyIsUnset


class QueryCacheSettings(BaseSettings):
    """Request-scoped and persistent query caching, with the chapter's defaults."""

    model_config = SettingsConfigDict(env_prefix="TINA4_", env_file=".env", extra="ignore", frozen=True)

    auto_caching: bool = Field(
        True, description="Request-scoped query cache (on by default, as the chapter says)."
    )
    auto_caching_ttl: Annotated[int, Field(ge=0)] = Field(
        5, description="Safety TTL of the request-scoped cache for code outside a request."
    )
    db_cache: bool = Field(False, description="Persistent cross-request query cache (opt-in).")
    db_cache_ttl: Annotated[int, Field(ge=0)] = Field(
        30, description="TTL in seconds of persistent query cache entries."
    )
    db_cache_backend: Annotated[Backend, BackendName] = Field(
        Backend.MEMORY, description="Store of the persistent query cache."
    )
    db_cache_url: Annotated[str | None, EmptyIsUnset] = Field(
        None, description="URL of that store; falls back to TINA4_CACHE_URL."
    )
    db_cache_push: bool = Field(
        False,
        description="On Redis/Valkey: trust the app's near-cache copies of query results until the "
        "store announces a change of their tables (pub/sub), so a HIT costs no round trip; "
        "another process's write is seen after the pub/sub delivery time. Off: every HIT reads "
        "the current tokens (one round trip), exact.",
    )
