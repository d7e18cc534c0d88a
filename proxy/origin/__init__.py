"""The sidecar's side of the app: connections, requests to it, and what comes back.

``upstream`` (aiohttp's client session) and ``pool`` (raw keep-alive connections for the fast
path), forwarding of what the cache does not hold (``forwarding``, ``relay``, ``websocket``),
fetching for the cache and storing (``fetch``, ``refresh``), and the 502/504 answers
(``errors``).
"""
