"""The store: what has been seen, what must be sent, and how each feed is doing.

Every write is one short transaction. On SQLite the connection runs in WAL mode with
`synchronous=FULL` (a commit survives a power cut, not just a crash) and every transaction starts
with `BEGIN IMMEDIATE`, because two writers that read first and then write otherwise fail with
"database is locked" despite `busy_timeout`. Entries, their story keys and their outbox rows are
written in the same transaction, so an alert is queued exactly when its entry is marked seen.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    case,
    delete,
    event,
    func,
    inspect,
    or_,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.schema import CreateColumn
from sqlmodel import Session, SQLModel, col, create_engine, select

from monitor.config import FeedConfig
from monitor.errors import StoreError, UnknownFeed
from monitor.matching import clustering
from monitor.matching.dedupe import entry_key, story_keys
from monitor.models import (
    Claim,
    DeliveryKind,
    Draft,
    Entry,
    Explanation,
    Failure,
    FetchResult,
    FetchStatus,
    HealthState,
    Release,
    Revision,
    Seen,
    Unchanged,
)
from monitor.storage.tables import (
    SCHEMA_VERSION,
    Delivery,
    DeliveryStatus,
    EntryRow,
    FeedRow,
    InstanceRow,
    MessageRow,
    Meta,
    StoryKey,
    StoryRow,
    utcnow,
)
from monitor.support.secrets import mask_url

_IN_BATCH = 500


def _same_title(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def _record_state(session: Session, poll: Unchanged, now: datetime, new: int) -> None:
    """Update a feed's row after a successful poll that brought `new` entries."""
    fetch = poll.fetch
    values: dict[str, Any] = {
        "last_poll_at": now, "last_success_at": now, "last_status": fetch.status.value,
        "http_status": fetch.http_status, "consecutive_failures": 0, "last_error": None,
        "next_poll_at": None, "entries_seen": FeedRow.entries_seen + new,
        "failing_since": None,
    }
    if fetch.status is FetchStatus.OK:
        values.update(etag=fetch.etag, last_modified=fetch.last_modified,
                      body_hash=poll.body_hash)
    if poll.outlet:
        values["outlet"] = poll.outlet[:1024]
    if new:
        values["last_new_entry_at"] = now
    if poll.release:
        values.update(_released(poll.release))
    session.execute(update(_FEEDS).where(_FEEDS.c.id == poll.feed_id).values(**values))


def _released(release: Release) -> dict[str, Any]:
    """Column values that end the lease, if this instance still holds it."""
    return {"lease_until": case((col(FeedRow.lease_owner) == release.owner, release.until),
                                else_=col(FeedRow.lease_until))}


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=30000",
                       "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


# Columns each schema version added to existing tables (new tables come from create_all).
_MIGRATIONS: dict[int, list[tuple[type[SQLModel], str]]] = {
    2: [(Delivery, "kind"), (Delivery, "fields"), (Delivery, "held"), (EntryRow, "revised_at")],
    3: [(FeedRow, "outlet")],
    4: [(EntryRow, "explained")],
}


def _migrate(connection: Connection) -> None:
    """Bring a database written by an older monitor up to `SCHEMA_VERSION`, in place."""
    if not inspect(connection).has_table("meta"):
        return
    found = connection.execute(text("SELECT value FROM meta WHERE key = 'schema_version'"))
    version = found.scalar_one_or_none()
    if version is None or int(version) >= SCHEMA_VERSION:
        return
    for step in range(int(version) + 1, SCHEMA_VERSION + 1):
        for model, name in _MIGRATIONS.get(step, []):
            table: Any = model.__table__  # type: ignore[attr-defined]
            have = {c["name"] for c in inspect(connection).get_columns(table.name)}
            if name not in have:
                column = CreateColumn(table.c[name]).compile(dialect=connection.dialect)
                connection.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column}"))
    if int(version) < 3:  # names were feed URLs with their credentials: mask them
        named = connection.execute(text("SELECT id, name FROM feeds WHERE name LIKE '%://%'"))
        for feed_id, name in named.all():
            connection.execute(text("UPDATE feeds SET name = :n WHERE id = :i"),
                               {"n": mask_url(name), "i": feed_id})
    connection.execute(text("UPDATE meta SET value = :v WHERE key = 'schema_version'"),
                       {"v": str(SCHEMA_VERSION)})


def _make_engine(url: str) -> Engine:
    try:
        if url.startswith("sqlite"):
            path = url.split("///", 1)[1].split("?", 1)[0] if "///" in url else ""
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                # Created private before SQLite opens it (its -wal and -shm files take the
                # database file's mode): it holds every alert and the feeds' URLs.
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
            engine = create_engine(url, connect_args={"timeout": 30})
            _sqlite_pragmas(engine)
            return engine
        return create_engine(url, pool_pre_ping=True)
    except (ArgumentError, ImportError, OSError, ValueError) as error:
        raise StoreError(f"cannot use database {_safe_url(url)}: {error}") from None


def _safe_url(url: str) -> str:
    """The database URL without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return url.rsplit("@", maxsplit=1)[-1]


def _entry_values(feed_id: int, item: Seen, now: datetime) -> dict[str, Any]:
    entry = item.entry
    return {"feed_id": feed_id, "key": entry_key(entry), "guid": entry.guid, "link": entry.link,
            "title": entry.title[:2000], "summary": entry.summary, "content": entry.content,
            "language": (entry.language or "")[:32] or None, "published": entry.published,
            "seen_at": now, "matched": json.dumps([m.watchlist for m in item.matches]),
            "explained": Explanation.dump([m.explanation() for m in item.matches]),
            "alerted": False}


# Hot paths use the Core table: the ORM's bulk insert/update machinery costs more CPU than
# the database's own work for the many small statements of a poll cycle.
_FEEDS: Any = FeedRow.__table__  # type: ignore[attr-defined]


def _kept_unless(flag: str, value: str, column: Any) -> Any:
    """`value` where the bound `flag` is true, else the column as it is."""
    return case((bindparam(flag) == true(), bindparam(value, type_=column.type)), else_=column)


# A poll that brought nothing new, as one statement for executemany: validators and body hash
# only change on a 200 (not on a 304), and the lease ends only if this instance still holds it.
_UNCHANGED: Any = update(_FEEDS).where(_FEEDS.c.id == bindparam("p_id")).values(
    last_status=bindparam("p_status"), http_status=bindparam("p_http"),
    consecutive_failures=0, last_error=None, next_poll_at=None, failing_since=None,
    etag=_kept_unless("p_ok", "p_etag", _FEEDS.c.etag),
    last_modified=_kept_unless("p_ok", "p_modified", _FEEDS.c.last_modified),
    body_hash=_kept_unless("p_ok", "p_hash", _FEEDS.c.body_hash),
    lease_until=case((_FEEDS.c.lease_owner == bindparam("p_owner"),
                      bindparam("p_until", type_=_FEEDS.c.lease_until.type)),
                     else_=_FEEDS.c.lease_until))


def _insert_or_skip(session: Session, table: type[SQLModel]) -> Any:
    """An INSERT that skips rows whose unique key exists (SQLite and PostgreSQL)."""
    dialect = session.get_bind().dialect.name
    builder: Any = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}.get(dialect)
    if builder is None:
        raise StoreError(f"unsupported database {dialect}: use SQLite or PostgreSQL")
    return builder(table.__table__).on_conflict_do_nothing()  # type: ignore[attr-defined]


def _insert_new_rows(session: Session, table: type[SQLModel],
                     rows: list[dict[str, Any]]) -> None:
    """Insert many rows at once, skipping those whose unique key exists."""
    session.execute(_insert_or_skip(session, table), rows)


def _insert_new(session: Session, table: type[SQLModel], values: dict[str, Any],
                returning: Any = None) -> Any:
    """Insert a row unless its unique key exists; the new row's `returning` column (or True),
    None when it existed. Atomic on SQLite and PostgreSQL, so concurrent writers never clash."""
    statement = _insert_or_skip(session, table).values(**values)
    if returning is None:
        result: Any = session.execute(statement)
        return True if result.rowcount else None
    return session.execute(statement.returning(returning)).scalar_one_or_none()


def entry_of(row: EntryRow, feed_url: str, feed_name: str) -> Entry:
    """A stored entry as the `Entry` the matcher takes."""
    return Entry(feed_url=feed_url, feed_name=feed_name, guid=row.guid, link=row.link,
                 title=row.title, summary=row.summary, content=row.content,
                 published=row.published, language=row.language)


class Store:
    """All database access of the daemon and the CLI."""

    def __init__(self, url: str):
        self.url = url
        self._lock = threading.RLock()
        self.engine = _make_engine(url)
        try:
            with self.engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    # Instances starting together would race to create the same tables.
                    connection.execute(text("SELECT pg_advisory_xact_lock(7270001)"))
                SQLModel.metadata.create_all(connection)
                _migrate(connection)
            self._check_schema()
        except SQLAlchemyError as error:
            raise StoreError(f"cannot use database {_safe_url(url)}: "
                             f"{error.__class__.__name__}: {getattr(error, 'orig', error)}"
                             ) from None

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any error.

        Database failures (disk full, lost connection, locked for too long) surface as
        StoreError with the database's own reason; nothing of the transaction is kept.
        """
        try:
            # One transaction at a time per process: threads queue here instead of spinning
            # in SQLite's busy handler.
            with self._lock, Session(self.engine, expire_on_commit=False) as session, \
                    session.begin():
                yield session
        except SQLAlchemyError as error:
            reason = str(getattr(error, "orig", None) or error).splitlines()[0]
            raise StoreError(f"{error.__class__.__name__}: {reason}") from error

    def _check_schema(self) -> None:
        with self.transaction() as session:
            _insert_new(session, Meta, {"key": "schema_version", "value": str(SCHEMA_VERSION)})
            row = session.get(Meta, "schema_version")
            if row is not None and int(row.value) > SCHEMA_VERSION:
                raise StoreError(f"database schema v{row.value} is newer than this monitor "
                                 f"(v{SCHEMA_VERSION}): upgrade monitor")

    def schema_version(self) -> int:
        """The schema version recorded in the database."""
        with self.transaction() as session:
            row = session.get(Meta, "schema_version")
            return int(row.value) if row else 0

    # Feeds -------------------------------------------------------------------------------

    def ensure_feeds(self, feeds: Sequence[FeedConfig]) -> None:
        """Create a row for each configured feed that has none; keep names current."""
        with self.transaction() as session:
            rows = {r.url: r for r in session.exec(select(FeedRow))}
            missing = [{"url": f.url, "name": f.title, "entries_seen": 0,
                        "consecutive_failures": 0, "health": HealthState.OK}
                       for f in feeds if f.url not in rows]
            if missing:  # another instance may be adding the same feeds right now
                _insert_new_rows(session, FeedRow, missing)
            for feed in feeds:
                row = rows.get(feed.url)
                if row is not None and row.name != feed.title:
                    row.name = feed.title

    def feed(self, url: str) -> FeedRow:
        """The state row of a configured feed."""
        with self.transaction() as session:
            row = session.exec(select(FeedRow).where(FeedRow.url == url)).first()
            if row is None:
                raise UnknownFeed(f"feed {mask_url(url)} is not in the database")
            return row

    def feeds(self) -> list[FeedRow]:
        """Every feed row, by name."""
        with self.transaction() as session:
            return list(session.exec(select(FeedRow).order_by(col(FeedRow.name))))

    def unseen(self, feed_id: int, entries: Sequence[Entry]) -> list[Entry]:
        """The entries whose key this feed has not recorded yet, first occurrence only."""
        keyed: dict[str, Entry] = {}
        for entry in entries:
            keyed.setdefault(entry_key(entry), entry)
        keys = list(keyed)
        seen: set[str] = set()
        with self.transaction() as session:
            for start in range(0, len(keys), _IN_BATCH):
                batch = keys[start:start + _IN_BATCH]
                seen.update(session.exec(select(EntryRow.key).where(
                    EntryRow.feed_id == feed_id, col(EntryRow.key).in_(batch))))
        return [entry for key, entry in keyed.items() if key not in seen]

    def retitled(self, feed_id: int, entries: Sequence[Entry]) -> list[Revision]:
        """Entries of this feed that alerted before under another title (once per entry)."""
        keyed = {entry_key(entry): entry for entry in entries if entry.title}
        keys, found = list(keyed), list[tuple[int | None, str, str]]()
        with self.transaction() as session:
            for start in range(0, len(keys), _IN_BATCH):
                found += session.exec(select(EntryRow.id, EntryRow.key, EntryRow.title).where(
                    EntryRow.feed_id == feed_id, col(EntryRow.alerted).is_(True),
                    col(EntryRow.revised_at).is_(None),
                    col(EntryRow.key).in_(keys[start:start + _IN_BATCH]))).all()
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
        with self.transaction() as session:
            result: Any = session.execute(
                update(EntryRow).where(col(EntryRow.id) == entry_id,
                                       col(EntryRow.revised_at).is_(None))
                .values(revised_at=now, title=title[:2000]))
            if not result.rowcount:
                return 0
            for note in notes:
                session.add(Delivery(entry_id=entry_id, target=note.target,
                                     target_name=note.target_name, watchlists=DeliveryKind.UPDATE,
                                     title=note.title, body=note.body, kind=note.kind,
                                     created_at=now, next_attempt_at=now))
            return len(notes)

    def record_poll(self, feed_id: int, fetch: FetchResult, body_hash: str | None,
                    items: Sequence[Seen], release: Release | None = None, *,
                    outlet: str | None = None) -> int:
        """Record a successful poll and its new entries (and the feed document's title,
        `outlet`), and end this instance's lease on the feed (`release`), in one transaction;
        returns how many alerts were queued."""
        now, queued = utcnow(), 0
        with self.transaction() as session:
            plain = [item for item in items if not item.matches]
            if plain:  # most entries match nothing: one multi-row statement for all of them
                _insert_new_rows(session, EntryRow, [_entry_values(feed_id, i, now)
                                                     for i in plain])
            for item in items:
                if item.matches:
                    queued += self._record_entry(session, feed_id, item, now)
            _record_state(session, Unchanged(feed_id, fetch, body_hash, release, outlet), now,
                          len(items))
        return queued

    def record_unchanged(self, polls: Sequence[Unchanged]) -> list[None]:
        """Record many polls that brought nothing new (304, or the same body), ending their
        leases, in one transaction: one executemany statement for all of them."""
        now = utcnow()
        rows = [{"p_id": poll.feed_id, "p_status": poll.fetch.status.value,
                 "p_http": poll.fetch.http_status, "p_ok": poll.fetch.status is FetchStatus.OK,
                 "p_etag": poll.fetch.etag, "p_modified": poll.fetch.last_modified,
                 "p_hash": poll.body_hash,
                 "p_owner": poll.release.owner if poll.release else None,
                 "p_until": poll.release.until if poll.release else None} for poll in polls]
        if not rows:
            return []
        with self.transaction() as session:
            session.execute(_UNCHANGED.values(last_poll_at=now, last_success_at=now), rows)
        return [None] * len(polls)

    def _record_entry(self, session: Session, feed_id: int, item: Seen, now: datetime) -> int:
        entry = item.entry
        entry_id = _insert_new(session, EntryRow, _entry_values(feed_id, item, now),
                               returning=EntryRow.id)
        if entry_id is None:
            return 0  # another writer recorded this entry first; its alerts are its own
        keys = story_keys(entry)
        fresh = all([_insert_new(session, StoryKey, {"key": key, "entry_id": entry_id,
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
        with self.transaction() as session:
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

    def entries_since(self, since: datetime) -> list[tuple[Entry, list[str]]]:
        """Entries seen since `since`, oldest first, with the watchlists they matched then."""
        with self.transaction() as session:
            rows = session.exec(
                select(EntryRow, FeedRow.url, FeedRow.name)
                .join(FeedRow, col(FeedRow.id) == EntryRow.feed_id)
                .where(col(EntryRow.seen_at) >= since).order_by(col(EntryRow.id)))
            return [(entry_of(row, url, name), list(json.loads(row.matched or "[]")))
                    for row, url, name in rows]

    def matches_since(self, since: datetime) -> list[tuple[EntryRow, str]]:
        """Entries that matched a watchlist, seen since `since`, newest first, with feed name."""
        with self.transaction() as session:
            rows = session.exec(
                select(EntryRow, FeedRow.name).join(FeedRow, col(FeedRow.id) == EntryRow.feed_id)
                .where(col(EntryRow.seen_at) >= since, col(EntryRow.matched) != "[]")
                .order_by(col(EntryRow.seen_at).desc(), col(EntryRow.id).desc()))
            return [(row, name) for row, name in rows]

    def cadence(self, feed_id: int, since: datetime) -> float | None:
        """Average seconds between the polls that brought a feed new entries since `since`."""
        with self.transaction() as session:
            first, last, polls = session.exec(
                select(func.min(EntryRow.seen_at), func.max(EntryRow.seen_at),
                       func.count(func.distinct(EntryRow.seen_at)))
                .where(EntryRow.feed_id == feed_id, col(EntryRow.seen_at) >= since)).one()
        if not polls or polls < 2 or first is None or last is None:
            return None
        return float((last - first).total_seconds()) / (polls - 1)

    def set_health(self, feed_id: int, state: HealthState, notices: Sequence[Draft]) -> None:
        """Record a feed's new health state and queue its notices, in one transaction."""
        with self.transaction() as session:
            session.execute(update(FeedRow).where(col(FeedRow.id) == feed_id)
                            .values(health=state))
            for notice in notices:
                session.add(Delivery(entry_id=None, target=notice.target,
                                     target_name=notice.target_name, watchlists="health",
                                     title=notice.title, body=notice.body, kind=notice.kind))

    def claim_feed(self, url: str, owner: str, lease: float,
                   respect_backoff: bool = True) -> FeedRow | None:
        """Take a feed for `lease` seconds and return its state, unless another instance holds
        it (or, with `respect_backoff`, it is backing off after failures): then None."""
        return self.claim_feeds([Claim(url, owner, lease, respect_backoff)])[0]

    def claim_feeds(self, claims: Sequence[Claim]) -> list[FeedRow | None]:
        """`claim_feed` for many feeds in one transaction, results in the same order."""
        now = utcnow()
        taken: dict[str, FeedRow] = {}
        groups: dict[tuple[str, float, bool], list[str]] = {}
        for claim in claims:
            groups.setdefault((claim.owner, claim.lease, claim.respect_backoff),
                              []).append(claim.url)
        with self.transaction() as session:
            for (owner, lease, respect_backoff), urls in groups.items():
                for start in range(0, len(urls), _IN_BATCH):
                    conditions = [
                        _FEEDS.c.url.in_(urls[start:start + _IN_BATCH]),
                        or_(_FEEDS.c.lease_until.is_(None), _FEEDS.c.lease_until <= now,
                            _FEEDS.c.lease_owner == owner)]
                    if respect_backoff:
                        conditions.append(or_(_FEEDS.c.next_poll_at.is_(None),
                                              _FEEDS.c.next_poll_at <= now))
                    rows = session.execute(
                        update(_FEEDS).where(*conditions)
                        .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease))
                        .returning(*_FEEDS.c))
                    taken.update((row.url, FeedRow(**row._mapping)) for row in rows)
        return [taken.get(claim.url) for claim in claims]

    def release_feed(self, feed_id: int, owner: str, hold: float) -> None:
        """End this instance's lease on a feed, keeping it `hold` more seconds."""
        with self.transaction() as session:
            session.execute(update(FeedRow).where(col(FeedRow.id) == feed_id,
                                                  col(FeedRow.lease_owner) == owner)
                            .values(lease_until=utcnow() + timedelta(seconds=hold)))

    def heartbeat(self, owner: str, host: str, pid: int, version: str) -> None:
        """Record that this instance is alive."""
        with self.transaction() as session:
            row = session.get(InstanceRow, owner)
            if row is None:
                session.add(InstanceRow(id=owner, host=host, pid=pid, version=version))
            else:
                row.heartbeat_at = utcnow()

    def retire(self, owner: str) -> None:
        """Forget an instance that stops cleanly (a killed one stays, shown as gone)."""
        with self.transaction() as session:
            row = session.get(InstanceRow, owner)
            if row is not None:
                session.delete(row)

    def instances(self) -> list[InstanceRow]:
        """Every instance that ever used this database, most recent first."""
        with self.transaction() as session:
            return list(session.exec(select(InstanceRow)
                                     .order_by(col(InstanceRow.heartbeat_at).desc())))

    def record_failure(self, feed_id: int, failure: Failure, retry_at: datetime,
                       release: Release | None = None) -> int:
        """Record a failed poll (and end this instance's lease); returns the feed's consecutive
        failures so far."""
        with self.transaction() as session:
            row = session.get(FeedRow, feed_id)
            assert row is not None
            if release and row.lease_owner == release.owner:
                row.lease_until = release.until
            row.last_poll_at = utcnow()
            row.last_status = FetchStatus.ERROR.value
            row.http_status = failure.http_status
            row.consecutive_failures += 1
            row.failing_since = row.failing_since or row.last_poll_at
            row.last_error = failure.reason
            row.next_poll_at = retry_at
            return row.consecutive_failures

    # Outbox ------------------------------------------------------------------------------

    def due_deliveries(self, limit: int = 100, now: datetime | None = None) -> list[Delivery]:
        """Pending deliveries whose next attempt is due, oldest first (not yet claimed)."""
        with self.transaction() as session:
            return list(session.exec(
                select(Delivery)
                .where(Delivery.status == DeliveryStatus.PENDING,
                       col(Delivery.next_attempt_at) <= (now or utcnow()))
                .order_by(col(Delivery.id)).limit(limit)))

    def claim(self, delivery_ids: Sequence[int], owner: str, lease: float,
              now: datetime | None = None) -> list[int]:
        """Take due deliveries for `lease` seconds; those another process has are left out.

        A claimed row is not due for anyone else until the lease ends, so two processes never
        send the same alert; if the owner dies mid-send, the lease ends (or `release_dead`
        frees it at the next start) and the alert is sent again: at least once, never lost.
        """
        now = now or utcnow()
        with self.transaction() as session:
            taken = session.execute(
                update(Delivery)
                .where(col(Delivery.id).in_(delivery_ids),
                       col(Delivery.status) == DeliveryStatus.PENDING,
                       col(Delivery.next_attempt_at) <= now)
                .values(next_attempt_at=now + timedelta(seconds=lease), claimed_by=owner)
                .returning(col(Delivery.id))).scalars()
            wanted = set(taken)
            return [i for i in delivery_ids if i in wanted]

    def hold(self, held: dict[int, tuple[datetime, str]]) -> None:
        """Hold deliveries back until a time, with the reason (they go out in a digest)."""
        with self.transaction() as session:
            for delivery_id, (until, reason) in held.items():
                session.execute(update(Delivery).where(
                    col(Delivery.id) == delivery_id,
                    col(Delivery.status) == DeliveryStatus.PENDING)
                    .values(next_attempt_at=until, held=reason))

    def sent_since(self, target: str, since: datetime) -> list[datetime]:
        """When the messages to `target` since `since` were sent, oldest first."""
        with self.transaction() as session:
            return list(session.exec(
                select(MessageRow.sent_at)
                .where(MessageRow.target == target, col(MessageRow.sent_at) > since)
                .order_by(col(MessageRow.sent_at))))

    def release_dead(self, host: str, alive: Callable[[int], bool]) -> int:
        """Free the alerts and feeds claimed by processes on `host` that no longer run."""
        def dead(owner: str | None) -> bool:
            pid = (owner or "").rsplit(":", 1)[-1]
            return pid.isdigit() and not alive(int(pid))

        with self.transaction() as session:
            rows = session.exec(select(Delivery.id, Delivery.claimed_by).where(
                Delivery.status == DeliveryStatus.PENDING,
                col(Delivery.claimed_by).startswith(f"{host}:"))).all()
            alerts = [i for i, owner in rows if dead(owner)]
            if alerts:
                session.execute(update(Delivery).where(col(Delivery.id).in_(alerts))
                                .values(next_attempt_at=utcnow(), claimed_by=None))
            leases = session.exec(select(FeedRow.id, FeedRow.lease_owner).where(
                col(FeedRow.lease_owner).startswith(f"{host}:"))).all()
            feeds = [i for i, owner in leases if dead(owner)]
            if feeds:
                session.execute(update(FeedRow).where(col(FeedRow.id).in_(feeds))
                                .values(lease_until=None, lease_owner=None))
            return len(alerts)

    def release(self, delivery_ids: Sequence[int], when: datetime) -> None:
        """Give back claimed deliveries that were not attempted; due again at `when`."""
        if not delivery_ids:
            return
        with self.transaction() as session:
            session.execute(update(Delivery).where(col(Delivery.id).in_(delivery_ids))
                            .values(next_attempt_at=when))

    def mark_sent(self, delivery_ids: Sequence[int], target: str, digest: bool = False,
                  now: datetime | None = None, sources_note: datetime | None = None) -> None:
        """The target accepted one message carrying these deliveries; with `sources_note`,
        queue the alert's "also reported by" note for then."""
        now = now or utcnow()
        with self.transaction() as session:
            session.execute(update(Delivery).where(col(Delivery.id).in_(delivery_ids)).values(
                status=DeliveryStatus.SENT, sent_at=now, attempts=Delivery.attempts + 1,
                last_error=None))
            session.add(MessageRow(target=target, sent_at=now, alerts=len(delivery_ids),
                                   digest=digest))
            alert = session.get(Delivery, delivery_ids[0]) if sources_note else None
            if sources_note and alert is not None and alert.entry_id is not None:
                session.add(Delivery(entry_id=alert.entry_id, target=alert.target,
                                     target_name=alert.target_name, kind=DeliveryKind.SOURCES,
                                     watchlists=alert.watchlists, title=alert.title,
                                     body="", fields=alert.fields,
                                     # Entries' seen_at is wall-clock time, not `now` (which
                                     # tests move): "since" must be on the same clock.
                                     created_at=utcnow(), next_attempt_at=sources_note))

    def drop(self, delivery_ids: Sequence[int]) -> None:
        """Forget deliveries that turned out to have nothing to say."""
        with self.transaction() as session:
            session.execute(delete(Delivery).where(col(Delivery.id).in_(delivery_ids)))

    def mark_failed(self, delivery_ids: Sequence[int], error: str,
                    retry_at: datetime | None) -> None:
        """The attempt failed: try again at `retry_at`, or give up (expired) when it is None."""
        status = DeliveryStatus.PENDING if retry_at else DeliveryStatus.EXPIRED
        with self.transaction() as session:
            session.execute(update(Delivery).where(col(Delivery.id).in_(delivery_ids)).values(
                status=status, attempts=Delivery.attempts + 1, last_error=error[:2000],
                next_attempt_at=retry_at or utcnow()))

    def waiting_by_target(self) -> dict[str, tuple[int, int, datetime | None]]:
        """Per target id: pending alerts, how many of them are held back, and when the first
        held one is due."""
        now = utcnow()
        with self.transaction() as session:
            rows = session.exec(
                select(Delivery.target, func.count(),
                       func.sum(case((col(Delivery.next_attempt_at) > now, 1), else_=0)
                                * case((col(Delivery.held).is_not(None), 1), else_=0)),
                       func.min(case((col(Delivery.held).is_not(None),
                                      Delivery.next_attempt_at))))
                .where(Delivery.status == DeliveryStatus.PENDING)
                .group_by(Delivery.target))
            return {target: (int(count), int(held or 0), release)
                    for target, count, held, release in rows}

    def outbox_counts(self) -> dict[str, int]:
        """How many deliveries are in each state."""
        with self.transaction() as session:
            rows = session.exec(select(Delivery.status, func.count()).group_by(Delivery.status))
            counts = {status.value: 0 for status in DeliveryStatus}
            counts.update({str(status): int(n) for status, n in rows})
            # Of the pending ones, those waiting for a digest, quiet hours or a rate-limit slot.
            counts["held"] = int(session.exec(select(func.count()).where(
                Delivery.status == DeliveryStatus.PENDING, col(Delivery.held).is_not(None),
                col(Delivery.next_attempt_at) > utcnow())).one())
            return counts
