"""Instances in the database: which processes share it, and freeing what dead ones held."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import update
from sqlmodel import col, select

from monitor.storage.database import Database
from monitor.storage.tables import Delivery, DeliveryStatus, FeedRow, InstanceRow, utcnow


class Instances:
    """The processes sharing this database, and freeing what dead ones held."""

    def __init__(self, db: Database):
        self.db = db

    def heartbeat(self, owner: str, host: str, pid: int, version: str) -> None:
        """Record that this instance is alive."""
        with self.db.transaction() as session:
            row = session.get(InstanceRow, owner)
            if row is None:
                session.add(InstanceRow(id=owner, host=host, pid=pid, version=version))
            else:
                row.heartbeat_at = utcnow()

    def retire(self, owner: str) -> None:
        """Forget an instance that stops cleanly (a killed one stays, shown as gone)."""
        with self.db.transaction() as session:
            row = session.get(InstanceRow, owner)
            if row is not None:
                session.delete(row)

    def all(self) -> list[InstanceRow]:
        """Every instance that ever used this database, most recent first."""
        with self.db.transaction() as session:
            return list(session.exec(select(InstanceRow)
                                     .order_by(col(InstanceRow.heartbeat_at).desc())))

    def free_dead(self, host: str, alive: Callable[[int], bool]) -> int:
        """Free the alerts and feeds claimed by processes on `host` that no longer run."""
        def dead(owner: str | None) -> bool:
            pid = (owner or "").rsplit(":", 1)[-1]
            return pid.isdigit() and not alive(int(pid))

        with self.db.transaction() as session:
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
