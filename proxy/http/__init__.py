"""The HTTP caching rules, as pure functions over request heads, response heads and entries.

No sockets and no aiohttp here: field parsing, storability, freshness, conditional requests,
variants, the cache's own response headers, hop-by-hop headers and the stored entry format.
Both transports (``proxy/transport``) and the pipeline decide through these modules.
"""
