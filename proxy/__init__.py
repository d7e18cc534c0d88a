"""The sidecar: a caching reverse proxy in front of a Tina4 app (aiohttp on uvloop).

Only the entry point (``tina4_sidecar.proxy.cli``) should be imported from outside.
"""
