"""Settings of the shared store and the response cache: every ``TINA4_CACHE_*`` variable of the spec."""

from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tina4_sidecar.config.field_types import BackendName, EmptyIsUnset


class Backend(StrEnum):
    """The stores that ``TINA4_CACHE_BACKEND`` can name (spec section 6)."""

    MEMORY = "memory"
    FILE = "file"
    REDIS = "redis"
    VALKEY = "valkey"
    MEMCACHED = "memcached"
    MONGODB = "mongodb"
    DATABASE = "database"


class CacheSettings(BaseSettings):
    """The store that the response cache, the key/value API and the query cache share."""

    model_config = SettingsConfigDict(env_prefix="TINA4_", env_file=".env", extra="ignore", frozen=True)

    cache_backend: Annotated[Backend, BackendName] = Field(Backend.MEMORY, description="Which store to use.")
    cache_url: Annotated[str | None, EmptyIsUnset] = Field(
        None,
        description="Connection URL of a network store: redis://[user:pass@]host:port/db (rediss:// for TLS, "
        "?protocol=3 for RESP3), redis+cluster://host:port[,host:port...] for a Redis Cluster (also "
        "rediss+cluster://, valkey+cluster://), valkey://, memcached://host:port[,host:port...] "
        "(consistent hashing over several servers), mongodb://, or a SQL URL for the database store. "
        "Each store has its own default.",
    )
    cache_username: Annotated[str | None, EmptyIsUnset] = Field(
        None, description="Used only when the URL has none."
    )
    cache_password: Annotated[SecretStr | None, EmptyIsUnset] = Field(
        None, description="Used only when the URL has none."
    )
    cache_ttl: Annotated[int, Field(ge=0)] = Field(
        60, description="Default TTL in seconds of responses and key/value entries; 0 = no expiry."
    )
    cache_max_entries: Annotated[int, Field(ge=1)] = Field(
        1000,
        description="Entries the memory store keeps before evicting the least recently used; the file "
        "store (also as the fallback) evicts the oldest written beyond it, per layer.",
    )
    cache_max_bytes: Annotated[int, Field(ge=1024)] = Field(
        256 * 1024 * 1024,
        description="Bytes of values the memory store keeps before evicting (LRU); the file store's bound "
        "too (file sizes, per layer).",
    )
    cache_dir: Path = Field(Path("data/cache"), description="Directory of the file store.")
    cache_namespace: str = Field(
        "tina4:default",
        description="Key prefix of this application in a shared store; clear() never touches "
        "keys outside it.",
        pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
    )
    cache_timeout: Annotated[float, Field(gt=0, le=60)] = Field(
        1.0, description="Seconds a single store call may take before it counts as an error."
    )
    cache_probe_interval: Annotated[float, Field(gt=0)] = Field(
        5.0,
        description="Seconds between health probes of a failed network store; the file store "
        "stands in until the store answers again.",
    )
    cache_table: str = Field(
        "tina4_cache",
        description="Table of the database store (the chapter's tina4_cache); read once per process.",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
    )
    database_url: Annotated[str | None, EmptyIsUnset] = Field(
        None, description="TINA4_DATABASE_URL: the database store's URL when TINA4_CACHE_URL is unset."
    )

    @field_validator("cache_namespace")
    @classmethod
    def _no_layer_segment(cls, value: str) -> str:
        layers = ("resp", "kv", "query", "meta")  # the store's sub-namespaces
        if any(part in layers for part in value.split(":")):
            raise ValueError(f"must not contain {', '.join(layers)} as a ':'-separated part")
        return value
