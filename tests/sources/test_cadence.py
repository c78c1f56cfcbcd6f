"""Adaptive polling, the pure part: an interval learned from publishing rates, within bounds,
never below what the server asks, at the minimum after an alert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor.sources.cadence import (
    Bounds,
    Pace,
    current_cadence,
    document_hint,
    header_hint,
    learn_cadence,
)
from monitor.sources.parser import parse_feed

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
BOUNDS = Bounds(120.0, 3600.0)


def _every(minutes: float, count: int) -> list[datetime]:
    return [NOW - timedelta(minutes=minutes * i) for i in range(count)]


@pytest.mark.parametrize(("published", "seen", "hint", "seconds", "reason"), [
    # A busy wire: its document's fifty latest items, five minutes apart.
    (_every(5, 50), [], None, 294.0, "50 entries published in the last 4h5m (one every 4m)"),
    # Busier than the minimum allows (and a rate is never taken over less than an hour).
    (_every(0.5, 50), [], None, 120.0, "(one every 1m), kept to the minimum"),
    # A few items a week: the maximum.
    (_every(60 * 30, 5), [], None, 3600.0, "5 entries published in the last 5d (one every "
                                           "1d), kept to the maximum"),
    # A burst today counts at once, though the week was quiet.
    ([*_every(20, 6), NOW - timedelta(days=5)], [], None, 1000.0, "6 entries published in "
                                                                  "the last 1h40m"),
    # Entries older than a week say nothing about today's pace.
    ([NOW - timedelta(days=30), NOW - timedelta(days=31)], [], None, 900.0,
     "no publishing rate known yet"),
    # Undated feed: when new entries were seen.
    ([], _every(10, 20), None, 570.0, "20 entries seen new in the last 3h10m"),
    # The server asks for an hour: never faster, even for a busy feed.
    (_every(5, 50), [], 3600.0, 3600.0, "; the server asks for 1h between polls"),
    # A server asking for a week is taken as asking for a day.
    (_every(5, 50), [], 7 * 86400.0, 86400.0, "; the server asks for 1d between polls"),
    # A hint below the learned interval changes nothing.
    (_every(60 * 30, 5), [], 600.0, 3600.0, "kept to the maximum"),
])
def test_learned_interval(published: list[datetime], seen: list[datetime], hint: float | None,
                          seconds: float, reason: str) -> None:
    """Each case: the learned interval and the words that explain it."""
    cadence = learn_cadence(published, seen, hint, BOUNDS, NOW)
    assert (cadence.seconds, reason in cadence.reason) == (seconds, True), cadence.reason


@pytest.mark.parametrize(("headers", "hint"), [
    ({"cache-control": "public, max-age=600"}, 600.0),
    ({"cache-control": "s-maxage=60, max-age=300"}, 300.0),
    ({"cache-control": "max-age=\"120\""}, 120.0),
    ({"cache-control": "no-cache, max-age=600"}, None),
    ({"cache-control": "max-age=0"}, None),
    ({"cache-control": "max-age=" + "9" * 40}, None),  # absurd: not a number we take
    ({}, None),
])
def test_cache_control_hint(headers: dict[str, str], hint: float | None) -> None:
    """max-age (not s-maxage, not with no-cache) is how long the server wants us away."""
    assert header_hint(headers) == hint


@pytest.mark.parametrize(("extra", "hint"), [
    (b"<ttl>60</ttl>", 3600.0),
    (b"<sy:updatePeriod>hourly</sy:updatePeriod><sy:updateFrequency>2</sy:updateFrequency>",
     1800.0),
    (b"<sy:updatePeriod>daily</sy:updatePeriod>", 86400.0),
    (b"<ttl>30</ttl><sy:updatePeriod>hourly</sy:updatePeriod>", 3600.0),  # the larger
    (b"<ttl>soon</ttl>", None),
    (b"<ttl>-5</ttl>", None),
    (b"<sy:updatePeriod>fortnightly</sy:updatePeriod>", None),
    (b"<sy:updatePeriod>hourly</sy:updatePeriod><sy:updateFrequency>0</sy:updateFrequency>",
     3600.0),
    (b"", None),
])
def test_document_hint_from_a_real_parse(extra: bytes, hint: float | None) -> None:
    """RSS <ttl> (minutes) and the syndication module's period/frequency, read by feedparser."""
    body = (b'<rss version="2.0" xmlns:sy="http://purl.org/rss/1.0/modules/syndication/">'
            b"<channel><title>t</title>" + extra + b"<item><title>x</title></item></channel></rss>")
    assert parse_feed(body, "https://a.example/f.xml").refresh_hint == hint


def test_document_hint_ignores_garbage() -> None:
    """Values a hostile document puts there give no hint rather than an error."""
    assert document_hint("1" * 40, None, None) is None
    assert document_hint(None, "hourly", "x") == 3600.0


def test_an_alert_puts_the_feed_at_the_minimum_until_the_boost_ends() -> None:
    """While boosted the feed is polled at the minimum (never below the server's hint); after,
    at its learned interval again."""
    learned = learn_cadence(_every(60 * 30, 5), [], None, BOUNDS, NOW)
    boosted = Pace(learned, None, NOW + timedelta(minutes=30))
    assert current_cadence(boosted, BOUNDS, NOW).seconds == 120.0
    assert "after an alert" in current_cadence(boosted, BOUNDS, NOW).reason
    assert current_cadence(Pace(learned, 600.0, NOW + timedelta(minutes=30)), BOUNDS,
                           NOW).seconds == 600.0
    assert current_cadence(boosted, BOUNDS, NOW + timedelta(hours=1)) == learned
    assert current_cadence(Pace(), BOUNDS, NOW).seconds == 900.0
