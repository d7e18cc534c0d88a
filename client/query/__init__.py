"""The database query cache's parts, one idea each: settings, keys, results as kept and stored,
invalidation scopes and catalog facts, and the persistent layer in the shared store.
``client/database.py`` puts them together."""
