"""Adaptive polling end to end: intervals learned from real feeds over HTTP, kept in the
database, shown by `status`, honoured by the daemon's schedule, and dropped to the minimum for
the feeds that carry a watchlist right after it alerted."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from monitor.surfaces.cli import main
from tests.support.project import wait_for, write_config
from tests.support.servers import FeedServer, Sink


def _feed(minutes_apart: float, count: int, title: str = "Weather in Oslo {i}",
          extra: str = "", newest: float = 1) -> bytes:
    """An RSS document of `count` items dated `minutes_apart` apart, the newest `newest`
    minutes ago."""
    now = datetime.now(UTC)
    items = "".join(
        f"<item><title>{title.format(i=i)}</title><link>https://pace.example/{title[:5]}/{i}"
        f"</link><pubDate>{format_datetime(now - timedelta(minutes=newest + minutes_apart * i))}"
        f"</pubDate></item>" for i in range(count))
    return (f'<rss version="2.0"><channel><title>t</title>{extra}{items}</channel></rss>'
            .encode())


def _status(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    capsys.readouterr()
    assert main(["--config", str(config), "status", "--json"]) == 0
    return {f["name"]: f for f in json.loads(capsys.readouterr().out)["feeds"]}


def test_status_shows_each_feeds_learned_interval_and_why(
        tmp_path: Path, feed_server: FeedServer, capsys: pytest.CaptureFixture[str]) -> None:
    """After one run, `status` shows each feed's interval and the reason: learned from its
    publication dates within the bounds, raised to what the server asks (Cache-Control or
    <ttl>), or fixed by the feed's own interval."""
    feeds = [
        {"name": "wire", "url": feed_server.serve("/wire.xml", _feed(5, 40))},
        {"name": "weekly", "url": feed_server.serve("/weekly.xml", _feed(60 * 40, 4))},
        {"name": "cached", "url": feed_server.serve(
            "/cached.xml", _feed(5, 40), headers={"Cache-Control": "public, max-age=1800"})},
        {"name": "ttl", "url": feed_server.serve("/ttl.xml", _feed(5, 40, extra="<ttl>45</ttl>"))},
        {"name": "fixed", "url": feed_server.serve("/fixed.xml", _feed(5, 40)), "interval": "7m"},
    ]
    config = write_config(tmp_path, feeds, [])
    assert main(["--config", str(config), "run", "--once"]) == 0
    shown = _status(config, capsys)
    assert 280 < shown["wire"]["every"] < 310  # 40 items over 3h16m: one every ~5 minutes
    assert shown["wire"]["every_why"].startswith("40 entries published in the last 3h")
    assert shown["weekly"]["every"] == 3600  # poll.max_interval
    assert shown["weekly"]["every_why"].endswith("kept to the maximum")
    assert shown["cached"]["every"] == 1800
    assert shown["cached"]["every_why"].endswith("the server asks for 30m between polls")
    assert shown["ttl"]["every"] == 2700
    assert (shown["fixed"]["every"], shown["fixed"]["every_why"]) == (420, "set for this feed")
    assert main(["--config", str(config), "status"]) == 0
    assert "the server asks for 30m" in capsys.readouterr().out


def test_a_fixed_poll_interval_turns_learning_off(
        tmp_path: Path, feed_server: FeedServer, capsys: pytest.CaptureFixture[str]) -> None:
    """With `poll.interval: 10m` every feed without its own interval is polled every 10 min."""
    feeds = [{"name": "wire", "url": feed_server.serve("/wire.xml", _feed(5, 40))}]
    config = write_config(tmp_path, feeds, [], poll={"interval": "10m"})
    assert main(["--config", str(config), "run", "--once"]) == 0
    assert _status(config, capsys)["wire"]["every_why"] == "poll.interval: 10m"


def test_a_restarted_daemon_schedules_each_feed_at_its_learned_interval(
        tmp_path: Path, feed_server: FeedServer) -> None:
    """The learned intervals are kept in the database: a daemon started later schedules each
    feed's job at its own interval, not at one common one."""
    from monitor.pipeline import Runtime, open_config
    from monitor.surfaces.daemon import Daemon

    feeds = [{"name": "wire", "url": feed_server.serve("/wire.xml", _feed(5, 40))},
             {"name": "weekly", "url": feed_server.serve("/weekly.xml", _feed(60 * 40, 4))}]
    config = write_config(tmp_path, feeds, [])
    assert main(["--config", str(config), "run", "--once"]) == 0

    async def intervals() -> dict[str, float]:
        runtime = Runtime.from_config(open_config(config))
        try:
            daemon = Daemon(runtime, config)
            daemon._schedule()  # the jobs, without starting the scheduler
            return {job.name: job.trigger.interval_length for job in daemon.scheduler.get_jobs()
                    if job.id.startswith("feed:")}
        finally:
            await runtime.close()

    found = asyncio.run(intervals())
    assert 280 < found["wire"] < 310 and found["weekly"] == 3600, found


def test_an_alert_puts_the_feeds_carrying_its_watchlist_at_the_minimum(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """A quiet feed that carried the watchlist before is polled hourly; once another feed's
    story alerts, the daemon polls the quiet one at `poll.min_interval` (1 s here) for
    `poll.after_alert`, while a feed that never carried the watchlist keeps its pace."""
    story = "Russia and North Korea sign a fisheries accord {i}"
    # Matched three days ago and more: silent (older than poll.backfill), but carried.
    old = _feed(60 * 40, 3, story, newest=3 * 24 * 60)
    feeds = [{"name": "quiet", "url": feed_server.serve("/quiet.xml", old)},
             {"name": "other", "url": feed_server.serve("/other.xml", _feed(60 * 40, 3))},
             {"name": "news", "url": feed_server.serve("/news.xml", _feed(60 * 40, 2)),
              "interval": "1s"}]
    config = write_config(tmp_path, feeds, [{"url": sink.url}],
                          poll={"min_interval": "1s", "jitter": 0})
    log = (tmp_path / "daemon.log").open("w")
    daemon = subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(config), "run"],
                              stdout=subprocess.DEVNULL, stderr=log)

    def polls(path: str) -> int:
        return sum(1 for p, _ in feed_server.requests if p == path)

    try:
        assert wait_for(lambda: polls("/news.xml") >= 3 and min(
            polls("/quiet.xml"), polls("/other.xml")) >= 1), "the first polls"
        before = polls("/other.xml")
        assert polls("/quiet.xml") == 1  # hourly now: learned from its dates
        feed_server.serve("/news.xml", _feed(1, 1, "Putin meets Kim Jong Un in Vladivostok"))
        assert wait_for(lambda: len(sink.received) == 1, 60), "the alert"
        quiet = polls("/quiet.xml")
        assert wait_for(lambda: polls("/quiet.xml") >= quiet + 3, 30), "the quiet feed's polls"
        assert polls("/other.xml") == before  # it never carried the watchlist
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
        log.close()
    text = (tmp_path / "daemon.log").read_text()
    assert "feed quiet: polled every 1s from now on: after an alert" in text, text
