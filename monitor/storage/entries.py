"""Entries and stories in the database: what each feed has brought, which story it tells,
and which entries alerted."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from monitor.matching import clustering
from monitor.matching.dedupe import entry_key, story_keys
from monitor.models import (
    DeliveryKind,
    Draft,
    Entry,
    Explanation,
    FetchResult,
    LeaseEnd,
    MatchState,
    Revision,
    Seen,
    Unchanged,
)
from monitor.storage.database import IN_BATCH, Database, insert_new, insert_new_rows
from monitor.storage.feeds import record_state
from monitor.storage.tables import Delivery, EntryRow, FeedRow, StoryKey, StoryRow, utcnow


def _same_title(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def _entry_values(feed_id: int, item: Seen, now: datetime) -> dict[str, Any]:
    entry = item.entry
    return {"feed_id": feed_id, "key": entry_key(entry), "guid": entry.guid, "link": entry.link,
            "title": entry.title[:2000], "summary": entry.summary, "content": entry.content,
            "language": (entry.language or "")[:32] or None, "published": entry.published,
            "seen_at": now, "matched": json.dumps([m.watchlist for m in item.matches]),
            "explained": Explanation.dump([m.explanation() for m in item.matches]),
            "alerted": False}


def entry_of(row: EntryRow, feed_url: str, feed_name: str) -> Entry:
    """A stored entry as the `Entry` the matcher takes."""
    return Entry(feed_url=feed_url, feed_name=feed_name, guid=row.guid, link=row.link,
                 title=row.title, summary=row.summary, content=row.content,
                 published=row.published, language=row.language)


class Entries:
    """Entries seen in feeds and the stories they tell; recording a poll's new entries queues
    their alerts in the same transaction, so an alert is queued exactly when its entry is
    marked seen."""

    def __init__(self, db: Database):
        self.db = db

    def unseen(self, feed_id: int, entries: Sequence[Entry]) -> list[Entry]:
        """The entries whose key this feed has not recorded yet, first occurrence only."""
        keyed: dict[str, Entry] = {}
        for entry in entries:
            keyed.setdefault(entry_key(entry), entry)
        keys = list(keyed)
        seen: set[str] = set()
        with self.db.transaction() as session:
            for start in range(0, len(keys), IN_BATCH):
                batch = keys[start:start + IN_BATCH]
                seen.update(session.exec(select(EntryRow.key).where(
                    EntryRow.feed_id == feed_id, col(EntryRow.key).in_(batch))))
        return [entry for key, entry in keyed.items() if key not in seen]

    def retitled(self, feed_id: int, entries: Sequence[Entry]) -> list[Revision]:
        """Entries of this feed that alerted before under another title (once per entry)."""
        keyed = {entry_key(entry): entry for entry in entries if entry.title}
        keys, found = list(keyed), list[tuple[int | None, str, str]]()
        with self.db.transaction() as session:
            for start in range(0, len(keys), IN_BATCH):
                found += session.exec(select(EntryRow.id, EntryRow.key, EntryRow.title).where(
                    EntryRow.feed_id == feed_id, col(EntryRow.alerted).is_(True),
                    col(EntryRow.revised_at).is_(None),
                    col(EntryRow.key).in_(keys[start:start + IN_BATCH]))).all()
            revisions = []
            for entry_id, key, title in found:
                if entry_id is not None and title and not _same_title(title, keyed[key].title):
                    targets = session.exec(select(Delivery.target).where(
                        Delivery.entry_id == entry_id, Delivery.kind == DeliveryKind.ALERT)).all()
                    revisions.append(Revision(entry_id, title, keyed[key], frozenset(targets)))
            return revisions

    def record_revision(self, entry_id: int, title: str, notes: Sequence[Draft]) -> int:
        """Keep an alerted entry's new title and queue its "updated" notes; 0 if another
        writer recorded the revision first."""
        now = utcnow()
        with self.db.transaction() as session:
            result: Any = session.execute(
                update(EntryRow).where(col(EntryRow.id) == entry_id,
                                       col(EntryRow.revised_at).is_(None))
                .values(revised_at=now, title=title[:2000]))
            if not result.rowcount:
                return 0
            for note in notes:
                session.add(Delivery(entry_id=entry_id, target=note.target,
                                     target_name=note.target_name, watchlists="",
                                     title=note.title, body=note.body, kind=note.kind,
                                     created_at=now, next_attempt_at=now))
            return len(notes)

    def record_poll(self, feed_id: int, fetch: FetchResult, body_hash: str | None,
                    items: Sequence[Seen], release: LeaseEnd | None = None, *,
                    outlet: str | None = None) -> int:
        """Record a successful poll and its new entries (and the feed document's title,
        `outlet`), and end this instance's lease on the feed (`release`), in one transaction;
        returns how many alerts were queued."""
        now, queued = utcnow(), 0
        with self.db.transaction() as session:
            plain = [item for item in items if not item.matches]
            if plain:  # most entries match nothing: one multi-row statement for all of them
                insert_new_rows(session, EntryRow, [_entry_values(feed_id, i, now)
                                                     for i in plain])
            for item in items:
                if item.matches:
                    queued += self._record_entry(session, feed_id, item, now)
            record_state(session, Unchanged(feed_id, fetch, body_hash, release, outlet), now,
                          len(items))
        return queued

    def _record_entry(self, session: Session, feed_id: int, item: Seen, now: datetime) -> int:
        entry = item.entry
        entry_id = insert_new(session, EntryRow, _entry_values(feed_id, item, now),
                               returning=EntryRow.id)
        if entry_id is None:
            return 0  # another writer recorded this entry first; its alerts are its own
        keys = story_keys(entry)
        fresh = all([insert_new(session, StoryKey, {"key": key, "entry_id": entry_id,
                                                     "created_at": now}) is not None
                     for key in keys])
        if not fresh:  # a known story: never alerts again, joins the story if it has one
            story = self._known_story(session, keys)
        else:
            story = self._similar_story(session, entry, now) if item.drafts else None
        if not fresh or story is not None or not item.drafts:
            session.execute(update(EntryRow).where(col(EntryRow.id) == entry_id)
                            .values(story_id=story))
            return 0
        story_row = StoryRow(created_at=now, title=entry.title, summary=entry.summary[:600])
        session.add(story_row)
        session.flush()
        session.execute(update(EntryRow).where(col(EntryRow.id) == entry_id)
                        .values(alerted=True, story_id=story_row.id))
        watchlists = ",".join(m.watchlist for m in item.matches)
        for draft in item.drafts:
            session.add(Delivery(entry_id=entry_id, target=draft.target,
                                 target_name=draft.target_name, watchlists=watchlists,
                                 title=draft.title, body=draft.body, fields=draft.fields,
                                 created_at=now, next_attempt_at=now))
        return len(item.drafts)

    def _known_story(self, session: Session, keys: Sequence[str]) -> int | None:
        """The story of the entry that first claimed one of these story keys."""
        if not keys:
            return None
        story: int | None = session.exec(
            select(EntryRow.story_id).join(StoryKey, col(StoryKey.entry_id) == EntryRow.id)
            .where(col(StoryKey.key).in_(keys), col(EntryRow.story_id).is_not(None))).first()
        return story

    def _similar_story(self, session: Session, entry: Entry, now: datetime) -> int | None:
        """A story of the last `clustering.WINDOW` that this entry reports again, if any."""
        candidates = session.exec(select(StoryRow).where(
            col(StoryRow.created_at) >= now - clustering.WINDOW))
        for story in candidates:
            if clustering.same_story(entry.title, entry.summary, story.title, story.summary):
                return story.id
        return None

    def story_sources(self, entry_id: int, since: datetime | None = None) -> list[str]:
        """Names of the other feeds that reported the story of entry `entry_id` (only those
        first seen after `since`, when given)."""
        with self.db.transaction() as session:
            own = session.get(EntryRow, entry_id)
            if own is None or own.story_id is None:
                return []
            query = (select(FeedRow, EntryRow.link, EntryRow.seen_at)
                     .join(EntryRow, col(EntryRow.feed_id) == FeedRow.id)
                     .where(EntryRow.story_id == own.story_id,
                            col(EntryRow.feed_id) != own.feed_id)
                     .order_by(col(EntryRow.id)))
            first_seen: dict[str, datetime] = {}
            for feed, link, seen in session.exec(query):
                name = clustering.outlet_name(feed.name, feed.url, feed.outlet, link)
                first_seen.setdefault(name, seen)
            return [name for name, seen in first_seen.items() if since is None or seen > since]

    def since(self, since: datetime) -> list[tuple[Entry, list[str]]]:
        """Entries seen since `since`, oldest first, with the watchlists they matched then."""
        with self.db.transaction() as session:
            rows = session.exec(
                select(EntryRow, FeedRow.url, FeedRow.name)
                .join(FeedRow, col(FeedRow.id) == EntryRow.feed_id)
                .where(col(EntryRow.seen_at) >= since).order_by(col(EntryRow.id)))
            return [(entry_of(row, url, name), list(json.loads(row.matched or "[]")))
                    for row, url, name in rows]

    def matches_since(self, since: datetime) -> list[tuple[EntryRow, str]]:
        """Entries that matched a watchlist, seen since `since`, newest first, with feed name."""
        with self.db.transaction() as session:
            rows = session.exec(
                select(EntryRow, FeedRow.name).join(FeedRow, col(FeedRow.id) == EntryRow.feed_id)
                .where(col(EntryRow.seen_at) >= since, col(EntryRow.matched) != "[]")
                .order_by(col(EntryRow.seen_at).desc(), col(EntryRow.id).desc()))
            return [(row, name) for row, name in rows]


def match_state(row: EntryRow) -> MatchState:
    """What became of a recorded match: it alerted, it joined a story that had, or it was
    recorded silently (too old on its feed's first poll or older than poll.max_age, or no
    target takes its tags)."""
    if row.alerted:
        return MatchState.ALERTED
    return MatchState.SAME_STORY if row.story_id is not None else MatchState.SILENT
