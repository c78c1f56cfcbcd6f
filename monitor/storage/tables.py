"""The database schema: SQLModel tables for feeds, entries, story keys and the outbox.

Datetimes are time-zone aware UTC in Python; SQLModel's UTC type stores them on every backend.
Bump `SCHEMA_VERSION` and add a step to `database._MIGRATIONS` when a table changes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

SCHEMA_VERSION = 5


def utcnow() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


class DeliveryStatus(StrEnum):
    """Where an outbox row stands."""

    PENDING = "pending"
    SENT = "sent"
    EXPIRED = "expired"


class Meta(SQLModel, table=True):
    """Key/value facts about the database itself, such as the schema version."""

    __tablename__ = "meta"
    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=256)


class FeedRow(SQLModel, table=True):
    """A feed's polling state: validators, outcome of the last poll, failures."""

    __tablename__ = "feeds"
    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(unique=True, max_length=2048)
    name: str = Field(default="", max_length=512)
    # The feed document's own title: how messages name the outlet when the config does not.
    outlet: str | None = Field(default=None, max_length=1024)
    etag: str | None = Field(default=None, max_length=1024)
    last_modified: str | None = Field(default=None, max_length=256)
    body_hash: str | None = Field(default=None, max_length=64)
    last_poll_at: datetime | None = None
    last_success_at: datetime | None = None
    last_status: str | None = Field(default=None, max_length=32)
    http_status: int | None = None
    consecutive_failures: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    next_poll_at: datetime | None = None
    last_new_entry_at: datetime | None = None
    entries_seen: int = 0
    failing_since: datetime | None = None
    health: str = Field(default="ok", max_length=16)
    # Which instance polls the feed (host:pid) and until when; an expired lease is free.
    lease_owner: str | None = Field(default=None, max_length=128)
    lease_until: datetime | None = None
    # With `poll.interval: auto`: the interval learned from the feed's publishing rate and
    # why, the interval its server asks for, and until when an alert keeps it at the minimum.
    cadence: float | None = None
    cadence_reason: str | None = Field(default=None, max_length=300)
    cadence_hint: float | None = None
    boost_until: datetime | None = None


class InstanceRow(SQLModel, table=True):
    """A monitor process using this database, with its last sign of life."""

    __tablename__ = "instances"
    id: str = Field(primary_key=True, max_length=128)
    host: str = Field(max_length=256)
    pid: int
    started_at: datetime = Field(default_factory=utcnow)
    heartbeat_at: datetime = Field(default_factory=utcnow)
    version: str = Field(default="", max_length=32)


class EntryRow(SQLModel, table=True):
    """An entry seen in a feed, whether or not it matched."""

    __tablename__ = "entries"
    __table_args__ = (UniqueConstraint("feed_id", "key", name="uq_entries_feed_key"),)
    id: int | None = Field(default=None, primary_key=True)
    feed_id: int = Field(foreign_key="feeds.id", index=True)
    key: str = Field(max_length=520)
    guid: str | None = Field(default=None, sa_column=Column(Text))
    link: str | None = Field(default=None, sa_column=Column(Text))
    title: str = Field(default="", sa_column=Column(Text))
    # The text is kept so `monitor backtest` can replay entries against edited watchlists.
    summary: str = Field(default="", sa_column=Column(Text))
    content: str = Field(default="", sa_column=Column(Text))
    language: str | None = Field(default=None, max_length=32)
    published: datetime | None = None
    seen_at: datetime = Field(default_factory=utcnow, index=True)
    matched: str = Field(default="", max_length=1024)
    # Why it matched (models.Explanation.dump), for pages that show it later; v4.
    explained: str = Field(default="", sa_column=Column(Text, server_default=""))
    alerted: bool = False
    # The story this entry belongs to (entries of other feeds reporting it join it).
    story_id: int | None = Field(default=None, foreign_key="stories.id", index=True)
    # When the feed re-titled this alerted entry (one "updated" note at most); v2.
    revised_at: datetime | None = None


class StoryRow(SQLModel, table=True):
    """A story: the entry that alerted first, and every entry that reported it since."""

    __tablename__ = "stories"
    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    title: str = Field(default="", sa_column=Column(Text))
    summary: str = Field(default="", sa_column=Column(Text))


class StoryKey(SQLModel, table=True):
    """A cross-feed key of a story; unique, so the first entry to claim it is the one alerted."""

    __tablename__ = "story_keys"
    key: str = Field(primary_key=True, max_length=520)
    entry_id: int = Field(foreign_key="entries.id")
    created_at: datetime = Field(default_factory=utcnow)


class Delivery(SQLModel, table=True):
    """One alert for one target, written with its entry and sent after the commit."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)
    id: int | None = Field(default=None, primary_key=True)
    # None for notices about monitor itself (a feed failing or gone stale).
    entry_id: int | None = Field(default=None, foreign_key="entries.id", index=True)
    target: str = Field(max_length=64)
    target_name: str = Field(default="", max_length=256)
    watchlists: str = Field(default="", max_length=1024)  # comma-separated; empty for notes
    title: str = Field(default="", sa_column=Column(Text))
    body: str = Field(default="", sa_column=Column(Text))
    status: DeliveryStatus = Field(default=DeliveryStatus.PENDING, max_length=16)
    attempts: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    next_attempt_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    claimed_by: str | None = Field(default=None, max_length=128)
    # v2: a models.DeliveryKind: "alert", "update" (an alerted entry was re-titled), "notice"
    # (about monitor itself) or "sources" (who else reported an alerted story).
    kind: str = Field(default="alert", max_length=16,
                      sa_column_kwargs={"server_default": "alert"})
    # v2: the alert's facts (message.AlertFields as JSON), rendered per target when sent.
    fields: str | None = Field(default=None, sa_column=Column(Text))
    # v2: why it was held back (quiet hours, rate limit, digest): it goes out in a digest.
    held: str | None = Field(default=None, max_length=32)


class MessageRow(SQLModel, table=True):
    """A message sent to a target (one alert or one digest), for its rate limit and digests."""

    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_target_sent", "target", "sent_at"),)
    id: int | None = Field(default=None, primary_key=True)
    target: str = Field(max_length=64)
    sent_at: datetime = Field(default_factory=utcnow)
    alerts: int = 1
    digest: bool = False
