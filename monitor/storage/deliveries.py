"""The outbox in the database: alerts, notes and notices queued per target, until sent or
expired, and the messages sent (for rate limits)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import case, delete, func, update
from sqlmodel import col, select

from monitor.storage.database import Database
from monitor.storage.tables import Delivery, DeliveryStatus, MessageRow, utcnow


class Outbox:
    """Messages waiting for their targets: claims between processes, holds, outcomes."""

    def __init__(self, db: Database):
        self.db = db

    def due(self, limit: int = 100, now: datetime | None = None) -> list[Delivery]:
        """Pending deliveries whose next attempt is due, oldest first (not yet claimed)."""
        with self.db.transaction() as session:
            return list(session.exec(
                select(Delivery)
                .where(Delivery.status == DeliveryStatus.PENDING,
                       col(Delivery.next_attempt_at) <= (now or utcnow()))
                .order_by(col(Delivery.id)).limit(limit)))

    def take(self, delivery_ids: Sequence[int], owner: str, lease: float,
             now: datetime | None = None) -> list[int]:
        """Take due deliveries for `lease` seconds; those another process has are left out.

        A claimed row is not due for anyone else until the lease ends, so two processes never
        send the same alert; if the owner dies mid-send, the lease ends (or `Instances.free_dead`
        frees it at the next start) and the alert is sent again: at least once, never lost.
        """
        now = now or utcnow()
        with self.db.transaction() as session:
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
        with self.db.transaction() as session:
            for delivery_id, (until, reason) in held.items():
                session.execute(update(Delivery).where(
                    col(Delivery.id) == delivery_id,
                    col(Delivery.status) == DeliveryStatus.PENDING)
                    .values(next_attempt_at=until, held=reason))

    def sent_since(self, target: str, since: datetime) -> list[datetime]:
        """When the messages to `target` since `since` were sent, oldest first."""
        with self.db.transaction() as session:
            return list(session.exec(
                select(MessageRow.sent_at)
                .where(MessageRow.target == target, col(MessageRow.sent_at) > since)
                .order_by(col(MessageRow.sent_at))))

    def postpone(self, delivery_ids: Sequence[int], when: datetime) -> None:
        """Give back claimed deliveries that were not attempted; due again at `when`."""
        if not delivery_ids:
            return
        with self.db.transaction() as session:
            session.execute(update(Delivery).where(col(Delivery.id).in_(delivery_ids))
                            .values(next_attempt_at=when))

    def mark_sent(self, delivery_ids: Sequence[int], target: str, digest: bool = False,
                  now: datetime | None = None, follow_up: Delivery | None = None) -> None:
        """The target accepted one message carrying these deliveries; `follow_up` (a note
        the sender decided on) is queued in the same transaction."""
        now = now or utcnow()
        with self.db.transaction() as session:
            session.execute(update(Delivery).where(col(Delivery.id).in_(delivery_ids)).values(
                status=DeliveryStatus.SENT, sent_at=now, attempts=Delivery.attempts + 1,
                last_error=None))
            session.add(MessageRow(target=target, sent_at=now, alerts=len(delivery_ids),
                                   digest=digest))
            if follow_up is not None:
                session.add(follow_up)

    def drop(self, delivery_ids: Sequence[int]) -> None:
        """Forget deliveries that turned out to have nothing to say."""
        with self.db.transaction() as session:
            session.execute(delete(Delivery).where(col(Delivery.id).in_(delivery_ids)))

    def mark_failed(self, delivery_ids: Sequence[int], error: str,
                    retry_at: datetime | None) -> None:
        """The attempt failed: try again at `retry_at`, or give up (expired) when it is None."""
        status = DeliveryStatus.PENDING if retry_at else DeliveryStatus.EXPIRED
        with self.db.transaction() as session:
            session.execute(update(Delivery).where(col(Delivery.id).in_(delivery_ids)).values(
                status=status, attempts=Delivery.attempts + 1, last_error=error[:2000],
                next_attempt_at=retry_at or utcnow()))

    def waiting_by_target(self) -> dict[str, tuple[int, int, datetime | None]]:
        """Per target id: pending alerts, how many of them are held back, and when the first
        held one is due."""
        now = utcnow()
        with self.db.transaction() as session:
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

    def last_errors(self) -> dict[str, str]:
        """Per target id: why the latest failed attempt at one of its waiting messages failed."""
        with self.db.transaction() as session:
            rows = session.exec(
                select(Delivery.target, Delivery.last_error)
                .where(Delivery.status == DeliveryStatus.PENDING,
                       col(Delivery.last_error).is_not(None))
                .order_by(col(Delivery.id)))
            return {target: error for target, error in rows if error}

    def oldest_refused(self) -> datetime | None:
        """When the oldest waiting message that a target has refused at least once was
        queued (None when no waiting message has failed)."""
        with self.db.transaction() as session:
            oldest: datetime | None = session.exec(
                select(func.min(Delivery.created_at))
                .where(Delivery.status == DeliveryStatus.PENDING, Delivery.attempts > 0)).one()
            return oldest

    def counts(self) -> dict[str, int]:
        """How many deliveries are in each state."""
        with self.db.transaction() as session:
            rows = session.exec(select(Delivery.status, func.count()).group_by(Delivery.status))
            counts = {status.value: 0 for status in DeliveryStatus}
            counts.update({str(status): int(n) for status, n in rows})
            # Of the pending ones, those waiting for a digest, quiet hours or a rate-limit slot.
            counts["held"] = int(session.exec(select(func.count()).where(
                Delivery.status == DeliveryStatus.PENDING, col(Delivery.held).is_not(None),
                col(Delivery.next_attempt_at) > utcnow())).one())
            return counts
