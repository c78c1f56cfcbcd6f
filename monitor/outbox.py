"""The outbox stage: sending due alerts through Apprise, retrying, expiring, never dropping.

Targets are served in parallel and each target's alerts in order. Before sending, a process
claims the row for a lease (so two processes never send the same alert); the outcome is read
from Apprise's per-target result; a failure is retried with capped exponential backoff until
`delivery.expire_after`, when the alert is marked expired and logged as an error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from monitor import metrics
from monitor.logs import redact
from monitor.notifier import send
from monitor.pipeline import OWNER, Runtime, retry_at
from monitor.store import StoreError
from monitor.tables import Delivery, utcnow

log = logging.getLogger("monitor")


@dataclass(frozen=True)
class DeliveryReport:
    """The outcome of one pass over the due outbox rows."""

    sent: int = 0
    retrying: int = 0
    expired: int = 0


async def _deliver_one(rt: Runtime, delivery: Delivery) -> str:
    try:
        return await _send_one(rt, delivery)
    except StoreError as error:
        log.error("alert %s: database error, it stays in the outbox: %s", delivery.id, error)
        return "retrying"


async def _send_one(rt: Runtime, delivery: Delivery) -> str:
    assert delivery.id is not None
    lease = 2 * rt.config.delivery.timeout + 30
    if not await asyncio.to_thread(rt.store.claim, delivery.id, OWNER, lease):
        return "taken"  # another process is sending it
    target = next((t for t in rt.targets if t.id == delivery.target), None)
    if target is None:
        outcome_error = "target is no longer configured"
    else:
        body = delivery.body
        if delivery.entry_id is not None:
            others = await asyncio.to_thread(rt.store.story_sources, delivery.entry_id)
            if others:
                body += f"\n\nAlso reported by: {', '.join(others)}"
        outcome = await send(target, delivery.title, body, rt.config.delivery.timeout)
        if outcome.ok:
            await asyncio.to_thread(rt.store.mark_sent, delivery.id)
            log.info("alert %d sent to %s: %s", delivery.id, target.label, delivery.title)
            return "sent"
        outcome_error = redact(outcome.error or "failed")
    delivery_config = rt.config.delivery
    age = (utcnow() - delivery.created_at).total_seconds()
    name = target.label if target else delivery.target_name
    if age >= delivery_config.expire_after:
        await asyncio.to_thread(rt.store.mark_failed, delivery.id, outcome_error, None)
        log.error("alert %d to %s expired after %d attempts over %.0f h, not sent: %s (%s)",
                  delivery.id, name, delivery.attempts + 1, age / 3600, delivery.title,
                  outcome_error)
        return "expired"
    when = retry_at(delivery.attempts + 1, delivery_config.retry_base, delivery_config.retry_max)
    await asyncio.to_thread(rt.store.mark_failed, delivery.id, outcome_error, when)
    log.warning("alert %d to %s failed (attempt %d), retrying at %s UTC: %s", delivery.id, name,
                delivery.attempts + 1, when.strftime("%H:%M:%S"), outcome_error)
    return "retrying"


async def _drain(rt: Runtime, rows: Sequence[Delivery]) -> list[str]:
    """One target's due rows in order; after a failure the rest wait for the next pass."""
    outcomes: list[str] = []
    for delivery in rows:
        outcomes.append(await _deliver_one(rt, delivery))
        metrics.DELIVERIES.labels(outcomes[-1]).inc()
        if outcomes[-1] in ("retrying", "expired"):
            # The target is failing: the rest wait until this row's retry time.
            waiting = [d.id for d in rows[len(outcomes):] if d.id is not None]
            when = retry_at(1, rt.config.delivery.retry_base, rt.config.delivery.retry_max)
            await asyncio.to_thread(rt.store.release, waiting, when)
            break
    return outcomes


async def deliver_due(rt: Runtime, batch: int = 500) -> DeliveryReport:
    """Send due outbox rows, targets in parallel and each target's rows in order.

    A failure is retried later with backoff, never dropped; a row past `expire_after` is marked
    expired and logged as an error.
    """
    counts = {"sent": 0, "retrying": 0, "expired": 0, "taken": 0}
    while True:
        try:
            due = await asyncio.to_thread(rt.store.due_deliveries, batch)
        except StoreError as error:
            log.error("outbox: database error, delivery postponed: %s", error)
            return DeliveryReport()
        by_target: dict[str, list[Delivery]] = {}
        for delivery in due:
            by_target.setdefault(delivery.target, []).append(delivery)
        passes = await asyncio.gather(*(_drain(rt, rows) for rows in by_target.values()))
        sent_before = counts["sent"]
        for outcome in (o for outcomes in passes for o in outcomes):
            counts[outcome] += 1
        if len(due) < batch or counts["sent"] == sent_before:
            return DeliveryReport(counts["sent"], counts["retrying"], counts["expired"])
