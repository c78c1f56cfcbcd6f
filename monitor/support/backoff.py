"""When to try again after failures in a row: capped exponential backoff with jitter, shared by
feeds that fail to poll and targets that fail to receive."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta


def retry_at(failures: int, base: float, cap: float) -> datetime:
    """Capped exponential backoff with ±20 % jitter after `failures` failures in a row."""
    delay = min(cap, base * 2 ** max(0, failures - 1))
    return datetime.now(UTC) + timedelta(seconds=delay * random.uniform(0.8, 1.2))  # noqa: S311
