"""The outbox stage: sending due alerts through Apprise, paced, retrying, expiring, never dropping.

Targets are served in parallel and each target's alerts in order. `schedule.plan` says what goes
now — alone or folded into one digest — and what waits (quiet hours, digest times, rate limits).
Before sending, a process claims the rows for a lease (so two processes never send the same
alert); messages are rendered for the target then (`message`), so a story lists every source
that reported it by that time. A failure is retried with capped exponential backoff until
`delivery.expire_after`, when the alerts are marked expired and logged as an error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from monitor import metrics
from monitor.logs import redact
from monitor.message import AlertFields, Story, render_digest, render_sources, render_story
from monitor.notifier import Target, send
from monitor.pipeline import OWNER, Runtime, retry_at
from monitor.schedule import DIGEST, Pending, plan
from monitor.store import StoreError
from monitor.tables import Delivery, utcnow

log = logging.getLogger("monitor")


@dataclass(frozen=True)
class DeliveryReport:
    """The outcome of one pass over the due outbox rows."""

    sent: int = 0
    retrying: int = 0
    expired: int = 0


def _story(rt: Runtime, delivery: Delivery, target: Target) -> Story:
    """The delivery as a story for `target`: its recorded facts and the sources that reported
    it so far (a notice or an old row without facts becomes a story of its own title)."""
    if delivery.fields:
        # A sources note names only the outlets that reported the story since its alert.
        since = delivery.created_at if delivery.kind == "sources" else None
        sources = rt.store.story_sources(delivery.entry_id, since) if delivery.entry_id else []
        return Story(AlertFields.from_json(delivery.fields), tuple(sources), target.style.zone)
    fields = AlertFields(title=delivery.title, link=None, feed="monitor", published=None,
                         language=None, watchlists=(delivery.watchlists or delivery.kind,),
                         priority="normal", terms="", snippet="")
    return Story(fields, zone=target.style.zone)


def _drop_empty_notes(rt: Runtime, rows: Sequence[Delivery], target: Target) -> list[Delivery]:
    """`rows` without the sources notes of stories no other outlet reported since their alert
    (those are deleted: they have nothing to say)."""
    empty = [row.id for row in rows if row.kind == "sources" and row.id is not None
             and not _story(rt, row, target).sources]
    if empty:
        rt.store.drop(empty)
    return [row for row in rows if row.id not in empty]


def _compose(rt: Runtime, rows: Sequence[Delivery], target: Target,
             reasons: Sequence[str]) -> tuple[str, str, str]:
    """Title, body and body format of the one message carrying `rows`."""
    if len(rows) == 1 and not reasons:
        row = rows[0]
        if row.kind == "sources":
            return (*render_sources(_story(rt, row, target)), "markdown")
        if row.fields:
            return (*render_story(_story(rt, row, target), target.style), target.style.format)
        return row.title, row.body, "markdown"  # notices and updates are written in markdown
    stories = [_story(rt, row, target) for row in rows]
    return (*render_digest(stories, target.style, " and ".join(reasons) or DIGEST,
                           target.digest_limit), target.style.format)


async def _send_message(rt: Runtime, target: Target, rows: Sequence[Delivery],
                        reasons: Sequence[str], now: datetime) -> str:
    """Claim `rows`, send them as one message, record the outcome; "sent", "retrying",
    "expired" or "taken"."""
    lease = 2 * rt.config.delivery.timeout + 30
    ids = [row.id for row in rows if row.id is not None]
    claimed = await asyncio.to_thread(rt.store.claim, ids, OWNER, lease, now)
    rows = [row for row in rows if row.id in claimed]
    if not rows:
        return "taken"  # another process is sending them
    rows = await asyncio.to_thread(_drop_empty_notes, rt, rows, target)
    if not rows:
        return "dropped"
    claimed = [row.id for row in rows if row.id is not None]
    title, body, body_format = await asyncio.to_thread(_compose, rt, rows, target, reasons)
    outcome = await send(target, title, body, rt.config.delivery.timeout, body_format)
    if outcome.ok:
        single = rows[0] if len(rows) == 1 and rows[0].kind == "alert" else None
        note_at = now + target.sources_after if single and single.entry_id and \
            single.fields and target.sources_after else None
        await asyncio.to_thread(rt.store.mark_sent, claimed, target.id, len(rows) > 1, now,
                                note_at)
        what = f"digest of {len(rows)}" if len(rows) > 1 else f"alert {claimed[0]}"
        log.info("%s sent to %s: %s", what, target.label, title)
        return "sent"
    return await _failed(rt, target, rows, redact(outcome.error or "failed"), now)


async def _failed(rt: Runtime, target: Target, rows: Sequence[Delivery], error: str,
                  now: datetime) -> str:
    config, oldest = rt.config.delivery, rows[0]
    ids = [row.id for row in rows if row.id is not None]
    age = (now - min(row.created_at for row in rows)).total_seconds()
    what = f"alert {ids[0]}" if len(ids) == 1 else f"digest of {len(ids)} alerts"
    if age >= config.expire_after:
        await asyncio.to_thread(rt.store.mark_failed, ids, error, None)
        log.error("%s to %s expired after %d attempts over %.0f h, not sent: %s (%s)", what,
                  target.label, oldest.attempts + 1, age / 3600, oldest.title, error)
        return "expired"
    when = retry_at(oldest.attempts + 1, config.retry_base, config.retry_max)
    await asyncio.to_thread(rt.store.mark_failed, ids, error, when)
    log.warning("%s to %s failed (attempt %d), retrying at %s UTC: %s", what, target.label,
                oldest.attempts + 1, when.strftime("%H:%M:%S"), error)
    return "retrying"


async def _orphans(rt: Runtime, rows: Sequence[Delivery], now: datetime) -> list[str]:
    """Rows for a target no longer configured: they fail, and expire like any other."""
    outcomes = []
    for row in rows:
        assert row.id is not None
        age = (now - row.created_at).total_seconds()
        error = "target is no longer configured"
        if age >= rt.config.delivery.expire_after:
            await asyncio.to_thread(rt.store.mark_failed, [row.id], error, None)
            outcomes.append("expired")
        else:
            when = retry_at(row.attempts + 1, rt.config.delivery.retry_base,
                            rt.config.delivery.retry_max)
            await asyncio.to_thread(rt.store.mark_failed, [row.id], error, when)
            outcomes.append("retrying")
        log.warning("alert %d: %s (%s)", row.id, error, row.target_name)
    return outcomes


def _pending(row: Delivery) -> Pending:
    assert row.id is not None
    priority = AlertFields.from_json(row.fields).priority if row.fields else "normal"
    return Pending(row.id, priority, row.held, row.created_at)


def _log_held(target: Target, held: dict[int, tuple[datetime, str]]) -> None:
    """One line per reason: how many alerts to `target` wait, and until when (local time)."""
    by_reason: dict[str, list[datetime]] = {}
    for until, reason in held.values():
        by_reason.setdefault(reason, []).append(until)
    for reason, times in by_reason.items():
        local = min(times).astimezone(target.style.zone)
        log.info("%d alert%s to %s held until %s (%s)", len(times), "s" * (len(times) > 1),
                 target.label, local.strftime("%Y-%m-%d %H:%M %Z"), reason)


async def _drain(rt: Runtime, target: Target, rows: Sequence[Delivery],
                 now: datetime) -> list[str]:
    """One target's due rows, paced by its policy, in order; after a failure the rest wait."""
    window = target.policy.rate_limit[1] if target.policy.rate_limit else None
    sent = await asyncio.to_thread(rt.store.sent_since, target.id, now - window) \
        if window else []
    decided = plan(target.policy, [_pending(row) for row in rows], sent, now)
    if decided.hold:
        await asyncio.to_thread(rt.store.hold, decided.hold)
        _log_held(target, decided.hold)
    by_id = {row.id: row for row in rows}
    messages: list[tuple[list[Delivery], list[str]]] = [([by_id[i]], []) for i in decided.singles]
    if decided.digest:
        messages.append(([by_id[i] for i in decided.digest], decided.reasons))
    outcomes: list[str] = []  # one per alert, a digest's outcome counting for each of its
    for number, (members, reasons) in enumerate(messages):
        outcome = await _send_message(rt, target, members, reasons, now)
        outcomes += [outcome] * len(members)
        if outcome in ("retrying", "expired"):
            # The target is failing: the rest wait until this message's retry time.
            waiting = [r.id for m, _ in messages[number + 1:] for r in m if r.id is not None]
            when = retry_at(1, rt.config.delivery.retry_base, rt.config.delivery.retry_max)
            await asyncio.to_thread(rt.store.release, waiting, when)
            break
    return outcomes


async def _serve(rt: Runtime, target_id: str, rows: Sequence[Delivery],
                 now: datetime) -> list[str]:
    target = next((t for t in rt.targets if t.id == target_id), None)
    try:
        if target is None:
            return await _orphans(rt, rows, now)
        return await _drain(rt, target, rows, now)
    except StoreError as error:
        log.error("outbox for %s: database error, its alerts stay in the outbox: %s",
                  target.label if target else rows[0].target_name, error)
        return ["retrying"]


async def deliver_due(rt: Runtime, batch: int = 500,
                      now: datetime | None = None) -> DeliveryReport:
    """Send due outbox rows, targets in parallel and each target's rows in order, at the pace
    each target asked for (`now`: the clock, for tests).

    A failure is retried later with backoff, never dropped; a row past `expire_after` is marked
    expired and logged as an error.
    """
    counts = {"sent": 0, "retrying": 0, "expired": 0, "taken": 0, "dropped": 0}
    while True:
        moment = now or utcnow()
        try:
            due = await asyncio.to_thread(rt.store.due_deliveries, batch, moment)
        except StoreError as error:
            log.error("outbox: database error, delivery postponed: %s", error)
            return DeliveryReport()
        by_target: dict[str, list[Delivery]] = {}
        for delivery in due:
            by_target.setdefault(delivery.target, []).append(delivery)
        passes = await asyncio.gather(*(_serve(rt, target, rows, moment)
                                        for target, rows in by_target.items()))
        sent_before = counts["sent"]
        for outcome in (o for outcomes in passes for o in outcomes):
            counts[outcome] += 1
            metrics.DELIVERIES.labels(outcome).inc()
        if len(due) < batch or counts["sent"] == sent_before:
            return DeliveryReport(counts["sent"], counts["retrying"], counts["expired"])
