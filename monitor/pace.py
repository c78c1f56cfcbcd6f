"""Pace: each feed's poll interval as the running daemon sees it, and what moves it.

A feed's own `interval` wins, then a fixed `poll.interval`; with `poll.interval: auto` the
interval is learned after each poll that brought a document (`sources.cadence`) and kept in the
feed's row, so every instance sharing the database and every restart start from it. An alert
puts every feed that carried its watchlist in the last month at `poll.min_interval` for
`poll.after_alert`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from monitor.config import Config, FeedConfig, format_duration
from monitor.models import FetchResult
from monitor.sources.cadence import (
    Bounds,
    Cadence,
    Pace,
    current_cadence,
    header_hint,
    learn_cadence,
    publishing_rate,
)
from monitor.sources.parser import ParsedFeed
from monitor.storage.store import Store
from monitor.storage.tables import FeedRow

CARRIED_WITHIN = timedelta(days=30)  # a feed "carries" a watchlist it matched this recently
LEARN_FROM = timedelta(days=7)


def adaptive(feed: FeedConfig, config: Config) -> bool:
    """Whether `feed`'s interval is learned (neither it nor `poll.interval` fixes one)."""
    return feed.interval is None and config.poll.interval == "auto"


def bounds_of(config: Config) -> Bounds:
    """`poll.min_interval` and `poll.max_interval`."""
    return Bounds(config.poll.min_interval, config.poll.max_interval)


def feed_interval(feed: FeedConfig, config: Config, pace: Pace, now: datetime) -> Cadence:
    """How often `feed` is polled now, and why."""
    if feed.interval is not None:
        return Cadence(feed.interval, "set for this feed")
    if config.poll.interval != "auto":
        return Cadence(config.poll.interval,
                       f"poll.interval: {format_duration(config.poll.interval)}")
    return current_cadence(pace, bounds_of(config), now)


def pace_of(row: FeedRow) -> Pace:
    """What the feed's row knows of its pace."""
    learned = Cadence(row.cadence, row.cadence_reason or "") if row.cadence else None
    return Pace(learned, row.cadence_hint, row.boost_until)


def learn_pace(store: Store, config: Config, row: FeedRow, fetch: FetchResult,
               parsed: ParsedFeed, *, now: datetime, published: Sequence[datetime]) -> Pace:
    """The feed's pace after a poll that brought `parsed`, whose document's entries were
    `published` then; kept in its row when it changed."""
    assert row.id is not None
    seen: Sequence[datetime] = []
    if publishing_rate(published, now) is None:  # no dates: when new entries were seen
        seen = store.feeds.seen_times(row.id, now - LEARN_FROM)
    hints = [h for h in (header_hint(fetch.headers), parsed.refresh_hint) if h is not None]
    hint = max(hints) if hints else None
    learned = learn_cadence(published, seen, hint, bounds_of(config), now)
    if (row.cadence, row.cadence_reason, row.cadence_hint) != (learned.seconds, learned.reason,
                                                                hint):
        store.feeds.set_pace(row.id, learned, hint)
    return Pace(learned, hint, row.boost_until)


def boost_carriers(store: Store, config: Config, watchlists: Sequence[str],
                   now: datetime) -> dict[str, datetime]:
    """Put the feeds that carry `watchlists` at the minimum interval for `poll.after_alert`;
    each one's URL and until when."""
    if not watchlists or not config.poll.after_alert or config.poll.interval != "auto":
        return {}
    until = now + timedelta(seconds=config.poll.after_alert)
    return dict.fromkeys(store.feeds.boost(watchlists, until, now - CARRIED_WITHIN), until)
