"""Pacing: when each target's alerts go out — immediately, in digests, after quiet hours, within a
rate limit. Pure functions of the target's policy, its due alerts, what it was sent lately and
the time, so the outbox can ask "what now?" and tests can move the clock.

Alerts are never dropped: one that may not go now is held (with the reason) until a time when it
may, and held alerts that come due together go out as one digest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Literal

from monitor.models import Priority

QUIET, RATE, DIGEST = "quiet hours", "rate limit", "digest"


@dataclass(frozen=True)
class Policy:
    """A target's pacing, from its `notify` entry."""

    mode: Literal["immediate", "digest"] = "immediate"
    digest_every: timedelta = timedelta(hours=1)
    digest_at: time = time(0, 0)
    rate_limit: tuple[int, timedelta] | None = None
    quiet: tuple[time, time] | None = None
    zone: tzinfo = UTC
    urgent: Priority | None = Priority.HIGH
    digest_limit: int = 50


@dataclass(frozen=True)
class Pending:
    """A due alert of the target: its priority, why it was held before (if it was), and when
    it was queued (None: just now)."""

    id: int
    priority: Priority = Priority.NORMAL
    held: str | None = None
    queued: datetime | None = None


@dataclass
class Plan:
    """What to do with a target's due alerts now."""

    singles: list[int] = field(default_factory=list)
    digest: list[int] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    hold: dict[int, tuple[datetime, str]] = field(default_factory=dict)
    later: int = 0  # digest alerts beyond `digest_limit`, held for the next digest

    @property
    def messages(self) -> int:
        """How many messages the plan sends."""
        return len(self.singles) + (1 if self.digest else 0)


def in_quiet_hours(policy: Policy, now: datetime) -> bool:
    """Whether `now` falls in the target's quiet hours (local time)."""
    if policy.quiet is None:
        return False
    start, end = policy.quiet
    local = now.astimezone(policy.zone).time()
    return start <= local < end if start < end else local >= start or local < end


def _next_local(now: datetime, at: time, zone: tzinfo) -> datetime:
    """The first moment after `now` when the local clock shows `at`."""
    local = now.astimezone(zone)
    candidate = datetime.combine(local.date(), at, tzinfo=zone)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), at, tzinfo=zone)
    return candidate.astimezone(UTC)


def next_digest(policy: Policy, now: datetime) -> datetime:
    """The next digest time after `now`: `digest_at` local time plus whole `digest_every`s."""
    local = now.astimezone(policy.zone)
    base = datetime.combine(local.date(), policy.digest_at, tzinfo=policy.zone)
    if base > local:
        base = datetime.combine(local.date() - timedelta(days=1), policy.digest_at,
                                tzinfo=policy.zone)
    steps = (local - base) // policy.digest_every + 1
    return (base + steps * policy.digest_every).astimezone(UTC)


def _urgent(policy: Policy, row: Pending) -> bool:
    return policy.urgent is not None and row.priority.rank >= policy.urgent.rank


def plan(policy: Policy, due: Sequence[Pending], sent: Sequence[datetime],
         now: datetime) -> Plan:
    """Decide, for a target's due alerts (oldest first), which go now — alone or in one
    digest — and which wait until when. `sent`: when its recent messages went out."""
    result = Plan()
    quiet = in_quiet_hours(policy, now)
    for row in due:
        if quiet and not _urgent(policy, row):
            result.hold[row.id] = (_next_local(now, policy.quiet[1], policy.zone)
                                   if policy.quiet else now, QUIET)
        elif policy.mode == "digest" and row.held is None and \
                next_digest(policy, row.queued or now) > now:
            result.hold[row.id] = (next_digest(policy, row.queued or now), DIGEST)
        elif row.held is not None or policy.mode == "digest":  # a digest's time came
            result.digest.append(row.id)
            reason = row.held or DIGEST
            if reason not in result.reasons:
                result.reasons.append(reason)
        else:
            result.singles.append(row.id)
    if len(result.digest) == 1 and policy.mode != "digest":
        result.singles.insert(0, result.digest.pop())  # one held alert goes as itself
        result.reasons.clear()
    _limit(policy, result, sent, now)
    _cap(policy, result, now)
    return result


def _cap(policy: Policy, result: Plan, now: datetime) -> None:
    """Keep a digest to `digest_limit` alerts; the rest wait for the next digest time."""
    rest = result.digest[policy.digest_limit:]
    if not rest:
        return
    result.digest = result.digest[:policy.digest_limit]
    reason = result.reasons[0] if result.reasons else DIGEST
    for row in rest:
        result.hold[row] = (next_digest(policy, now), reason)
    result.later = len(rest)


def _limit(policy: Policy, result: Plan, sent: Sequence[datetime], now: datetime) -> None:
    """Fold what exceeds the rate limit into the digest, or hold it all until a slot frees."""
    if policy.rate_limit is None or not result.messages:
        return
    count, window = policy.rate_limit
    recent = sorted(moment for moment in sent if moment > now - window)
    room = count - len(recent)
    if result.messages <= room:
        return
    if room <= 0:
        free_at = recent[len(recent) - count] + window if len(recent) >= count else now
        for row in result.singles + result.digest:
            result.hold[row] = (free_at, RATE)
        result.singles, result.digest, result.reasons = [], [], []
        return
    keep = room - 1  # one message is the digest of the rest
    result.digest = result.singles[keep:] + result.digest
    result.singles = result.singles[:keep]
    if RATE not in result.reasons:
        result.reasons.append(RATE)
