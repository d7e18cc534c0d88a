"""The ``stats`` and ``purge`` commands: a running sidecar's admin API, over HTTP.

The admin URL defaults to the sidecar's own settings: the separate admin listener when
``TINA4_SIDECAR_ADMIN_LISTEN`` is set (no token needed), else the public listener, with a
wildcard host (``0.0.0.0``) read as loopback; ``--admin`` overrides it. The token comes from
``--token`` or ``TINA4_SIDECAR_ADMIN_TOKEN`` (prefer the variable: command lines show in ``ps``).

A sidecar that cannot be reached, refuses the token or answers an error ends the command with
one line and exit status 1; a malformed ``--admin`` URL is a configuration error (exit 2).
Environment proxies are ignored: the token must not travel through a proxy the admin API is not
meant to be reached by.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tina4_sidecar.config import ConfigError, SidecarSettings

TIMEOUT = 10.0
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_LOOPBACK = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}


class AdminError(Exception):
    """The admin API could not answer; the message is one line for the operator."""


def admin_url(settings: SidecarSettings, given: str | None) -> str:
    """Base URL of the admin API, ending in the prefix (``http://127.0.0.1:7145/__sidecar/``)."""
    if given is None:
        host, port = settings.admin_address or settings.listen_address
        host = _LOOPBACK.get(host, host)
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}{settings.admin_prefix}"
    parts = urlsplit(given.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(
            f"--admin: expected an http:// or https:// URL such as http://127.0.0.1:7145, got {given!r}"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"--admin: bad port in {given!r}") from None
    path = parts.path if parts.path not in ("", "/") else settings.admin_prefix
    return urlunsplit((parts.scheme, parts.netloc, path.rstrip("/") + "/", "", ""))


def token_for(settings: SidecarSettings, given: str | None) -> str | None:
    if given:
        return given
    return settings.admin_token.get_secret_value() if settings.admin_token is not None else None


def stats_command(settings: SidecarSettings, admin: str | None, token: str | None, as_json: bool) -> int:
    base = admin_url(settings, admin)
    try:
        document = call(base + "stats", token_for(settings, token))
    except AdminError as exc:
        return _fail(str(exc))
    if not isinstance(document, dict):
        return _fail(f"{base}stats did not answer a stats document: is it the sidecar's admin API?")
    print(json.dumps(document, indent=2) if as_json else format_stats(document))
    return 0


def purge_command(
    settings: SidecarSettings, admin: str | None, token: str | None, order: dict[str, str | bool]
) -> int:
    base = admin_url(settings, admin)
    body = json.dumps(order).encode()
    try:
        answer = call(base + "purge", token_for(settings, token), body)
    except AdminError as exc:
        return _fail(str(exc))
    purged = answer.get("purged") if isinstance(answer, dict) else None
    kind, value = next(iter((purged or order).items()))
    print("purged everything" if kind == "all" else f"purged {kind} {value}")
    done = answer.get("done") if isinstance(answer, dict) else None
    if done:
        print(done)
    return 0


def inspect_command(
    settings: SidecarSettings, admin: str | None, token: str | None, url: str, host: str | None, as_json: bool
) -> int:
    """What the cache holds for one URL; exit status 1 when nothing usable is stored."""
    from urllib.parse import urlencode

    base = admin_url(settings, admin)
    query = urlencode({"url": url, **({"host": host} if host else {})})
    try:
        answer = call(f"{base}inspect?{query}", token_for(settings, token))
    except AdminError as exc:
        if "404" in str(exc) or "no usable entry" in str(exc):
            print(f"not cached: {url}")
            return 1
        return _fail(str(exc))
    if as_json:
        print(json.dumps(answer, indent=2))
        return 0
    for name in ("key", "state", "status", "ttl_left", "age", "size", "tags", "vary", "rule"):
        print(f"{name}: {answer.get(name)}")
    return 0


def call(url: str, token: str | None, body: bytes | None = None) -> Any:
    """GET (or POST ``body``) the admin URL; its JSON answer, or AdminError."""
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(
        url, data=body, headers=headers, method="GET" if body is None else "POST"
    )
    try:
        with _OPENER.open(request, timeout=TIMEOUT) as response:
            payload = response.read()
    except urllib.error.HTTPError as exc:
        raise AdminError(_refusal(exc, url, token)) from None
    except urllib.error.URLError as exc:
        raise AdminError(f"cannot reach the sidecar's admin API at {url}: {_reason(exc.reason)}") from None
    except (TimeoutError, OSError) as exc:
        raise AdminError(f"cannot reach the sidecar's admin API at {url}: {_reason(exc)}") from None
    try:
        return json.loads(payload)
    except ValueError:
        raise AdminError(f"{url} did not answer JSON: is it the sidecar's admin API?") from None


def _refusal(exc: urllib.error.HTTPError, url: str, token: str | None) -> str:
    try:
        message = str(json.loads(exc.read()).get("error", ""))
    except (ValueError, AttributeError, OSError):
        message = ""
    if exc.code == 401 and not token:
        return f"{url} needs the admin token: set TINA4_SIDECAR_ADMIN_TOKEN or pass --token"
    if exc.code == 401:
        return f"{url} refused the admin token (401): check TINA4_SIDECAR_ADMIN_TOKEN or --token"
    if exc.code == 404 and not message:
        return f"no admin API at {url} (404): check --admin and TINA4_SIDECAR_ADMIN_PREFIX"
    return f"{url} answered {exc.code}: {message or exc.reason}"


def _reason(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (is the sidecar running there?)"
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def _fail(message: str) -> int:
    print(f"tina4-sidecar: {message}", file=sys.stderr)
    return 1


# -- the readable table ---------------------------------------------------------------------------------


def format_stats(doc: dict[str, Any]) -> str:
    """The stats document as a short report and a table of routes."""
    store = doc.get("store", {})
    backend = doc.get("backend", "?")
    if doc.get("fallback"):
        backend += f" (standing in for {store.get('primary', 'the configured store')})"
    manifest = doc.get("manifest", {})
    lines = [
        f"backend         {backend}",
        f"size            {doc.get('size', 0)} keys in the response layer",
        f"hit rate        {_percent(doc.get('hit_rate', 0.0))}   "
        f"hits {doc.get('hits', 0)}, stale {doc.get('stale', 0)}, misses {doc.get('misses', 0)}",
        f"other requests  bypass {doc.get('bypass', 0)}, pass {doc.get('pass', 0)}, "
        f"errors {doc.get('errors', 0)}",
        f"origin fetches  {doc.get('origin_fetches', 0)}   coalesced waiters {doc.get('coalesced', 0)}",
        f"store errors    {store.get('errors', 0)}" + _suffix(store.get("last_error")),
        f"manifest        {manifest.get('rules', 0)} rules, {_loaded(manifest)}",
        f"uptime          {_duration(float(doc.get('uptime_seconds', 0.0)))}",
    ]
    routes: dict[str, dict[str, Any]] = doc.get("routes", {})
    if routes:
        width = max(40, *(len(route) for route in routes))
        lines += [
            "",
            f"{'ROUTE':<{width}} {'HITS':>8} {'STALE':>7} {'MISSES':>8} {'BYPASS':>7} {'HIT RATE':>9}",
        ]
        busiest = sorted(routes.items(), key=lambda item: -sum(item[1].get(k, 0) for k in ("hits", "misses")))
        for route, counts in busiest:
            lines.append(
                f"{route:<{width}} {counts.get('hits', 0):>8} {counts.get('stale', 0):>7} "
                f"{counts.get('misses', 0):>8} {counts.get('bypass', 0):>7} "
                f"{_percent(counts.get('hit_rate', 0.0)):>9}"
            )
    return "\n".join(lines)


def _percent(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def _suffix(error: object) -> str:
    return f" (last: {error})" if error else ""


def _loaded(manifest: dict[str, Any]) -> str:
    loaded_at = manifest.get("loaded_at")
    when = f"loaded {_duration(time.time() - float(loaded_at))} ago" if loaded_at else "never loaded"
    error = manifest.get("last_error")
    return f"{when}, last refresh failed: {error}" if error else when


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"
