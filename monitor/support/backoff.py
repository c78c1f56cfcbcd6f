"""When to try again after failures in a row: capped exponential backoff with jitter, shared by
feeds that fail to poll and targets that fail to receive."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

FEED_RETRY_FIRST = 60.0  # seconds: a failing feed's first retry waits at most this long


def backoff_delay(failures: int, base: float, cap: float) -> float:
    """Seconds to wait after `failures` failures in a row: `base`, doubling, at most `cap`."""
    return float(min(cap, base * 2 ** max(0, failures - 1)))


def feed_backoff(interval: float) -> tuple[float, float]:
    """(base, cap) for a feed polled every `interval` seconds that fails: the first retry comes
    after a quarter of the interval (a minute at most), then doubling up to the interval."""
    return min(FEED_RETRY_FIRST, interval / 4), interval


def retry_at(failures: int, base: float, cap: float) -> datetime:
    """Capped exponential backoff with ±20 % jitter after `failures` failures in a row."""
    delay = backoff_delay(failures, base, cap)
    return datetime.now(UTC) + timedelta(seconds=delay * random.uniform(0.8, 1.2))  # noqa: S311
