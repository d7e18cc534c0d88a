"""Cookies that identify nobody (TINA4_SIDECAR_ANONYMOUS_COOKIES): analytics and consent cookies.

Varnish deployments strip such cookies in VCL, because any ``Cookie`` header makes a request
bypass the cache and real browsers always carry some (``_ga``, ``_fbp``, a consent cookie). Here
a name list (exact names, and prefixes written ``_ga_*``) says which ones identify nobody;
``without_anonymous`` returns the Cookie value with those removed. Every other cookie is kept, so
a request with a session cookie still bypasses the cache: a cookie the list does not name is
taken to identify a user. A piece without ``=`` is kept too (it is not a name we know).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class AnonymousCookies:
    """The configured names, split into exact names and prefixes."""

    def __init__(self, names: Sequence[str]) -> None:
        self.exact = frozenset(name for name in names if not name.endswith("*"))
        self.prefixes = tuple(name[:-1] for name in names if name.endswith("*") and len(name) > 1)

    def __bool__(self) -> bool:
        return bool(self.exact or self.prefixes)

    def anonymous(self, name: str) -> bool:
        return name in self.exact or (bool(self.prefixes) and name.startswith(self.prefixes))

    def without_anonymous(self, lines: Iterable[str]) -> tuple[str | None, bool]:
        """The Cookie value of ``lines`` (every Cookie field line) without anonymous cookies:
        ``(value, removed_any)``; value None when nothing is left."""
        kept: list[str] = []
        removed = False
        for line in lines:
            for piece in line.split(";"):
                text = piece.strip()
                if not text:
                    continue
                name, sep, _ = text.partition("=")
                if sep and self.anonymous(name.strip()):
                    removed = True
                else:
                    kept.append(text)
        return ("; ".join(kept) if kept else None), removed
