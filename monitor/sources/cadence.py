"""Cadence: how often to poll a feed, learned from how often it publishes. Pure, no I/O.

A feed's interval follows its publishing rate: the rate of its entries over the last day or the
last week (whichever is higher, so a burst counts at once), from the publication times the
document carries (known from the first poll) or, for a feed without dates, from when new
entries were seen. It stays within the configured bounds, drops to the minimum for a while
after an alert on a watchlist the feed carries (a story develops), and never goes below what
the server asks: Cache-Control max-age, RSS `<ttl>`, `<sy:updatePeriod>`/`<sy:updateFrequency>`
(up to a day: a server cannot silence its feed for longer).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

DAY, WEEK = 86400.0, 7 * 86400.0
MIN_SPAN = 3600.0  # a rate is never measured over less than an hour
FIRST_GUESS = 900.0  # a feed with no dates and nothing seen yet: 15 minutes, within the bounds
HINT_CAP = DAY  # a server asking for more than a day is taken as asking for a day
_SY_PERIODS = {"hourly": 3600.0, "daily": DAY, "weekly": WEEK, "monthly": 30 * DAY,
               "yearly": 365 * DAY}
_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d{1,10})(?!\d)", re.IGNORECASE)


@dataclass(frozen=True)
class Cadence:
    """A feed's poll interval and why, as `status` shows it."""

    seconds: float
    reason: str


@dataclass(frozen=True)
class Bounds:
    """`poll.min_interval` and `poll.max_interval`."""

    low: float
    high: float


def describe_seconds(seconds: float) -> str:
    """A duration in the config's words: 45s, 2m, 1h30m, 2d."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts[:2])


def header_hint(headers: Mapping[str, str]) -> float | None:
    """Seconds the server's Cache-Control lets a response be reused (max-age), if it says."""
    control = headers.get("cache-control", "")
    if "no-cache" in control.lower() or "no-store" in control.lower():
        return None
    found = _MAX_AGE.search(control)
    return float(found.group(1)) if found and int(found.group(1)) > 0 else None


def document_hint(ttl: str | None, period: str | None, frequency: str | None) -> float | None:
    """Seconds between updates the document announces: RSS `<ttl>` (minutes), or
    `<sy:updatePeriod>` divided by `<sy:updateFrequency>`; the larger when both."""
    hints = []
    if ttl and ttl.strip().isdigit() and 0 < int(ttl) <= 10**7:
        hints.append(int(ttl) * 60.0)
    if period and period.strip().lower() in _SY_PERIODS:
        times = int(frequency) if frequency and frequency.strip().isdigit() else 1
        hints.append(_SY_PERIODS[period.strip().lower()] / max(1, min(times, 10**6)))
    return max(hints) if hints else None


def publishing_rate(times: Sequence[datetime], now: datetime) -> tuple[int, float] | None:
    """(entries, seconds they took) over the last day or the last week, whichever gives the
    higher rate; None with fewer than two entries in the week. The span runs from the oldest
    entry of the window to now (at least an hour): a document holds only its latest items, so
    fifty items over four hours are a rate of fifty per four hours, not per day."""
    best: tuple[int, float] | None = None
    for window in (DAY, WEEK):
        recent = [t for t in times if (now - t).total_seconds() <= window]
        if len(recent) < 2:
            continue
        span = max((now - min(recent)).total_seconds(), MIN_SPAN)
        if best is None or len(recent) / span > best[0] / best[1]:
            best = (len(recent), span)
    return best


def learn_cadence(published: Sequence[datetime], seen: Sequence[datetime], hint: float | None,
                  bounds: Bounds, now: datetime) -> Cadence:
    """The interval for a feed whose entries were `published` (their own dates) or `seen`
    (when new ones arrived, for a feed without dates), never below the server's `hint`."""
    rate = publishing_rate(published, now)
    source = "published"
    if rate is None:
        rate, source = publishing_rate(seen, now), "seen new"
    if rate is None:
        seconds = min(max(FIRST_GUESS, bounds.low), bounds.high)
        reason = "no publishing rate known yet"
    else:
        count, span = rate
        gap = span / count
        seconds = min(max(gap, bounds.low), bounds.high)
        reason = (f"{count} entries {source} in the last {describe_seconds(span)} "
                  f"(one every {describe_seconds(gap)})")
        if seconds != gap:
            reason += f", kept to the {'minimum' if seconds > gap else 'maximum'}"
    floor = min(hint, HINT_CAP) if hint is not None else 0.0
    if floor > seconds:
        seconds = floor
        reason += f"; the server asks for {describe_seconds(floor)} between polls"
    return Cadence(seconds, reason)


@dataclass(frozen=True)
class Pace:
    """What is known of a feed's pace: its learned cadence, the server's own interval, and
    until when it is polled at the minimum because a story it carries developed."""

    learned: Cadence | None = None
    hint: float | None = None
    boost_until: datetime | None = None


def current_cadence(pace: Pace, bounds: Bounds, now: datetime) -> Cadence:
    """The interval to poll at now."""
    if pace.boost_until is not None and pace.boost_until > now:
        seconds = max(bounds.low, min(pace.hint or 0.0, HINT_CAP))
        return Cadence(seconds, "after an alert on a watchlist it carries: at the minimum "
                                f"until {pace.boost_until:%H:%M} UTC")
    if pace.learned is not None:
        return pace.learned
    return learn_cadence([], [], pace.hint, bounds, now)
