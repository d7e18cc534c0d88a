"""The store contract for synchronous callers, and its backends: the client's sync API runs its
driver in the caller's own thread (redis-py, pymemcache, pymongo, psycopg and sqlite3 sync clients),
reading and writing exactly the keys and bytes of the async stores in ``store/backends/``."""
