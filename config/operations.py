"""The sidecar's operations settings (``TINA4_SIDECAR_*``): logs, shutdown, readiness, cookies.

A base class of ``SidecarSettings`` (``config/sidecar.py``), kept apart so that each module
stays one idea: these settings are about running the sidecar, not about what it caches.
"""

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode

ANONYMOUS_COOKIES = [
    "_ga",
    "_ga_*",
    "_gid",
    "_gat",
    "_gat_*",
    "_gcl_*",
    "_fbp",
    "_fbc",
    "_hjid",
    "_hjSession_*",
    "_hjSessionUser_*",
    "_clck",
    "_clsk",
    "_uetsid",
    "_uetvid",
    "cookieconsent_status",
    "CookieConsent",
    "OptanonConsent",
    "OptanonAlertBoxClosed",
]
"""Analytics and consent cookies that identify no signed-in user (Google Analytics and Ads,
Meta, Hotjar, Microsoft Clarity and Ads, the common consent banners). Prefixes end in a
separator (``_ga_*``, never ``_ga*``): ``_ga*`` would also match a session cookie such as
``_gateway_session``."""

_COOKIE_NAME = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+\*?$"


class OperationsSettings(BaseSettings):
    """How the sidecar logs, stops, reports readiness and treats cookies that identify nobody."""

    log_format: Literal["logfmt", "json"] = Field(
        "logfmt", description="Format of every log line, the access log's too: logfmt or json."
    )
    access_log: bool = Field(
        True,
        description="One line per request (method, path, status, bytes, duration, cache outcome, upstream "
        "time, request id, worker pid) at level info, on stderr with the other logs; written in batches, "
        "so it costs a HIT about a microsecond. Off: no access lines (also when the log level is above "
        "info).",
    )
    drain_timeout: Annotated[float, Field(ge=0, le=3600)] = Field(
        30.0,
        description="Seconds SIGTERM waits for in-flight requests to finish (on both transports) before "
        "the sidecar closes what is left and exits; idle connections close at once.",
    )
    ready_requires_app: bool = Field(
        False,
        description="Readiness (GET <prefix>ready) answers 503 while the app is down. Off (the default): "
        "ready means the sidecar can serve (listening, rules loaded once, the store or its fallback "
        "usable), and the app's state is reported in the body and tina4_sidecar_app_up, so that a load "
        "balancer keeps the sidecar, which serves stale content, while the app restarts.",
    )
    anonymous_cookies: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(ANONYMOUS_COOKIES),
        description="Comma-separated cookie names that identify nobody (exact, or a prefix ending in '*'). "
        "They are left out of the cache decision: a request whose cookies are all such is cached as one "
        "without cookies (and the cache's fetch sends it to the app without them); any other cookie "
        "still bypasses the cache. Empty: every cookie bypasses.",
    )
    strip_anonymous_cookies: bool = Field(
        False,
        description="Also remove the cookies of TINA4_SIDECAR_ANONYMOUS_COOKIES from every request before "
        "the app sees it, on routes the cache does not cover too.",
    )

    @field_validator("anonymous_cookies", mode="before")
    @classmethod
    def _split_cookie_names(cls, value: object) -> object:
        if isinstance(value, str):
            value = [name.strip() for name in value.split(",") if name.strip()]
        if isinstance(value, list):
            import re

            for name in value:
                if not re.match(_COOKIE_NAME, str(name)) or str(name) == "*":
                    raise ValueError(f"expected cookie names, each optionally ending in '*', got {name!r}")
        return value
