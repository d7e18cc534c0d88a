"""The ``tina4-sidecar`` command: ``serve``, ``routes``, and ``stats`` and ``purge`` (admin API).

Configuration mistakes end with one line naming the variable and exit status 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
from collections.abc import Callable, Sequence

from tina4_sidecar.config import CacheSettings, ConfigError, SidecarSettings, load_settings
from tina4_sidecar.config.cache import Backend
from tina4_sidecar.config.rules import RuleSet, load_rules_file
from tina4_sidecar.proxy.cli_flags import add_setting_flags, overrides
from tina4_sidecar.proxy.logs import setup_logging

PROG = "tina4-sidecar"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.version:
        from tina4_sidecar.proxy.build_info import version_text

        print(version_text(args.verbose))
        return 0
    if args.command is None:
        parser.error("a command is required: serve, routes, stats or purge")
    try:
        given = {
            **overrides(args, SidecarSettings),
            "upstream": getattr(args, "upstream", None),
            "rules_file": getattr(args, "rules_file", None),
        }
        settings = load_settings(SidecarSettings, **given)
        if args.command in ("stats", "purge", "inspect"):
            return _admin(settings, args)
        cache_settings = load_settings(CacheSettings, **overrides(args, CacheSettings))
        if args.command == "serve":
            return _serve(settings, cache_settings, lambda: load_settings(SidecarSettings, **given))
        return asyncio.run(_routes(settings, as_json=args.json))
    except ConfigError as exc:
        print(f"{PROG}: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Caching reverse proxy for Tina4 apps.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument(
        "--verbose", action="store_true", help="with --version: also Python's, aiohttp's and uvloop's"
    )
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser(
        "serve",
        help="run the sidecar in front of the app",
        description="Every setting has a flag here; a flag wins over its environment variable.",
    )
    taken = {"upstream", "rules_file"}  # added below, for routes too
    add_setting_flags(serve, SidecarSettings, taken)
    add_setting_flags(serve, CacheSettings, taken)
    routes = commands.add_parser("routes", help="print the caching rules in force")
    routes.add_argument("--json", action="store_true", help="print the rules as JSON")
    for sub in (serve, routes):
        sub.add_argument(
            "--upstream", help="the app's URL (TINA4_SIDECAR_UPSTREAM, default http://127.0.0.1:7146)"
        )
        sub.add_argument("--rules-file", help="JSON file of static rules (TINA4_SIDECAR_RULES_FILE)")
    stats = commands.add_parser("stats", help="print a running sidecar's cache statistics")
    stats.add_argument("--json", action="store_true", help="print the stats document as JSON")
    purge = commands.add_parser("purge", help="purge cached responses of a running sidecar")
    what = purge.add_mutually_exclusive_group(required=True)
    what.add_argument("--url", help="every variant of one URL, e.g. '/api/products?page=1'")
    what.add_argument("--route", help="a path with all its query strings, e.g. /api/store/products")
    what.add_argument("--prefix", help="every path under a directory, e.g. /api/store/")
    what.add_argument("--host", help="every response of one host, e.g. shop.example.com")
    what.add_argument("--tag", help="every response tagged so (by its rule or the app's tag header)")
    what.add_argument("--all", action="store_true", help="every cached response")
    purge.add_argument(
        "--soft", action="store_true", help="mark stale instead of removing: still served if the app fails"
    )
    inspect = commands.add_parser("inspect", help="show what the cache holds for one URL (no body)")
    inspect.add_argument("url", help="the URL's path and query, e.g. '/api/products?page=1'")
    inspect.add_argument(
        "--host", dest="inspect_host", help="the Host clients send (default: the admin URL's)"
    )
    inspect.add_argument("--json", action="store_true", help="print the answer as JSON")
    for sub in (stats, purge, inspect):
        sub.add_argument(
            "--admin",
            help="admin API URL (default: TINA4_SIDECAR_ADMIN_LISTEN, else TINA4_SIDECAR_LISTEN on "
            "loopback, with TINA4_SIDECAR_ADMIN_PREFIX)",
        )
        sub.add_argument(
            "--token", help="admin token (default TINA4_SIDECAR_ADMIN_TOKEN; prefer the variable)"
        )
    return parser


def _admin(settings: SidecarSettings, args: argparse.Namespace) -> int:
    from tina4_sidecar.proxy.admin.cli import inspect_command, purge_command, stats_command

    if args.command == "stats":
        return stats_command(settings, args.admin, args.token, as_json=args.json)
    if args.command == "inspect":
        return inspect_command(settings, args.admin, args.token, args.url, args.inspect_host, args.json)
    kinds = ("url", "route", "prefix", "host", "tag")
    kind = next((kind for kind in kinds if getattr(args, kind) is not None), "all")
    order: dict[str, str | bool] = {"all": True} if kind == "all" else {kind: getattr(args, kind)}
    if args.soft:
        order["soft"] = True
    return purge_command(settings, args.admin, args.token, order)


def _serve(
    settings: SidecarSettings, cache_settings: CacheSettings, load: Callable[[], SidecarSettings]
) -> int:
    from tina4_sidecar.proxy.server import run  # aiohttp's server only for this command

    setup_logging(settings.log_level, settings.log_format)
    check_cache_dir(cache_settings)
    try:
        return run(settings, cache_settings, load)
    except OSError as exc:  # filename: the admin listener's address when that one failed
        where = exc.filename or settings.listen
        print(f"{PROG}: cannot listen on {where}: {exc.strerror or exc}", file=sys.stderr)
        return 1


def check_cache_dir(cache_settings: CacheSettings) -> None:
    """The file store's directory (TINA4_CACHE_DIR) must be one the sidecar can create and write:
    with TINA4_CACHE_BACKEND=file it is a configuration error (one line, exit 2, before any worker
    starts); with a network store, whose fallback it is, a warning."""
    backend = cache_settings.cache_backend
    if backend == Backend.MEMORY:
        return
    directory = cache_settings.cache_dir
    problem: str | None = None
    if directory.exists() and not directory.is_dir():
        problem = "it is not a directory"
    elif backend == Backend.FILE:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=directory):
                pass
        except OSError as exc:
            problem = f"{exc.strerror or type(exc).__name__}" + (f": {exc.filename}" if exc.filename else "")
    if problem is None:
        return
    if backend == Backend.FILE:
        raise ConfigError(f"TINA4_CACHE_DIR: the file store cannot use {directory}: {problem}")
    logging.getLogger("tina4_sidecar").warning(
        "TINA4_CACHE_DIR: the fallback file store cannot use %s (%s): while %s is unreachable nothing "
        "is cached",
        directory,
        problem,
        backend,
    )


async def _routes(settings: SidecarSettings, as_json: bool) -> int:
    from tina4_sidecar.proxy.manifest_watcher import ManifestWatcher
    from tina4_sidecar.proxy.origin.upstream import Upstream

    try:
        static = load_rules_file(settings.rules_file) if settings.rules_file else None
    except Exception as exc:
        raise ConfigError(f"TINA4_SIDECAR_RULES_FILE: {exc}") from None
    upstream = Upstream(
        settings.upstream, settings.connect_timeout, settings.upstream_timeout, settings.upstream_keepalive
    )
    watcher = ManifestWatcher(upstream, settings.manifest_path, settings.manifest_refresh, static)
    try:
        ok = await watcher.refresh()
    finally:
        await upstream.close()
    if not ok:
        print(
            f"{PROG}: no manifest from {settings.upstream}{settings.manifest_path}: {watcher.last_error}",
            file=sys.stderr,
        )
        if static is None:
            return 1
    _print_rules(watcher.rules, as_json)
    return 0


def _print_rules(rules: RuleSet, as_json: bool) -> None:
    if as_json:
        print(json.dumps([rule.to_json() for rule in rules], indent=2))
        return
    print(f"{'METHOD':<7} {'PATH':<40} {'CACHE':<5} {'TTL':>6}  {'STATUSES':<10} SOURCE")
    for rule in rules:
        cache = "yes" if rule.cache and rule.ttl > 0 else "no"
        statuses = ",".join(str(status) for status in rule.statuses)
        print(f"{rule.method:<7} {rule.path:<40} {cache:<5} {rule.ttl:>6}  {statuses:<10} {rule.source}")


if __name__ == "__main__":
    sys.exit(main())
