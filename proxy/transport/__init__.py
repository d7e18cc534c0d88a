"""How requests reach the sidecar: the protocol-level fast path in front of aiohttp's server.

The fast path (``fast_path``) reads header blocks itself (llhttp through httptools, remembered
per block by ``fast_request``), answers HITs from prebuilt bytes and forwards plain GETs;
everything else is handed to aiohttp's server with its bytes untouched. Only the entry point
(``proxy/server.py``) imports this package.
"""
