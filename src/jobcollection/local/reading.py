"""Stored documents as jobs: scrubbed by the application's hook, then validated once.

Every path that reads a job (claims, reports, expiry, follow-ups, get_job) goes through one
Reader, so `jc.scrub` applies everywhere and a document that is not a valid job is found the
same way everywhere (InvalidDocument).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..model.document import JobDoc
from ..model.errors import InvalidDocument

Document = dict[str, Any]
Scrub = Callable[[Document], Document]


def _identity(doc: Document) -> Document:
    return doc


class Reader:
    """Reads stored documents as JobDocs, after the application's scrub hook."""

    def __init__(self, aware_dates: bool = False) -> None:
        """`aware_dates`: the driver returns every datetime aware (see store.py)."""
        self.scrub: Scrub = _identity
        """Applied to every stored document (without `_private`) before it is validated."""
        self._aware = aware_dates

    def job(self, raw: Document) -> JobDoc:
        """A stored document as a job (InvalidDocument if it is not one)."""
        return self._parse(raw, with_private=False)

    def job_with_private(self, raw: Document) -> JobDoc:
        """As job(), keeping the application's `_private` (for the server's own use, such as
        cloning a job into its repeat)."""
        return self._parse(raw, with_private=True)

    def _parse(self, raw: Document, *, with_private: bool) -> JobDoc:
        """The scrubbed document, validated with its `_private` beside it (which holds the
        library's own keys, such as a cron schedule; the scrub hook never sees it)."""
        scrubbed = self._scrubbed(raw)
        if "_private" in raw:
            scrubbed = {**scrubbed, "_private": raw["_private"]}
        return JobDoc.from_mongo(scrubbed, with_private=with_private, aware_dates=self._aware)

    def _scrubbed(self, raw: Document) -> Document:
        try:
            scrubbed = self.scrub({k: v for k, v in raw.items() if k != "_private"})
        except Exception as exc:
            raise InvalidDocument(f"scrub raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(scrubbed, dict):
            raise InvalidDocument(f"scrub returned {type(scrubbed).__name__}, not a document")
        return scrubbed
