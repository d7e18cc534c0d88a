"""The admin surface: the API under the admin prefix (health, ready, stats, metrics, purge), its
token or separate listener, the readiness probes and the ``stats`` and ``purge`` commands."""
