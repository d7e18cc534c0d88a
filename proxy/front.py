"""What every request on the aiohttp path goes through before the pipeline, and after its answer.

Before: its request id (``X-Request-ID`` kept when well-formed, else made and added, so the app
sees it too) and the cookies that identify nobody (``proxy/cookies.py``): on a request the cache
may cover (GET or HEAD) whose cookies are all such, the Cookie header is removed, so the request
is looked up, fetched and stored as one without cookies; with TINA4_SIDECAR_STRIP_ANONYMOUS_COOKIES
they are removed from every request. A request with any other cookie keeps all its cookies and
bypasses the cache as before.

After: its access-log line (``proxy/access_log.py``), written by aiohttp's access-logger hook
once the answer is sent, so the status and the bytes are those the client got.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from multidict import CIMultiDict

from tina4_sidecar.proxy.access_log import CURRENT, REQUEST_IDS, AccessLog, Record, cache_status_member
from tina4_sidecar.proxy.admin.api import purge_method
from tina4_sidecar.proxy.cookies import AnonymousCookies
from tina4_sidecar.proxy.pipeline import handle

if TYPE_CHECKING:
    from tina4_sidecar.proxy.sidecar import Sidecar

RECORD: web.RequestKey[Record] = web.RequestKey("tina4_sidecar.access", Record)
"""The request state key of its ``access_log.Record`` (clones share it)."""

REQUEST_ID = "X-Request-ID"
_CACHEABLE = frozenset({"GET", "HEAD"})


class Front:
    """The aiohttp server's handler: request id, cookies, then ``pipeline.handle``."""

    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar
        self.cookies = AnonymousCookies(sidecar.settings.anonymous_cookies)
        self.strip = sidecar.settings.strip_anonymous_cookies

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        headers = request.headers
        request_id = headers.get(REQUEST_ID)
        changed: CIMultiDict[str] | None = None
        if not REQUEST_IDS.valid(request_id):
            request_id = REQUEST_IDS.make()
            changed = CIMultiDict(headers)
            changed[REQUEST_ID] = request_id
        assert request_id is not None
        if self.cookies and "Cookie" in headers:
            rewrite, cookie = self._cookie(request)
            if rewrite:
                changed = changed if changed is not None else CIMultiDict(headers)
                changed.popall("Cookie", None)
                if cookie is not None:
                    changed["Cookie"] = cookie
        record = Record(request_id)
        request[RECORD] = record
        if changed is not None:
            request = request.clone(headers=changed)
        token = CURRENT.set(record)
        self.sidecar.slow_in_flight += 1
        try:
            if request.method == "PURGE":  # Varnish's and Souin's convention; never the app's
                return await purge_method(self.sidecar, request)
            return await handle(self.sidecar, request)  # type: ignore[arg-type]  # a web.Request
        finally:
            self.sidecar.slow_in_flight -= 1
            CURRENT.reset(token)

    def _cookie(self, request: web.BaseRequest) -> tuple[bool, str | None]:
        """Whether to rewrite the Cookie header, and its new value (None: no header)."""
        kept, removed = self.cookies.without_anonymous(request.headers.getall("Cookie"))
        if not removed:
            return False, None
        if self.strip:
            return True, kept
        if kept is None and request.method in _CACHEABLE and self._cache_may_cover(request):
            return True, None  # nothing identifies a user: the cache sees (and the app gets) no cookies
        return False, None

    def _cache_may_cover(self, request: web.BaseRequest) -> bool:
        settings = self.sidecar.settings
        if settings.honor_cache_control:
            return True
        rule = self.sidecar.rules.match(request.method, request.path)
        return rule is not None and rule.cache and rule.ttl > 0


def access_logger_class(sidecar: Sidecar, access: AccessLog) -> type[AbstractAccessLogger]:
    """aiohttp's access-logger hook, bound to one sidecar's access log."""
    admin_prefix = sidecar.settings.admin_prefix
    name = sidecar.name
    metrics = sidecar.metrics

    class AccessLogger(AbstractAccessLogger):
        def __init__(self, logger: logging.Logger, log_format: str) -> None:
            super().__init__(logger, log_format)

        @property
        def enabled(self) -> bool:
            return True  # the answer's status and bytes are counted (metrics) even with no access log

        def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
            record: Record | None = request.get(RECORD)
            member = cache_status_member(response.headers.get("Cache-Status"), name)
            outcome = _outcome(request, response, record, member, admin_prefix)
            metrics.answered(outcome, response.status, response.body_length)
            if not access.enabled:
                return
            access.line(
                request.method,
                request.raw_path,
                response.status,
                response.body_length,
                time,
                outcome,
                record.upstream_seconds if record is not None else None,
                record.request_id if record is not None else "-",
                member,
            )

    return AccessLogger


def _outcome(
    request: web.BaseRequest,
    response: web.StreamResponse,
    record: Record | None,
    member: str | None,
    admin_prefix: str,
) -> str:
    if record is not None and record.outcome is not None:
        return record.outcome
    if member is not None and "fwd=bypass" in member:
        return "bypass"
    if request.path.startswith(admin_prefix):
        return "admin"
    if record is not None and record.upstream_seconds is not None:
        return "pass"
    return "error" if response.status in (502, 504) else "-"
