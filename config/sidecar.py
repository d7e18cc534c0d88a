"""The sidecar's own settings (``TINA4_SIDECAR_*``): where to listen, the app, the manifest, admin."""

import ipaddress
import re
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from tina4_sidecar.config.field_types import EmptyIsUnset
from tina4_sidecar.config.operations import OperationsSettings

MIN_ADMIN_TOKEN_LENGTH = 16
"""The admin API can purge the whole cache: a guessable token is refused when the sidecar starts
(there, not here: a validation error here would print the rejected value, the secret itself)."""

_ADMIN_PREFIX = re.compile(r"^/(?:[A-Za-z0-9._~-]+/)+$")


def split_host_port(value: str) -> tuple[str, int]:
    """``"0.0.0.0:7145"`` or ``"[::1]:7145"`` -> (host, port); ValueError when malformed."""
    host, sep, port_text = value.strip().rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range 1-65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"expected an IPv6 address between the brackets, got {value!r}") from None
    elif ":" in host:
        raise ValueError(f"write an IPv6 address in brackets, like [::1]:{port}, got {value!r}")
    return host, port


def join_host_port(host: str, port: int) -> str:
    """``("::1", 7145)`` -> ``"[::1]:7145"``; ``("0.0.0.0", 7145)`` -> ``"0.0.0.0:7145"``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class SidecarSettings(OperationsSettings):
    """Everything the proxy needs beyond the store."""

    model_config = SettingsConfigDict(
        env_prefix="TINA4_SIDECAR_", env_file=".env", extra="ignore", frozen=True
    )

    upstream: str = Field("http://127.0.0.1:7146", description="URL of the Tina4 app.")
    listen: str = Field("0.0.0.0:7145", description="HOST:PORT the sidecar listens on.")
    manifest_path: str = Field("/__tina4/cache-manifest", description="Path of the app's cache manifest.")
    manifest_refresh: Annotated[float, Field(gt=0, le=86400)] = Field(
        30.0, description="Seconds between manifest refreshes (conditional GETs)."
    )
    rules_file: Annotated[Path | None, EmptyIsUnset] = Field(
        None, description="Optional JSON file of static rules, checked before the manifest's."
    )
    connect_timeout: Annotated[float, Field(gt=0, le=300)] = Field(
        5.0, description="Seconds to connect to the app before answering 502."
    )
    upstream_timeout: Annotated[float, Field(gt=0, le=3600)] = Field(
        60.0, description="Seconds to wait for the app's response headers before answering 504."
    )
    upstream_keepalive: Annotated[float, Field(ge=0, le=3600)] = Field(
        4.0,
        description="Seconds an idle connection to the app is kept for the next request (0: none are "
        "kept). Keep it below the app server's own keep-alive timeout (uvicorn's and Node's are 5 s), so "
        "the sidecar never reuses a connection the app is closing, and an app that shuts down is not held "
        "up by the sidecar's idle connections (Tina4's built-in server waits for them). All idle ones close "
        "at once when the app is seen closing: a refused connect, or an answer with Connection: close.",
    )
    ignored_query_params: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["utm_*", "fbclid", "gclid"],
        description="Comma-separated query parameter names (shell wildcards) left out of cache keys.",
    )
    max_object_bytes: Annotated[int, Field(ge=0)] = Field(
        10 * 1024 * 1024,
        description="Responses larger than this are streamed through and not stored.",
    )
    tag_header: str = Field(
        "X-Cache-Tags",
        description="Response header in which the app names cache tags (comma or space separated); "
        "the sidecar removes it before the client sees it.",
        pattern=r"^[A-Za-z0-9-]{1,64}$",
    )
    stale_while_revalidate: Annotated[int, Field(ge=0)] = Field(
        0,
        description="Seconds after expiry during which an entry is served at once while one background "
        "refresh runs (RFC 5861). Off by default: the spec says the next request after the TTL runs the "
        "handler. A rule or the response's Cache-Control may set it per route.",
    )
    stale_if_error: Annotated[int, Field(ge=0)] = Field(
        300,
        description="Seconds after expiry during which an entry is served when the app is unreachable, "
        "times out or answers 5xx (RFC 5861). A rule or the response's Cache-Control may set it.",
    )
    ttl_jitter: Annotated[float, Field(ge=0, lt=1)] = Field(
        0.0,
        description="Fraction of the TTL taken off at random per stored entry, so entries stored together "
        "expire apart (0.1 = up to 10%). Off by default: X-Cache-TTL then shows the rule's TTL exactly.",
    )
    early_refresh_beta: Annotated[float, Field(ge=0, le=100)] = Field(
        1.0,
        description="Probabilistic early refresh (XFetch) of hot entries before expiry; 0 turns it off.",
    )
    hit_for_miss: Annotated[float, Field(ge=0, le=3600)] = Field(
        5.0,
        description="Seconds an uncacheable answer stops later requests for it from waiting on one fetch.",
    )
    lock_seconds: Annotated[float, Field(gt=0, le=600)] = Field(
        10.0,
        description="Lifetime of the store lock that lets one sidecar of several fetch a cold key.",
    )
    workers: Annotated[int, Field(ge=1, le=256)] = Field(
        1,
        description="Worker processes sharing the listen port (SO_REUSEPORT); use a shared store "
        "(redis, valkey, memcached, ...) with more than one, or each worker caches on its own.",
    )
    fast_path: bool = Field(
        True,
        description="Serve fresh HITs (prebuilt bytes) and forward plain GETs of uncached routes (pooled raw "
        "connections) from a protocol-level fast path with llhttp parsing; everything else always takes "
        "the aiohttp path.",
    )
    near_cache_entries: Annotated[int, Field(ge=0)] = Field(
        10_000, description="Responses the in-process near cache keeps as prebuilt bytes (0 turns it off)."
    )
    near_cache_bytes: Annotated[int, Field(ge=0)] = Field(
        64 * 1024 * 1024, description="Bytes the near cache keeps."
    )
    near_cache_recheck: Annotated[float, Field(ge=0, le=3600)] = Field(
        1.0,
        description="With a shared store and no push invalidation (memcached, PostgreSQL, SQLite, MongoDB, "
        "file; Redis or Valkey while not subscribed): seconds a near-cache HIT is served without asking the "
        "store again, the bound within which another process's purge is seen (purges through this sidecar "
        "count at once). The default 1 s saves the store round trip on repeated HITs; 0 asks on every HIT, "
        "so purges by any process take effect at once. The memory store needs no recheck.",
    )
    near_cache_push: bool = Field(
        True,
        description="With a Redis or Valkey store (cluster too): follow the namespace's invalidation channel "
        "(pub/sub) and, while subscribed, serve near-cache HITs without asking the store until the entry "
        "expires or a purge, store or delete announced by any process drops it. A purge is seen within the "
        "pub/sub delivery time, or at worst 0.5 s + TINA4_CACHE_TIMEOUT if the subscription dies silently. "
        "Off: TINA4_SIDECAR_NEAR_CACHE_RECHECK applies.",
    )
    honor_cache_control: bool = Field(
        False,
        description="Standards mode: cache as an RFC 9111 shared cache would. Routes without a ResponseCache "
        "rule are cached by the response's own s-maxage, max-age, Expires or heuristic freshness; a rule's "
        "TTL is shortened (never lengthened) by the response's, and no-store, private and no-cache are "
        "honoured on every route; clients' Cache-Control request directives are honoured. Off: only the "
        "rules cache, for their TTL (Tina4's ResponseCache semantics).",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated addresses or CIDR networks of proxies in front of the sidecar (a TLS "
        "load balancer) whose X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host and Forwarded headers "
        "are kept and extended. From any other peer they are overwritten with what the sidecar saw.",
    )
    max_request_line: Annotated[int, Field(ge=256, le=1024 * 1024)] = Field(
        8192,
        description="Longest request line (method, target, version) in bytes; longer ones get 414. "
        "Request targets are part of cache keys, so this also bounds what one key can cost.",
    )
    max_header_bytes: Annotated[int, Field(ge=1024, le=1024 * 1024)] = Field(
        16384,
        description="Largest request head (request line and header fields) in bytes; larger ones get 431 "
        "(nginx allows 4 buffers of 8k, Apache 100 fields of 8k each).",
    )
    header_timeout: Annotated[float, Field(gt=0, le=3600)] = Field(
        60.0,
        description="Seconds a client has to send a whole request head once it started one; a connection "
        "that sends it slower is closed (nginx's client_header_timeout).",
    )
    keepalive_timeout: Annotated[float, Field(gt=0, le=3600)] = Field(
        75.0, description="Seconds an idle client connection is kept open between requests."
    )
    max_connections: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        4096,
        description="Client connections served at once; beyond it new connections are closed at once, "
        "with a warning (once a minute) and tina4_sidecar_connections_refused_total counting them. Keep it "
        "below the process's open-file limit, which the store and the app's connections share.",
    )
    cache_status_name: str = Field(
        "tina4-sidecar",
        description="Cache name in the RFC 9211 Cache-Status header.",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
    )
    log_level: str = Field("info", description="debug, info, warning or error.")
    admin_prefix: str = Field(
        "/__sidecar/",
        description="Path prefix of the admin API (stats, metrics, health, ready, purge); "
        "starts and ends with '/'. Requests under it never reach the app.",
    )
    admin_token: Annotated[SecretStr | None, EmptyIsUnset] = Field(
        None,
        description="Bearer token for stats, metrics and purge on the public listener "
        f"(at least {MIN_ADMIN_TOKEN_LENGTH} characters). Unset: those answer 404 there.",
    )
    control_url: Annotated[str | None, EmptyIsUnset] = Field(
        None,
        description="The URL at which the app reaches this sidecar's admin API (e.g. http://sidecar:7145), "
        "announced with every manifest request so that the app's purges reach this sidecar when they "
        "share no store. Unset: the app uses the manifest request's peer address and the admin (or "
        "public) listener's port.",
    )
    admin_listen: Annotated[str | None, EmptyIsUnset] = Field(
        None,
        description="Optional HOST:PORT of a separate admin listener that needs no token: "
        "bind it to localhost or a private network.",
    )

    @field_validator("upstream")
    @classmethod
    def _check_upstream(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL with a host, got {value!r}")
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise ValueError(f"bad port in {value!r}") from exc
        return value.strip().rstrip("/")

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        split_host_port(value)
        return value.strip()

    @field_validator("manifest_path")
    @classmethod
    def _check_manifest_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"must start with '/', got {value!r}")
        return value

    @field_validator("admin_prefix")
    @classmethod
    def _check_admin_prefix(cls, value: str) -> str:
        if not _ADMIN_PREFIX.match(value):
            raise ValueError(
                f"expected a path that starts and ends with '/' and has at least one segment "
                f"of letters, digits and . _ ~ -, like '/__sidecar/', got {value!r}"
            )
        return value

    @field_validator("admin_listen")
    @classmethod
    def _check_admin_listen(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        host, port = split_host_port(value)
        listen = info.data.get("listen")
        if listen is not None:
            public_host, public_port = split_host_port(listen)
            wildcard = {"0.0.0.0", "::", ""}
            if port == public_port and (host == public_host or {host, public_host} & wildcard):
                raise ValueError(f"must differ from TINA4_SIDECAR_LISTEN ({listen})")
        return value.strip()

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            for part in value:
                try:
                    ipaddress.ip_network(str(part), strict=False)
                except ValueError:
                    raise ValueError(f"expected an IP address or CIDR network, got {part!r}") from None
        return value

    @field_validator("ignored_query_params", mode="before")
    @classmethod
    def _split_names(cls, value: object) -> object:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _check_level(cls, value: object) -> object:
        text = str(value).strip().lower()
        if text not in ("debug", "info", "warning", "error"):
            raise ValueError(f"expected debug, info, warning or error, got {value!r}")
        return text

    @property
    def listen_address(self) -> tuple[str, int]:
        return split_host_port(self.listen)

    @property
    def admin_address(self) -> tuple[str, int] | None:
        return split_host_port(self.admin_listen) if self.admin_listen is not None else None
