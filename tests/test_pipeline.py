"""Pipeline decisions: which new entries may alert, where alerts go, and concurrent writers."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.config import parse_config
from monitor.delivery.notifier import Target, route
from monitor.models import Entry
from monitor.pipeline import _eligible
from tests.support.project import render_feed, write_config
from tests.support.servers import FeedServer, Sink

CONFIG = parse_config("""
poll: {backfill: 6h, max_age: 7d}
watchlists:
  - name: w
    entities: {a: [alpha]}
    rules: [{any: [a]}]
""")
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def _entry(hours_ago: float | None) -> Entry:
    published = NOW - timedelta(hours=hours_ago) if hours_ago is not None else None
    return Entry("f", "F", "g", None, "alpha", published=published)


@pytest.mark.parametrize(("hours_ago", "first_poll", "eligible"), [
    (1, True, True),          # inside the backfill window of a new feed
    (7, True, False),         # older than backfill on a new feed: recorded silently
    (7, False, True),         # a new entry of a known feed
    (24 * 8, False, False),   # older than max_age: never
    (None, True, True),       # undated: cannot tell, counts as new
    (-2, False, True),        # dated in the future (clock skew): new
])
def test_which_new_entries_may_alert(hours_ago: float | None, first_poll: bool,
                                     eligible: bool) -> None:
    """Backfill applies on a feed's first poll; max_age always; undated entries count as new."""
    assert _eligible(_entry(hours_ago), first_poll, CONFIG, NOW) is eligible


@pytest.mark.parametrize(("target_tags", "alert_tags", "receives"), [
    ((), ("russia-dprk",), True),                   # untagged target gets everything
    (("russia-dprk",), (), True),                  # untagged alert goes everywhere
    (("russia-dprk",), ("russia-dprk", "x"), True),  # a shared tag
    (("china",), ("russia-dprk",), False),          # no shared tag
])
def test_routing_by_tags(target_tags: tuple[str, ...], alert_tags: tuple[str, ...],
                         receives: bool) -> None:
    """A target receives an alert when either has no tags or they share one."""
    target = Target(url="json://x", label="x", id="1", tags=target_tags)
    assert (route([target], alert_tags) == [target]) is receives


def test_tag_routing_end_to_end(tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """A target tagged for another topic gets nothing; the one tagged for this watchlist does."""
    other = Sink()
    try:
        feeds = [{"url": feed_server.serve("/ru.xml", render_feed("russian.xml"))}]
        notify = [{"url": sink.url, "tags": ["russia-dprk"]}, {"url": other.url, "tags": ["x"]}]
        config = write_config(tmp_path, feeds, notify)
        from monitor.surfaces.cli import main
        assert main(["--config", str(config), "run", "--once"]) == 0
        assert len(sink.received) == 1
        assert other.received == []
    finally:
        other.close()


def test_two_processes_on_one_database_alert_each_story_once(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """Two `run --once` processes writing one SQLite file at once: no lock error, no duplicate."""
    feeds = [{"url": feed_server.serve(f"/{name}", render_feed(name)), "name": name}
             for name in ("english.xml", "wire.xml", "russian.xml", "korean.atom",
                          "indonesian.xml")]
    config = write_config(tmp_path, feeds, [{"url": sink.url}])
    command = [sys.executable, "-m", "monitor", "--config", str(config), "run", "--once"]
    runs = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [run.communicate(timeout=120)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], errors
    assert not any("locked" in e or "Traceback" in e for e in errors), errors
    assert len(sink.received) == 5, sink.titles()


def test_health_notices_when_a_feed_fails_and_recovers(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """With a health tag, a failing feed sends one notice, and another when it recovers."""
    from monitor.surfaces.cli import main

    broken = feed_server.serve("/ru.xml", b"nope", status=500)
    config = write_config(tmp_path, [{"url": broken, "name": "RU wire"}],
                          [{"url": sink.url, "tags": ["ops"]}],
                          health={"tag": "ops", "failing_after": "0s"})
    assert main(["--config", str(config), "run", "--once"]) == 0
    assert main(["--config", str(config), "run", "--once"]) == 0
    assert sink.titles() == ["monitor: feed RU wire has been failing for 0.0 h (1 polls)"]
    feed_server.serve("/ru.xml", render_feed("russian.xml"))
    assert main(["--config", str(config), "run", "--once"]) == 0
    assert "monitor: feed RU wire is healthy again" in sink.titles()


@pytest.mark.parametrize(("failing_hours", "quiet_days", "cadence_hours", "state"), [
    (None, 1, 1, "ok"),
    (7, 1, 1, "failing"),       # failing longer than failing_after (6h)
    (2, 1, 1, "ok"),            # failing, but not for long yet
    (None, 4, 1, "stale"),      # 4 days quiet, usual gap 1h
    (None, 4, 12, "ok"),        # 4 days quiet, but it usually posts twice a day: 10x = 5 days
    (None, 6, 12, "stale"),
])
def test_feed_health_states(failing_hours: float | None, quiet_days: float,
                            cadence_hours: float, state: str) -> None:
    """Failing is time without success; stale is quiet for long in absolute and relative terms."""
    from monitor.config import HealthConfig
    from monitor.health import feed_health
    from monitor.storage.tables import FeedRow

    row = FeedRow(url="u", last_new_entry_at=NOW - timedelta(days=quiet_days),
                  failing_since=NOW - timedelta(hours=failing_hours) if failing_hours else None)
    assert feed_health(row, cadence_hours * 3600, HealthConfig(), NOW) == state


def test_alert_undeliverable_past_expiry_is_marked_expired_and_reported(
        tmp_path: Path, feed_server: FeedServer, sink: Sink,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A target down beyond expire_after: the alert is marked expired with an error line, and
    status counts it; it is never silently dropped."""
    from monitor.surfaces.cli import main

    sink.failing = True
    feeds = [{"url": feed_server.serve("/ru.xml", render_feed("russian.xml"))}]
    config = write_config(tmp_path, feeds, [{"url": sink.url, "name": "desk"}],
                          delivery={"expire_after": "1ms", "retry_base": "0.01s"})
    assert main(["--config", str(config), "run", "--once"]) == 0
    err = capsys.readouterr().err
    assert "to desk expired after 1 attempts" in err
    assert "ERROR" in err
    assert main(["--config", str(config), "status"]) == 0
    assert "1 expired" in capsys.readouterr().out
