"""Hooking a Tina4 app up to the sidecar: the manifest route and the in-app cache stepping aside."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from tina4_sidecar.client.manifest import MANIFEST_HANDLER_MARK, build_manifest

log = logging.getLogger(__name__)

DEFAULT_MANIFEST_PATH = "/__tina4/cache-manifest"

_manifest_paths: set[str] = set()
_stepped_aside = False


def install(manifest_path: str = DEFAULT_MANIFEST_PATH, step_aside: bool = True) -> None:
    """Register the cache manifest route on Tina4's router and make Tina4's own cache step aside.

    Call it once at import time of the app module, after or before the routes (the manifest is
    built per request, so routes added later are listed). That covers every way Tina4 serves an
    app: ``python app.py`` with ``run()`` (built-in server or uvicorn in-process), and the ASGI
    callable of ``tina4_python``'s ``asgi()`` under uvicorn, where each of ``--workers N`` imports
    the app module and so installs in its own process. Calling it again is harmless.

    ``GET <manifest_path>`` answers the manifest JSON (public, never cached, ``Cache-Control:
    no-store``) with a weak ETag over the body, and 304 to a matching ``If-None-Match``. It is put
    first in the route table, so that no catch-all route of the app can shadow it.

    ``step_aside=True`` turns Tina4's in-app ``ResponseCache`` into a pass-through, so that the app
    never answers from its own copy behind the sidecar (a purge at the sidecar would otherwise be
    refilled from the app's stale entry). Tina4's dispatcher finds hooks by name, not with dir():
    ``Middleware._discover_methods`` walks the class ``__dict__`` of every class in the MRO for
    callable ``before_*`` / ``after_*`` attributes, then calls them on the class
    (``Middleware.run_before``) or on an instance (the request dispatcher). So the hooks are
    replaced, at class level, by a static no-op that returns None ("continue"): that covers the
    string, instance, class and global forms at once, subclasses existing now and, through
    ``__init_subclass__``, subclasses defined later. Pass ``step_aside=False`` when the app runs
    without the sidecar and should cache itself.
    """
    _check_manifest_path(manifest_path)
    if step_aside:
        _step_aside_response_cache()
    if manifest_path not in _manifest_paths:
        _register_manifest_route(manifest_path)
        _manifest_paths.add(manifest_path)
    _install_query_cache_request_scope()


def _check_manifest_path(path: str) -> None:
    if not path.startswith("/") or any(ch in path for ch in "{}*?#") or any(c.isspace() for c in path):
        raise ValueError(f"manifest_path must be a literal path starting with '/', got {path!r}")


def _register_manifest_route(path: str) -> None:
    from tina4_python.core.router import Router

    async def cache_manifest(request: Any, response: Any) -> Any:
        _note_sidecar(request, response)
        try:
            body = build_manifest()
        except Exception as exc:  # a route Tina4 accepted but we cannot describe: say so
            log.error("cannot build the cache manifest: %s", exc)
            return response.json({"error": f"cannot build the cache manifest: {exc}"}, 500)
        etag = 'W/"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        response.header("ETag", etag)
        response.header("Cache-Control", "no-store")
        if _etag_matches(request.headers.get("if-none-match", ""), etag):
            return response(b"", 304, "application/json")
        return response(body, 200, "application/json")

    setattr(cache_manifest, MANIFEST_HANDLER_MARK, True)
    Router.get(path, cache_manifest).no_auth()
    routes = Router.get_routes()
    index = next(i for i, r in enumerate(routes) if r["handler"] is cache_manifest)
    # First registered match wins in Tina4; an app's catch-all ("/*", "/{p:path}") registered
    # before install() would otherwise answer the sidecar's manifest request.
    routes.insert(0, routes.pop(index))


def _note_sidecar(request: Any, response: Any) -> None:
    """Register the sidecar that asks (``client/sidecars.py``), and tell it which store the app uses."""
    from tina4_sidecar.client import sidecars

    try:
        store_id = sidecars.own_store_id()
        response.header(sidecars.STORE_HEADER, store_id)
    except Exception as exc:  # a bad cache configuration must not hide the manifest from the sidecar
        log.warning("cannot read this app's store id: %s", exc)
        return
    announced = request.headers.get(sidecars.HEADER.lower()) or request.headers.get(sidecars.HEADER)
    if not announced:
        return
    sidecar = sidecars.parse(announced, str(getattr(request, "remote_ip", "") or ""))
    if sidecar is None:
        sidecars.warn_once("bad-announcement", "ignoring a malformed %s header", sidecars.HEADER)
        return
    sidecars.register(sidecar)
    if sidecar.store != store_id and "memory" not in (sidecar.backend, _backend()):
        sidecars.warn_once(
            f"store:{sidecar.id}",
            "the sidecar at %s uses another store (%s) than this app (%s): purges reach it over its "
            "admin API, but key/value values and query results are not shared with it; point both at "
            "one TINA4_CACHE_BACKEND/TINA4_CACHE_URL",
            sidecar.control,
            sidecar.backend,
            _backend(),
        )


def _backend() -> str:
    from tina4_sidecar.client import runtime

    return str(runtime.settings().cache_backend.value)


def _etag_matches(header: str, etag: str) -> bool:
    if not header:
        return False
    bare = etag.removeprefix("W/")
    return any(t.strip() == "*" or t.strip().removeprefix("W/") == bare for t in header.split(","))


def _pass_through(*_args: object, **_kwargs: object) -> None:
    """A stepped-aside ResponseCache hook: do nothing, let the request continue."""
    return None


def _silence_hooks(cls: type) -> None:
    for name, value in list(vars(cls).items()):
        if name.startswith(("before_", "after_")) and callable(value):
            setattr(cls, name, staticmethod(_pass_through))


def _step_aside_response_cache() -> None:
    global _stepped_aside
    if _stepped_aside:
        return
    from tina4_python.cache import ResponseCache

    pending: list[type] = [ResponseCache]
    while pending:
        cls = pending.pop()
        _silence_hooks(cls)
        pending.extend(cls.__subclasses__())

    def _init_subclass(cls: type, /, **kwargs: Any) -> None:
        super(ResponseCache, cls).__init_subclass__(**kwargs)
        _silence_hooks(cls)

    ResponseCache.__init_subclass__ = classmethod(_init_subclass)
    _stepped_aside = True
    log.info("Tina4's in-app ResponseCache steps aside for the sidecar")


def _install_query_cache_request_scope() -> None:
    """Start a fresh request scope of the database query cache at every request's start.

    The hook is Tina4's own request boundary for its query cache, ``Database.reset_request_caches()``,
    which ``core/server.py``'s ``_stage_reset_request_caches`` calls for every request, on the
    built-in server and under uvicorn alike, before any middleware or handler runs
    (``client/request_scope.py`` says why a ContextVar set there is the request's own).
    ``tina4_sidecar.client.Database`` also installs it when it is first built.
    """
    from tina4_sidecar.client.request_scope import hook_tina4_request_start

    hook_tina4_request_start()
