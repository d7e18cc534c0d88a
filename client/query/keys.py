"""The database a result came from, and the key of a cached result: ``q:<sha256>`` of the
database's identity, the fetch kind, the SQL, its parameters (their msgpack, ``client/codec.py``)
and limit/offset. Parameters of a type the codec does not carry make the read uncacheable."""

from __future__ import annotations

import hashlib
import os
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tina4_sidecar.client.codec import pack

FORMAT = 4


class Unencodable(Exception):
    """A value the codec does not carry faithfully: such a result (or read) is not cached."""


def identity(url: str, engine: str, connection_path: str, options: str | None = None) -> str:
    """The database a result came from: ``engine://host:port/database[?options]``, no credentials.

    Like Tina4's, it leaves out user and password (a rotated password must not cold-start the
    cache, and keys must carry no secret), but it keeps libpq's ``options``, from the URL or
    from ``Database(url, options=...)`` (a ``search_path`` names other tables under the same
    names; Tina4 3.13 passes only the keyword on to the driver), and a SQLite file is its
    absolute path (two apps in different directories may both say ``sqlite:///data/app.db``).
    Each in-memory SQLite database is its own, so it gets a unique identity.
    """
    if engine == "sqlite":
        if connection_path == ":memory:":
            return f"sqlite::memory:{uuid.uuid4().hex}"
        return "sqlite:" + os.path.realpath(connection_path)
    try:
        from tina4_python.database.database_url import DatabaseUrl

        parsed = DatabaseUrl(url)
        base = f"{parsed.engine}://{parsed.host or ''}:{parsed.port or ''}/{parsed.database}"
    except Exception:  # an unparseable URL still needs a stable identity of its own
        return url
    found = [*parse_qs(urlsplit(url).query).get("options", []), *([options] if options else [])]
    return base + "".join("?options=" + option for option in found)


def database_hash(ident: str) -> str:
    return hashlib.sha256(ident.encode()).hexdigest()[:20]


def entry_key(
    ident: str, kind: str, sql: str, params: Any, limit: int | None = None, offset: int | None = None
) -> str:
    """``q:<sha256>`` of everything that decides the answer. Raises Unencodable for odd params."""
    try:
        material = pack([FORMAT, ident, kind, sql, params, limit, offset])
    except (TypeError, ValueError) as exc:
        raise Unencodable(str(exc)) from None
    return "q:" + hashlib.sha256(material).hexdigest()
