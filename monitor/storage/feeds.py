"""Feeds in the database: their rows, leases between instances, poll outcomes and health."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, func, or_, true, update
from sqlmodel import Session, col, select

from monitor.config import FeedConfig
from monitor.errors import UnknownFeed
from monitor.models import (
    Draft,
    Failure,
    FetchStatus,
    HealthState,
    LeaseEnd,
    LeaseRequest,
    Unchanged,
)
from monitor.sources.cadence import Cadence
from monitor.storage.database import IN_BATCH, Database, insert_new_rows
from monitor.storage.tables import Delivery, EntryRow, FeedRow, utcnow
from monitor.support.secrets import mask_url

# Hot paths use the Core table: the ORM's bulk insert/update machinery costs more CPU than
# the database's own work for the many small statements of a poll cycle.
FEEDS: Any = FeedRow.__table__  # type: ignore[attr-defined]


def _kept_unless(flag: str, value: str, column: Any) -> Any:
    """`value` where the bound `flag` is true, else the column as it is."""
    return case((bindparam(flag) == true(), bindparam(value, type_=column.type)), else_=column)


# A poll that brought nothing new, as one statement for executemany: validators and body hash
# only change on a 200 (not on a 304), and the lease ends only if this instance still holds it.
_UNCHANGED: Any = update(FEEDS).where(FEEDS.c.id == bindparam("p_id")).values(
    last_status=bindparam("p_status"), http_status=bindparam("p_http"),
    consecutive_failures=0, last_error=None, next_poll_at=None, failing_since=None,
    etag=_kept_unless("p_ok", "p_etag", FEEDS.c.etag),
    last_modified=_kept_unless("p_ok", "p_modified", FEEDS.c.last_modified),
    body_hash=_kept_unless("p_ok", "p_hash", FEEDS.c.body_hash),
    lease_until=case((FEEDS.c.lease_owner == bindparam("p_owner"),
                      bindparam("p_until", type_=FEEDS.c.lease_until.type)),
                     else_=FEEDS.c.lease_until))


def record_state(session: Session, poll: Unchanged, now: datetime, new: int) -> None:
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
    session.execute(update(FEEDS).where(FEEDS.c.id == poll.feed_id).values(**values))


def _released(release: LeaseEnd) -> dict[str, Any]:
    """Column values that end the lease, if this instance still holds it."""
    return {"lease_until": case((col(FeedRow.lease_owner) == release.owner, release.until),
                                else_=col(FeedRow.lease_until))}


class Feeds:
    """Each configured feed's state: leases between instances, poll outcomes, health."""

    def __init__(self, db: Database):
        self.db = db

    def ensure(self, feeds: Sequence[FeedConfig]) -> None:
        """Create a row for each configured feed that has none; keep names current."""
        with self.db.transaction() as session:
            rows = {r.url: r for r in session.exec(select(FeedRow))}
            missing = [{"url": f.url, "name": f.title, "entries_seen": 0,
                        "consecutive_failures": 0, "health": HealthState.OK}
                       for f in feeds if f.url not in rows]
            if missing:  # another instance may be adding the same feeds right now
                insert_new_rows(session, FeedRow, missing)
            for feed in feeds:
                row = rows.get(feed.url)
                if row is not None and row.name != feed.title:
                    row.name = feed.title

    def get(self, url: str) -> FeedRow:
        """The state row of a configured feed."""
        with self.db.transaction() as session:
            row = session.exec(select(FeedRow).where(FeedRow.url == url)).first()
            if row is None:
                raise UnknownFeed(f"feed {mask_url(url)} is not in the database")
            return row

    def all(self) -> list[FeedRow]:
        """Every feed row, by name."""
        with self.db.transaction() as session:
            return list(session.exec(select(FeedRow).order_by(col(FeedRow.name))))

    def lease_one(self, url: str, owner: str, lease: float,
                  respect_backoff: bool = True) -> FeedRow | None:
        """Take a feed for `lease` seconds and return its state, unless another instance holds
        it (or, with `respect_backoff`, it is backing off after failures): then None."""
        return self.lease([LeaseRequest(url, owner, lease, respect_backoff)])[0]

    def lease(self, claims: Sequence[LeaseRequest]) -> list[FeedRow | None]:
        """`lease_one` for many feeds in one transaction, results in the same order."""
        now = utcnow()
        taken: dict[str, FeedRow] = {}
        groups: dict[tuple[str, float, bool], list[str]] = {}
        for claim in claims:
            groups.setdefault((claim.owner, claim.lease, claim.respect_backoff),
                              []).append(claim.url)
        with self.db.transaction() as session:
            for (owner, lease, respect_backoff), urls in groups.items():
                for start in range(0, len(urls), IN_BATCH):
                    conditions = [
                        FEEDS.c.url.in_(urls[start:start + IN_BATCH]),
                        or_(FEEDS.c.lease_until.is_(None), FEEDS.c.lease_until <= now,
                            FEEDS.c.lease_owner == owner)]
                    if respect_backoff:
                        conditions.append(or_(FEEDS.c.next_poll_at.is_(None),
                                              FEEDS.c.next_poll_at <= now))
                    rows = session.execute(
                        update(FEEDS).where(*conditions)
                        .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease))
                        .returning(*FEEDS.c))
                    taken.update((row.url, FeedRow(**row._mapping)) for row in rows)
        return [taken.get(claim.url) for claim in claims]

    def end_lease(self, feed_id: int, owner: str, hold: float) -> None:
        """End this instance's lease on a feed, keeping it `hold` more seconds."""
        with self.db.transaction() as session:
            session.execute(update(FeedRow).where(col(FeedRow.id) == feed_id,
                                                  col(FeedRow.lease_owner) == owner)
                            .values(lease_until=utcnow() + timedelta(seconds=hold)))

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
        with self.db.transaction() as session:
            session.execute(_UNCHANGED.values(last_poll_at=now, last_success_at=now), rows)
        return [None] * len(polls)

    def record_failure(self, feed_id: int, failure: Failure, retry_at: datetime,
                       release: LeaseEnd | None = None) -> int:
        """Record a failed poll (and end this instance's lease); returns the feed's consecutive
        failures so far."""
        with self.db.transaction() as session:
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

    def set_health(self, feed_id: int, state: HealthState, notices: Sequence[Draft]) -> None:
        """Record a feed's new health state and queue its notices, in one transaction."""
        with self.db.transaction() as session:
            session.execute(update(FeedRow).where(col(FeedRow.id) == feed_id)
                            .values(health=state))
            for notice in notices:
                session.add(Delivery(entry_id=None, target=notice.target,
                                     target_name=notice.target_name, watchlists="",
                                     title=notice.title, body=notice.body, kind=notice.kind))

    def set_pace(self, feed_id: int, cadence: Cadence, hint: float | None) -> None:
        """Keep the interval learned for a feed, why, and what its server asks for."""
        with self.db.transaction() as session:
            session.execute(update(FeedRow).where(col(FeedRow.id) == feed_id).values(
                cadence=cadence.seconds, cadence_reason=cadence.reason[:300], cadence_hint=hint))

    def boost(self, watchlists: Sequence[str], until: datetime, since: datetime) -> list[str]:
        """Poll at the minimum until `until` every feed that matched one of `watchlists`
        since `since`; their URLs."""
        carried = or_(*(col(EntryRow.matched).contains(json.dumps(name)) for name in watchlists))
        with self.db.transaction() as session:
            feeds = select(EntryRow.feed_id).where(carried, col(EntryRow.seen_at) >= since)
            rows = session.execute(update(FEEDS).where(FEEDS.c.id.in_(feeds.distinct()))
                                   .values(boost_until=until).returning(FEEDS.c.url))
            return [str(url) for url, in rows]

    def seen_times(self, feed_id: int, since: datetime) -> list[datetime]:
        """When polls brought the feed new entries since `since` (at most 500 such times)."""
        with self.db.transaction() as session:
            return list(session.exec(
                select(EntryRow.seen_at).distinct()
                .where(EntryRow.feed_id == feed_id, col(EntryRow.seen_at) >= since)
                .order_by(col(EntryRow.seen_at).desc()).limit(500)))

    def cadence(self, feed_id: int, since: datetime) -> float | None:
        """Average seconds between the polls that brought a feed new entries since `since`."""
        with self.db.transaction() as session:
            first, last, polls = session.exec(
                select(func.min(EntryRow.seen_at), func.max(EntryRow.seen_at),
                       func.count(func.distinct(EntryRow.seen_at)))
                .where(EntryRow.feed_id == feed_id, col(EntryRow.seen_at) >= since)).one()
        if not polls or polls < 2 or first is None or last is None:
            return None
        return float((last - first).total_seconds()) / (polls - 1)
