"""What a SQL statement does to the query cache: a read of some tables (cacheable or not), a write
to some tables, or something else; ``sql_tables.analyze`` answers it."""

from __future__ import annotations

from dataclasses import dataclass, field

READ = "read"
WRITE = "write"
OTHER = "other"


@dataclass(frozen=True, slots=True)
class SqlShape:
    """What a statement does to the cache."""

    kind: str
    """``read``, ``write`` or ``other``."""
    tables: frozenset[str] = field(default_factory=frozenset)
    """A read: the tables it reads. A write: the tables it writes."""
    cacheable: bool = False
    """A read whose result may be cached."""
    unattributed: bool = False
    """It may change data in tables that ``tables`` does not name: bump the database-wide token."""
    reason: str = ""
    """Why it is not cacheable, or why it is unattributed (for logs and tests)."""

    @property
    def mutates(self) -> bool:
        """True when the statement may change data (a write, or anything unattributed)."""
        return self.kind == WRITE or self.unattributed


def other(reason: str, mutates: bool = True) -> SqlShape:
    """Neither a read nor a write it can name: by default it may change anything."""
    return SqlShape(OTHER, frozenset(), False, mutates, reason)
