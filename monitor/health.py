"""Feed health: which feeds keep failing or have gone quiet, and notices about them.

A feed is `failing` once its polls have failed without a success for `health.failing_after`,
and `stale` once it has brought no new entry for both `health.stale_after` and `stale_factor`
times its usual gap between new entries. Each change of state is logged and, when `health.tag`
is set, queued as a notice in the outbox for the targets carrying that tag, like any alert. A
notice quotes the feed's name and the server's reason, so it is stored as plain text (each on
one line, bounded) and written in each target's format, escaped, when it is sent.
A feed is never disabled: it keeps being polled (with backoff while failing).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta

from monitor.config import HealthConfig
from monitor.delivery.message import note, one_line
from monitor.delivery.notifier import Target
from monitor.models import DeliveryKind, Draft, HealthState
from monitor.storage.database import DatabaseFault
from monitor.storage.store import Store
from monitor.storage.tables import FeedRow, utcnow

log = logging.getLogger("monitor")
CADENCE_WINDOW = timedelta(days=30)


def feed_health(row: FeedRow, cadence: float | None, health: HealthConfig,
                now: datetime) -> HealthState:
    """`failing`, `stale` or `ok` for one feed's state row."""
    if row.failing_since and (now - row.failing_since).total_seconds() >= health.failing_after:
        return HealthState.FAILING
    if row.last_new_entry_at is not None:
        quiet = (now - row.last_new_entry_at).total_seconds()
        if quiet >= max(health.stale_after, health.stale_factor * (cadence or 0.0)):
            return HealthState.STALE
    return HealthState.OK


def _describe(row: FeedRow, state: HealthState, now: datetime) -> tuple[str, str]:
    """What changed, and why when the server said (a failing feed's last error), each on one
    line and bounded: the name and the reason come from outside."""
    name = one_line(row.name, 200)
    if state is HealthState.FAILING and row.failing_since:
        hours = (now - row.failing_since).total_seconds() / 3600
        return (f"feed {name} has been failing for {hours:.1f} h "
                f"({row.consecutive_failures} polls)", one_line(row.last_error or "", 300))
    if state is HealthState.STALE and row.last_new_entry_at:
        days = (now - row.last_new_entry_at).total_seconds() / 86400
        return f"feed {name} has brought no new entry for {days:.1f} days", ""
    return f"feed {name} is healthy again", ""


def check_health(store: Store, feeds: Collection[str], targets: Sequence[Target],
                 health: HealthConfig) -> int:
    """Update the health of each feed whose URL is in `feeds`; a change queues a notice to the
    targets tagged `health.tag`. Returns how many feeds changed state."""
    now = utcnow()
    receivers = [t for t in targets if health.tag and health.tag in t.tags]
    changed = 0
    for row in store.feeds.all():
        if row.url not in feeds or row.id is None:
            continue
        quiet = (now - row.last_new_entry_at).total_seconds() if row.last_new_entry_at else 0
        # The cadence (a query per feed) matters only to a feed quiet for stale_after already.
        cadence = store.feeds.cadence(row.id, now - CADENCE_WINDOW) \
            if quiet >= health.stale_after else None
        state = feed_health(row, cadence, health, now)
        if state == row.health:
            continue
        changed += 1
        headline, reason = _describe(row, state, now)
        text = f"{headline}: {reason}" if reason else headline
        (log.warning if state is not HealthState.OK else log.info)("health: %s", text)
        title, body = note(f"monitor: {headline}", [text])
        notices = [Draft(t.id, t.label, title, body, kind=DeliveryKind.NOTICE) for t in receivers]
        store.feeds.set_health(row.id, state, notices)
    return changed


def database_notice(before: DatabaseFault | None, now: DatabaseFault | None,
                    ended: datetime) -> tuple[str, str] | None:
    """The notice for a change in the database's state (None if it did not change): it started
    failing, or it is usable again after failing since `before.since` (until `ended`). Sent
    straight to the health targets: the outbox is in that database."""
    if before is None and now is not None:
        return note("monitor: database failing", [
            f"The database is failing since {now.since:%Y-%m-%d %H:%M} UTC: {now.reason}",
            "Polls are not recorded and no alert is queued until it works again."])
    if before is not None and now is None:
        minutes = max(1, round((ended - before.since).total_seconds() / 60))
        return note("monitor: database usable again", [
            f"The database works again after failing for about {minutes} min "
            f"(since {before.since:%Y-%m-%d %H:%M} UTC: {before.reason}).",
            "Stories published meanwhile are picked up by the next polls."])
    return None
