"""The shared vocabulary: the typed values and states that flow between pipeline stages
(fetch → parse → match → store → deliver), so no stage imports another for its types."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

FIELDS = ("title", "summary", "content")


class Priority(StrEnum):
    """How urgent a watchlist's alerts are; `urgent` targets let high ones through holds."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @classmethod
    def of(cls, value: str | None) -> Priority:
        """The priority named `value`; normal for anything else (an old or foreign row)."""
        try:
            return cls(value or cls.NORMAL)
        except ValueError:
            return cls.NORMAL


_RANK = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2}


class PollStatus(StrEnum):
    """What polling one feed once came to."""

    OK = "ok"
    UNCHANGED = "unchanged"
    ERROR = "error"  # the fetch failed, or the feed could not be processed
    PARSE_ERROR = "parse error"  # fetched, but not a feed the parser could read
    DATABASE_ERROR = "database error"  # nothing recorded; the next poll retries
    BACKING_OFF = "backing off"  # skipped: the feed failed lately and waits for its retry
    LEASED = "leased"  # skipped: another instance polls it

    @property
    def failed(self) -> bool:
        return self in (PollStatus.ERROR, PollStatus.PARSE_ERROR, PollStatus.DATABASE_ERROR)


class DeliveryKind(StrEnum):
    """What an outbox row carries."""

    ALERT = "alert"
    UPDATE = "update"  # an alerted entry was re-titled
    NOTICE = "notice"  # about monitor itself (feed health)
    SOURCES = "sources"  # the outlets that reported an alerted story since its alert


class DeliveryOutcome(StrEnum):
    """What one attempt to send an outbox message came to."""

    SENT = "sent"
    RETRYING = "retrying"
    EXPIRED = "expired"
    TAKEN = "taken"  # another process claimed the rows first
    DROPPED = "dropped"  # nothing left to say (e.g. a sources note with no new source)


class HealthState(StrEnum):
    """A feed's health as health notices report it."""

    OK = "ok"
    FAILING = "failing"
    STALE = "stale"


class MatchState(StrEnum):
    """What became of a recorded match."""

    ALERTED = "alerted"
    SAME_STORY = "same story"  # another report of a story that alerted (named in its sources)
    SILENT = "silent"  # recorded without an alert: too old when first seen, or no target for it

    def describe(self) -> str:
        """The state in words, for lists of matches."""
        return {MatchState.ALERTED: "alerted",
                MatchState.SAME_STORY: "not alerted: a story already alerted",
                MatchState.SILENT: "not alerted: too old when first seen, or no target "
                                   "takes its tags"}[self]


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
    priority: Priority
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

    def explanation(self) -> Explanation:
        """What explains this match, as it is kept with the entry."""
        terms = tuple((entity, tuple(aliases)) for entity, aliases in
                      self.terms_by_entity().items())
        return Explanation(self.watchlist, terms, self.highlighted_snippet(""))

    def highlighted_snippet(self, mark: str = "**") -> str:
        """The snippet with each matched term wrapped in `mark` (markdown bold by default)."""
        text, pieces, cursor = self.snippet, [], 0
        for start, end in self.highlights:
            pieces += [text[cursor:start], mark, text[start:end], mark]
            cursor = end
        pieces.append(text[cursor:])
        return "".join(pieces)


@dataclass(frozen=True)
class Failure:
    """Why a poll of a feed failed: the fetch, the parse, or a bug, with what the server said."""

    reason: str
    http_status: int | None = None
    retry_after: float | None = None  # seconds the server asked us to wait


@dataclass(frozen=True)
class PollReport:
    """The outcome of polling one feed once."""

    feed: str
    status: PollStatus
    new: int = 0
    matched: int = 0
    queued: int = 0
    error: str | None = None
    boosted: tuple[str, ...] = ()  # feeds (URLs) put at the minimum interval by its alerts


@dataclass(frozen=True)
class DeliveryReport:
    """The outcome of one pass over the due outbox rows."""

    sent: int = 0
    retrying: int = 0
    expired: int = 0


@dataclass(frozen=True)
class CycleReport:
    """One whole cycle: each feed's poll, how many feeds changed health, what was delivered."""

    polls: list[PollReport]
    health_changes: int
    delivery: DeliveryReport

    @property
    def failed(self) -> list[PollReport]:
        return [report for report in self.polls if report.status.failed]


@dataclass(frozen=True)
class Draft:
    """A message ready to queue for one target."""

    target: str
    target_name: str
    title: str
    body: str
    fields: str | None = None  # message.AlertFields as JSON, for alerts
    kind: DeliveryKind = DeliveryKind.ALERT


@dataclass(frozen=True)
class Seen:
    """A new entry to record; `drafts` are queued only if its story was not alerted before."""

    entry: Entry
    matches: list[Match] = field(default_factory=list)
    drafts: list[Draft] = field(default_factory=list)


@dataclass(frozen=True)
class Revision:
    """An alerted entry that its feed re-titled, and the targets that got its alert."""

    entry_id: int
    old_title: str
    entry: Entry
    targets: frozenset[str]


@dataclass(frozen=True)
class LeaseEnd:
    """The end of an instance's lease on a feed: `owner` keeps it until `until`."""

    owner: str
    until: datetime


@dataclass(frozen=True)
class LeaseRequest:
    """A request to take a feed's lease for `lease` seconds."""

    url: str
    owner: str
    lease: float
    respect_backoff: bool = True


@dataclass(frozen=True)
class Unchanged:
    """A successful poll to record without entries: the fetch and the body's hash."""

    feed_id: int
    fetch: FetchResult
    body_hash: str | None
    release: LeaseEnd | None = None
    outlet: str | None = None  # the feed document's title, when the body was parsed


@dataclass(frozen=True)
class Explanation:
    """Why an entry matched a watchlist, kept with the entry when it is recorded so that pages
    and feeds showing it later never run the matcher again."""

    watchlist: str
    terms: tuple[tuple[str, tuple[str, ...]], ...]  # entity, the aliases of it found
    snippet: str

    def describe(self) -> str:
        """"watchlist: entity (alias, alias), entity (alias)"."""
        return f"{self.watchlist}: " + ", ".join(
            f"{entity} ({', '.join(aliases)})" for entity, aliases in self.terms)

    @staticmethod
    def dump(explanations: list[Explanation]) -> str:
        return json.dumps([[e.watchlist, [[n, list(a)] for n, a in e.terms], e.snippet]
                           for e in explanations], ensure_ascii=False)

    @staticmethod
    def load(text: str | None) -> list[Explanation]:
        """Explanations from `dump`; none from an empty or unreadable column (older rows)."""
        try:
            return [Explanation(str(name), tuple((str(n), tuple(map(str, a))) for n, a in terms),
                                str(snippet)) for name, terms, snippet in json.loads(text or "[]")]
        except (ValueError, TypeError):
            return []
