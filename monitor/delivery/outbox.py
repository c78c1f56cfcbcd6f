"""The outbox stage: sending due alerts through Apprise, paced, retrying, expiring, never dropping.

Targets are served in parallel and each target's alerts in order. `schedule.plan` says what goes
now — alone or folded into one digest — and what waits (quiet hours, digest times, rate limits).
Before sending, a process claims the rows for a lease (so two processes never send the same
alert); messages are rendered for the target then (`message`), off the event loop (a user's
template renders in a worker process), so a story lists every source that reported it by that
time; notes and notices stored as plain text are written in the target's format then too, and a
title goes escaped where the channel writes it into the body. A failure is retried with capped
exponential backoff until `delivery.expire_after`, when the alerts are marked expired and logged
as an error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from monitor.config import DeliveryConfig
from monitor.delivery.message import (
    AlertFields,
    Story,
    escape,
    render_digest,
    render_note,
    render_sources,
    render_story,
)
from monitor.delivery.notifier import Target, send, title_in_body
from monitor.delivery.schedule import DIGEST, Pending, plan
from monitor.errors import StoreError
from monitor.models import DeliveryKind, DeliveryOutcome, DeliveryReport, Priority
from monitor.storage.store import Store
from monitor.storage.tables import Delivery, utcnow
from monitor.support import metrics
from monitor.support.backoff import retry_at
from monitor.support.instance import OWNER
from monitor.support.secrets import redact

log = logging.getLogger("monitor")


_NOTE_LABELS: dict[str, str] = {DeliveryKind.UPDATE: "update", DeliveryKind.NOTICE: "health"}


def _story(store: Store, delivery: Delivery, target: Target) -> Story:
    """The delivery as a story for `target`: its recorded facts and the sources that reported
    it so far (a notice or an old row without facts becomes a story of its own title)."""
    if delivery.fields:
        # A sources note names only the outlets that reported the story since its alert.
        since = delivery.created_at if delivery.kind == DeliveryKind.SOURCES else None
        sources = store.entries.story_sources(delivery.entry_id, since) if delivery.entry_id else []
        return Story(AlertFields.from_json(delivery.fields), tuple(sources), target.style.zone)
    # A note has no watchlist: in a digest it is labelled by its kind ("update", "health").
    label = delivery.watchlists or _NOTE_LABELS.get(delivery.kind, delivery.kind)
    fields = AlertFields(title=delivery.title, link=None, feed="monitor", published=None,
                         language=None, watchlists=(label,),
                         priority=Priority.NORMAL, terms="", snippet="")
    return Story(fields, zone=target.style.zone)


def _stories(store: Store, rows: Sequence[Delivery],
             target: Target) -> list[tuple[Delivery, Story]]:
    """Each row with its story (one database read each), without the sources notes of stories
    no other outlet reported since their alert: those are deleted, having nothing to say."""
    pairs = [(row, _story(store, row, target)) for row in rows]
    empty = [row.id for row, story in pairs
             if row.kind == DeliveryKind.SOURCES and not story.sources and row.id is not None]
    if empty:
        store.outbox.drop(empty)
    return [(row, story) for row, story in pairs if row.id not in empty]


def _compose(pairs: Sequence[tuple[Delivery, Story]], target: Target, reasons: Sequence[str],
             later: int) -> tuple[str, str]:
    """Title (plain text) and body (in the target's format) of the one message carrying these
    rows; a template renders in a worker process, so call this off the event loop."""
    style = target.style
    if len(pairs) == 1 and not reasons:
        row, story = pairs[0]
        if row.kind == DeliveryKind.SOURCES:
            return render_sources(story, style)
        if row.fields:
            return render_story(story, style, target.label)
        return render_note(row.title, row.body, style)  # notices, updates, version-1 alerts
    return render_digest([story for _, story in pairs], style, " and ".join(reasons) or DIGEST,
                         later)


def _message_text(pairs: Sequence[tuple[Delivery, Story]], target: Target,
                  reasons: Sequence[str], later: int) -> tuple[str, str, str]:
    """The message's title (plain text, for the log), its title as sent (escaped like the
    body where the channel writes the title into the message) and its body."""
    title, body = _compose(pairs, target, reasons, later)
    sent = escape(title, target.style.format) if title_in_body(target.url) else title
    return title, sent, body


@dataclass(frozen=True)
class _Message:
    """Outbox rows that go out as one message: one alert, or a digest (why it was held, and
    how many more wait for the next one)."""

    rows: list[Delivery]
    reasons: list[str] = field(default_factory=list)
    later: int = 0


def _sources_note(sent: Delivery, target: Target, now: datetime) -> Delivery | None:
    """The "also reported by" note to queue after an alert sent alone, `sources_after` later,
    for a target that asked for one."""
    if not (target.sources_after and sent.kind == DeliveryKind.ALERT and sent.entry_id
            and sent.fields):
        return None
    return Delivery(entry_id=sent.entry_id, target=sent.target, target_name=sent.target_name,
                    kind=DeliveryKind.SOURCES, watchlists=sent.watchlists, title=sent.title,
                    body="", fields=sent.fields,
                    # Entries' seen_at is wall-clock time, not `now` (which tests move): the
                    # note's "since" must be on the same clock.
                    created_at=utcnow(), next_attempt_at=now + target.sources_after)


async def _send_message(store: Store, config: DeliveryConfig, target: Target, message: _Message,
                        now: datetime) -> DeliveryOutcome:
    """Claim the message's rows, send them as one message, record the outcome."""
    lease = 2 * config.timeout + 30
    rows = message.rows
    ids = [row.id for row in rows if row.id is not None]
    claimed = await asyncio.to_thread(store.outbox.take, ids, OWNER, lease, now)
    if not claimed:
        return DeliveryOutcome.TAKEN
    pairs = await asyncio.to_thread(_stories, store, [r for r in rows if r.id in claimed],
                                    target)
    if not pairs:
        return DeliveryOutcome.DROPPED
    rows = [row for row, _ in pairs]
    claimed = [row.id for row in rows if row.id is not None]
    title, sent_title, body = await asyncio.to_thread(_message_text, pairs, target,
                                                      message.reasons, message.later)
    outcome = await send(target, sent_title, body, target.timeout or config.timeout,
                         target.style.format)
    if outcome.ok:
        follow_up = _sources_note(rows[0], target, now) if len(rows) == 1 else None
        await asyncio.to_thread(store.outbox.mark_sent, claimed, target.id, len(rows) > 1, now,
                                follow_up)
        what = f"digest of {len(rows)}" if len(rows) > 1 else f"alert {claimed[0]}"
        log.info("%s sent to %s: %s", what, target.label, title)
        return DeliveryOutcome.SENT
    return await _failed(store, config, target.label, rows, redact(outcome.error or "failed"),
                         now=now)


async def _failed(store: Store, config: DeliveryConfig, label: str, rows: Sequence[Delivery],
                  error: str, *, now: datetime) -> DeliveryOutcome:
    """Retry the rows of a failed message later, or expire them once too old."""
    oldest = rows[0]
    ids = [row.id for row in rows if row.id is not None]
    age = (now - min(row.created_at for row in rows)).total_seconds()
    what = f"alert {ids[0]}" if len(ids) == 1 else f"digest of {len(ids)} alerts"
    if age >= config.expire_after:
        await asyncio.to_thread(store.outbox.mark_failed, ids, error, None)
        log.error("%s to %s expired after %d attempts over %.0f h, not sent: %s (%s)", what,
                  label, oldest.attempts + 1, age / 3600, oldest.title, error)
        return DeliveryOutcome.EXPIRED
    when = retry_at(oldest.attempts + 1, config.retry_base, config.retry_max)
    await asyncio.to_thread(store.outbox.mark_failed, ids, error, when)
    log.warning("%s to %s failed (attempt %d), retrying at %s UTC: %s", what, label,
                oldest.attempts + 1, when.strftime("%H:%M:%S"), error)
    return DeliveryOutcome.RETRYING


async def _orphans(store: Store, config: DeliveryConfig, rows: Sequence[Delivery],
                   now: datetime) -> list[DeliveryOutcome]:
    """Rows for a target no longer configured: they fail, and expire like any other."""
    return [await _failed(store, config, row.target_name, [row], "target is no longer configured",
                          now=now)
            for row in rows]


def _pending(row: Delivery) -> Pending:
    assert row.id is not None
    priority = AlertFields.from_json(row.fields).priority if row.fields else Priority.NORMAL
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


async def _drain(store: Store, config: DeliveryConfig, target: Target, rows: Sequence[Delivery],
                 now: datetime) -> list[DeliveryOutcome]:
    """One target's due rows, paced by its policy, in order; after a failure the rest wait."""
    window = target.policy.rate_limit[1] if target.policy.rate_limit else None
    sent = await asyncio.to_thread(store.outbox.sent_since, target.id, now - window) \
        if window else []
    decided = plan(target.policy, [_pending(row) for row in rows], sent, now)
    if decided.hold:
        await asyncio.to_thread(store.outbox.hold, decided.hold)
        _log_held(target, decided.hold)
    by_id = {row.id: row for row in rows}
    messages = [_Message([by_id[i]]) for i in decided.singles]
    if decided.digest:
        messages.append(_Message([by_id[i] for i in decided.digest], decided.reasons,
                                 decided.later))
    # One outcome per alert, a digest's outcome counting for each of its alerts.
    outcomes: list[DeliveryOutcome] = []
    for number, message in enumerate(messages):
        outcome = await _send_message(store, config, target, message, now)
        outcomes += [outcome] * len(message.rows)
        if outcome in (DeliveryOutcome.RETRYING, DeliveryOutcome.EXPIRED):
            # The target is failing: the rest wait until this message's retry time.
            waiting = [r.id for m in messages[number + 1:] for r in m.rows if r.id is not None]
            when = retry_at(1, config.retry_base, config.retry_max)
            await asyncio.to_thread(store.outbox.postpone, waiting, when)
            break
    return outcomes


async def _serve(store: Store, config: DeliveryConfig, target: Target | None,
                 rows: Sequence[Delivery], now: datetime) -> list[DeliveryOutcome]:
    try:
        if target is None:
            return await _orphans(store, config, rows, now)
        return await _drain(store, config, target, rows, now)
    except StoreError as error:
        log.error("outbox for %s: database error, its alerts stay in the outbox: %s",
                  target.label if target else rows[0].target_name, error)
        return [DeliveryOutcome.RETRYING]


async def deliver_due(store: Store, targets: Sequence[Target], config: DeliveryConfig, *,
                      batch: int = 500, now: datetime | None = None) -> DeliveryReport:
    """Send due outbox rows, targets in parallel and each target's rows in order, at the pace
    each target asked for (`now`: the clock, for tests).

    A failure is retried later with backoff, never dropped; a row past `expire_after` is marked
    expired and logged as an error.
    """
    counts = dict.fromkeys(DeliveryOutcome, 0)
    by_id = {target.id: target for target in targets}
    while True:
        moment = now or utcnow()
        try:
            due = await asyncio.to_thread(store.outbox.due, batch, moment)
        except StoreError as error:
            log.error("outbox: database error, delivery postponed: %s", error)
            return DeliveryReport()
        by_target: dict[str, list[Delivery]] = {}
        for delivery in due:
            by_target.setdefault(delivery.target, []).append(delivery)
        passes = await asyncio.gather(*(_serve(store, config, by_id.get(target), rows, moment)
                                        for target, rows in by_target.items()))
        sent_before = counts[DeliveryOutcome.SENT]
        for outcome in (o for outcomes in passes for o in outcomes):
            counts[outcome] += 1
            metrics.DELIVERIES.labels(outcome).inc()
        if len(due) < batch or counts[DeliveryOutcome.SENT] == sent_before:
            return DeliveryReport(counts[DeliveryOutcome.SENT], counts[DeliveryOutcome.RETRYING],
                                  counts[DeliveryOutcome.EXPIRED])
