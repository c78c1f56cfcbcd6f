"""Pacing decisions (pure): digests, quiet hours, urgent bypass and rate limits by the clock."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from monitor.delivery.schedule import (
    DIGEST,
    QUIET,
    RATE,
    Pending,
    Policy,
    in_quiet_hours,
    next_digest,
    plan,
)
from monitor.models import Priority

SEOUL = ZoneInfo("Asia/Seoul")  # UTC+9, no DST
BERLIN = ZoneInfo("Europe/Berlin")
NIGHT = Policy(quiet=(time(22, 0), time(7, 0)), zone=SEOUL)


def seoul(hour: int, minute: int = 0, day: int = 27) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=SEOUL).astimezone(UTC)


@pytest.mark.parametrize(("local", "quiet"), [
    (seoul(21, 59), False), (seoul(22, 0), True), (seoul(23, 30), True), (seoul(3, 0), True),
    (seoul(6, 59), True), (seoul(7, 0), False), (seoul(12, 0), False),
])
def test_quiet_hours_span_midnight_in_local_time(local: datetime, quiet: bool) -> None:
    """22:00-07:00 Seoul time is quiet from 22:00 to 06:59, whatever UTC says."""
    assert in_quiet_hours(NIGHT, local) is quiet


@pytest.mark.parametrize(("policy", "now", "expected"), [
    (Policy(digest_every=timedelta(hours=1)), datetime(2026, 11, 27, 10, 20, tzinfo=UTC),
     datetime(2026, 11, 27, 11, 0, tzinfo=UTC)),
    (Policy(digest_every=timedelta(minutes=30)), datetime(2026, 11, 27, 10, 30, tzinfo=UTC),
     datetime(2026, 11, 27, 11, 0, tzinfo=UTC)),
    (Policy(digest_every=timedelta(days=1), digest_at=time(8, 0), zone=SEOUL), seoul(9, 0),
     seoul(8, 0, day=28)),
    (Policy(digest_every=timedelta(days=1), digest_at=time(8, 0), zone=SEOUL), seoul(7, 59),
     seoul(8, 0)),
    (Policy(digest_every=timedelta(hours=6), digest_at=time(8, 0), zone=SEOUL), seoul(3, 0),
     seoul(8, 0)),  # the slots of the day before: 08, 14, 20, 02, then 08
    # Berlin leaves summer time on 2026-10-25: a daily 08:00 digest stays at 08:00 local.
    (Policy(digest_every=timedelta(days=1), digest_at=time(8, 0), zone=BERLIN),
     datetime(2026, 10, 24, 9, 0, tzinfo=BERLIN).astimezone(UTC),
     datetime(2026, 10, 25, 8, 0, tzinfo=BERLIN).astimezone(UTC)),
])
def test_next_digest_is_aligned_to_the_local_clock(policy: Policy, now: datetime,
                                                    expected: datetime) -> None:
    """Digest times are `digest_at` plus whole periods, on the target's local clock."""
    assert next_digest(policy, now) == expected


def test_immediate_alerts_go_one_by_one() -> None:
    """Without pacing, every due alert goes alone, in order."""
    decided = plan(Policy(), [Pending(1), Pending(2)], [], seoul(12))
    assert (decided.singles, decided.digest, decided.hold) == ([1, 2], [], {})


def test_quiet_hours_hold_all_but_urgent_alerts_until_they_end() -> None:
    """At 23:00 a normal alert waits for 07:00; a high-priority one goes now."""
    decided = plan(NIGHT, [Pending(1, Priority.NORMAL), Pending(2, Priority.HIGH)], [], seoul(23))
    assert decided.singles == [2]
    assert decided.hold == {1: (seoul(7, day=28), QUIET)}


def test_urgent_none_holds_everything_in_quiet_hours() -> None:
    """`urgent: none` lets nothing through quiet hours."""
    decided = plan(Policy(quiet=NIGHT.quiet, zone=SEOUL, urgent=None),
                   [Pending(1, Priority.HIGH)], [], seoul(23))
    assert decided.singles == [] and 1 in decided.hold


def test_alerts_held_together_come_out_as_one_digest() -> None:
    """When quiet hours end, the held alerts go as one digest that says why they waited."""
    held = [Pending(1, held=QUIET), Pending(2, held=QUIET), Pending(3, held=QUIET)]
    decided = plan(NIGHT, held, [], seoul(7))
    assert (decided.singles, decided.digest, decided.reasons) == ([], [1, 2, 3], [QUIET])


def test_a_single_held_alert_goes_as_itself() -> None:
    """A digest of one would only be a worse alert."""
    decided = plan(NIGHT, [Pending(1, held=QUIET)], [], seoul(7))
    assert (decided.singles, decided.digest) == ([1], [])


def test_digest_mode_holds_new_alerts_until_the_next_digest_time() -> None:
    """In digest mode a new alert waits for the next slot; held alerts due now form the digest
    (even one)."""
    policy = Policy(mode="digest", digest_every=timedelta(hours=1))
    now = datetime(2026, 11, 27, 10, 20, tzinfo=UTC)
    decided = plan(policy, [Pending(1), Pending(2, held=DIGEST)], [], now)
    assert decided.hold == {1: (datetime(2026, 11, 27, 11, 0, tzinfo=UTC), DIGEST)}
    assert decided.digest == [2]


def test_digest_mode_sends_at_once_what_was_queued_before_a_passed_digest_time() -> None:
    """An alert queued at 10:59 and first seen at 11:01 is in the 11:00 digest, not the next."""
    policy = Policy(mode="digest", digest_every=timedelta(hours=1))
    queued = datetime(2026, 11, 27, 10, 59, tzinfo=UTC)
    decided = plan(policy, [Pending(1, queued=queued)], [], queued + timedelta(minutes=2))
    assert (decided.digest, decided.hold) == ([1], {})


def test_rate_limit_folds_the_overflow_into_one_digest() -> None:
    """With room for 2 messages, 5 due alerts become 1 alert and 1 digest of 4."""
    policy = Policy(rate_limit=(3, timedelta(hours=1)))
    now = seoul(12)
    decided = plan(policy, [Pending(i) for i in range(1, 6)], [now - timedelta(minutes=5)], now)
    assert (decided.singles, decided.digest, decided.reasons) == ([1], [2, 3, 4, 5], [RATE])
    assert decided.messages == 2


def test_rate_limit_reached_holds_until_a_slot_frees() -> None:
    """With no room left, alerts wait until the oldest message in the window ages out."""
    policy = Policy(rate_limit=(2, timedelta(hours=1)))
    now = seoul(12)
    sent = [now - timedelta(minutes=50), now - timedelta(minutes=10)]
    decided = plan(policy, [Pending(1), Pending(2)], sent, now)
    assert decided.messages == 0
    assert decided.hold == {1: (now + timedelta(minutes=10), RATE),
                            2: (now + timedelta(minutes=10), RATE)}


def test_messages_older_than_the_window_do_not_count() -> None:
    """Only messages inside the rate window use it up."""
    policy = Policy(rate_limit=(1, timedelta(hours=1)))
    now = seoul(12)
    decided = plan(policy, [Pending(1)], [now - timedelta(hours=2)], now)
    assert decided.singles == [1]


def test_a_digest_beyond_its_limit_keeps_the_rest_for_the_next_digest() -> None:
    """Of 1,000 held alerts, 50 go in this digest and 950 wait (never dropped) for the next
    digest time, still marked with why they were held."""
    policy = Policy(digest_limit=50, digest_every=timedelta(hours=1))
    now = datetime(2026, 11, 27, 10, 20, tzinfo=UTC)
    decided = plan(policy, [Pending(i, held=QUIET) for i in range(1000)], [], now)
    assert decided.digest == list(range(50)) and decided.later == 950
    assert decided.hold == {i: (datetime(2026, 11, 27, 11, 0, tzinfo=UTC), QUIET)
                            for i in range(50, 1000)}
