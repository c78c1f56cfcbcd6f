"""The typed values that flow between pipeline stages (fetch → parse → store → match → notify)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

FIELDS = ("title", "summary", "content")


class FetchStatus(StrEnum):
    """What one fetch of a feed came to."""

    OK = "ok"
    NOT_MODIFIED = "not_modified"
    ERROR = "error"


@dataclass(frozen=True)
class FetchResult:
    """A feed's bytes (or why there are none) and the validators for the next conditional GET."""

    url: str
    status: FetchStatus
    body: bytes = b""
    http_status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None
    error: str | None = None
    retry_after: float | None = None
    elapsed: float = 0.0


@dataclass(frozen=True)
class Entry:
    """One feed item reduced to plain text, with a link that is safe to click."""

    feed_url: str
    feed_name: str
    guid: str | None
    link: str | None
    title: str
    summary: str = ""
    content: str = ""
    published: datetime | None = None
    language: str | None = None

    def text(self, field_name: str) -> str:
        """The plain text of `title`, `summary` or `content`."""
        value: str = getattr(self, field_name)
        return value


@dataclass(frozen=True, eq=False)  # identity equality: hits are hashed often while matching
class Hit:
    """One alias of an entity found in one field of an entry."""

    entity: str
    alias: str
    found: str
    field: str
    start: int
    end: int


@dataclass(frozen=True)
class Match:
    """A watchlist that an entry satisfies, with what explains it."""

    watchlist: str
    tags: tuple[str, ...]
    priority: str
    hits: tuple[Hit, ...]
    snippet: str
    snippet_field: str
    highlights: tuple[tuple[int, int], ...] = ()

    @property
    def terms(self) -> list[str]:
        """The distinct aliases that matched, in order of first appearance."""
        return list(dict.fromkeys(hit.alias for hit in self.hits))

    def terms_by_entity(self) -> dict[str, list[str]]:
        """Matched aliases grouped by the entity they belong to."""
        grouped: dict[str, list[str]] = {}
        for hit in self.hits:
            aliases = grouped.setdefault(hit.entity, [])
            if hit.alias not in aliases:
                aliases.append(hit.alias)
        return grouped

    def highlighted_snippet(self, mark: str = "**") -> str:
        """The snippet with each matched term wrapped in `mark` (markdown bold by default)."""
        text, pieces, cursor = self.snippet, [], 0
        for start, end in self.highlights:
            pieces += [text[cursor:start], mark, text[start:end], mark]
            cursor = end
        pieces.append(text[cursor:])
        return "".join(pieces)
