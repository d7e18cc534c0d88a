"""WebSocket upgrades, relayed frame by frame between the client and the app."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from aiohttp import web

from tina4_sidecar.proxy.http.forward_headers import NOBODY, TrustedProxies, to_upstream
from tina4_sidecar.proxy.origin.errors import gateway_error
from tina4_sidecar.proxy.origin.upstream import Upstream, UpstreamUnavailable

log = logging.getLogger("tina4_sidecar.proxy")

# Negotiated again on the upstream connection by aiohttp, so not copied from the client.
_HANDSHAKE = (
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Extensions",
    "Sec-WebSocket-Protocol",
)


def is_websocket_upgrade(request: web.Request) -> bool:
    return (
        request.method == "GET"
        and request.headers.get("Upgrade", "").lower() == "websocket"
        and "upgrade" in request.headers.get("Connection", "").lower()
    )


async def proxy_websocket(
    request: web.Request, upstream: Upstream, trusted: TrustedProxies = NOBODY
) -> web.StreamResponse:
    headers = to_upstream(request.headers, request.remote, request.scheme, request.host, trusted)
    for name in _HANDSHAKE:
        headers.popall(name, None)
    protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    try:
        app_ws = await upstream.session.ws_connect(
            upstream.url(request.raw_path), headers=headers, protocols=protocols, autoping=True
        )
    except aiohttp.WSServerHandshakeError as exc:
        return web.Response(status=exc.status or 502, text=exc.message or "websocket refused")
    except (aiohttp.ClientError, TimeoutError) as exc:
        return gateway_error(upstream.base_url, UpstreamUnavailable(str(exc) or type(exc).__name__))
    client_ws = web.WebSocketResponse(protocols=[app_ws.protocol] if app_ws.protocol else ())
    await client_ws.prepare(request)
    to_app = asyncio.create_task(_pump(client_ws, app_ws))
    to_client = asyncio.create_task(_pump(app_ws, client_ws))
    try:
        await asyncio.wait((to_app, to_client), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (to_app, to_client):
            task.cancel()
        await app_ws.close()
        await client_ws.close()
    return client_ws


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    async for message in source:
        if message.type == aiohttp.WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type == aiohttp.WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif message.type == aiohttp.WSMsgType.ERROR:
            log.debug("websocket error: %s", source.exception())
            break
    close_code = source.close_code or aiohttp.WSCloseCode.OK
    await sink.close(code=close_code)
