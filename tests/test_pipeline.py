"""Pipeline decisions: which new entries may alert, where alerts go, and concurrent writers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.config import parse_config
from monitor.delivery.notifier import Target, route
from monitor.errors import FetchError, ParseError, StoreError
from monitor.matching.matcher import compile_watchlists
from monitor.models import CycleReport, DeliveryReport, Entry, PollStatus
from monitor.pipeline import Runtime, _eligible, match_entries, open_config, read_feed
from monitor.storage.store import Store
from monitor.support.backoff import backoff_delay, feed_backoff
from tests.support.project import render_feed, write_config
from tests.support.servers import FeedServer, Sink, held

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


def _runtime(config: Path) -> Runtime:
    return Runtime.from_config(open_config(config))


def test_a_cycle_called_directly_polls_records_and_delivers(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """`Runtime.run_cycle` polls every feed, queues and sends the alert; the next cycle finds
    the feed unchanged and sends nothing."""
    config = write_config(tmp_path, [{"url": feed_server.serve("/ru.xml",
                                                               render_feed("russian.xml")),
                                      "name": "RU"}], [{"url": sink.url}])

    async def two_cycles() -> tuple[CycleReport, CycleReport]:
        runtime = _runtime(config)
        try:
            return await runtime.run_cycle(), await runtime.run_cycle()
        finally:
            await runtime.close()

    first, second = asyncio.run(two_cycles())
    assert [(r.feed, r.status) for r in first.polls] == [("RU", PollStatus.OK)]
    assert first.polls[0].queued == first.delivery.sent == len(sink.received) >= 1
    assert first.failed == [] and first.health_changes == 0
    assert [r.status for r in second.polls] == [PollStatus.UNCHANGED]
    assert second.delivery.sent == 0


def test_a_document_that_is_not_a_feed_is_a_parse_error_not_a_fetch_error(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """An HTML page where a feed should be is its own outcome, recorded against the feed with
    the parser's reason; a 404 is a plain error."""
    page = feed_server.serve("/page.html", b"<!doctype html><html><body>hello</body></html>",
                             headers={"Content-Type": "text/html"})
    missing = f"{feed_server.base}/missing.xml"
    config = write_config(tmp_path, [{"url": page, "name": "Page"},
                                     {"url": missing, "name": "Missing"}], [{"url": sink.url}])

    async def cycle() -> tuple[CycleReport, str | None]:
        runtime = _runtime(config)
        try:
            report = await runtime.run_cycle()
            return report, runtime.store.feeds.get(page).last_error
        finally:
            await runtime.close()

    report, recorded = asyncio.run(cycle())
    statuses = {r.feed: r.status for r in report.polls}
    assert statuses == {"Page": PollStatus.PARSE_ERROR, "Missing": PollStatus.ERROR}
    assert len(report.failed) == 2
    assert recorded is not None and "not a feed" in recorded


def test_reconfigure_adds_feeds_and_applies_new_watchlists(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """After `reconfigure` with a new feed and a watchlist that only the new feed's story
    matches, the next cycle polls it and alerts on it by that watchlist; the old feed's state
    is kept (unchanged)."""
    russian = {"url": feed_server.serve("/ru.xml", render_feed("russian.xml")), "name": "RU"}
    english = {"url": feed_server.serve("/en.xml", render_feed("english.xml")), "name": "EN"}
    pact_only = [{"name": "pact", "entities": {"e": ["defence pact"]}, "rules": [{"any": ["e"]}]}]

    async def reconfigured() -> tuple[CycleReport, list[str]]:
        runtime = _runtime(write_config(tmp_path, [russian], [{"url": sink.url}]))
        try:
            await runtime.run_cycle()
            edited = write_config(tmp_path, [russian, english], [{"url": sink.url}],
                                  watchlists=pact_only)
            runtime.reconfigure(open_config(edited))
            report = await runtime.run_cycle()
            return report, [w.name for w in runtime.watchlists.watchlists]
        finally:
            await runtime.close()

    report, watchlists = asyncio.run(reconfigured())
    assert watchlists == ["pact"]
    assert {r.feed: r.status for r in report.polls} == {"RU": PollStatus.UNCHANGED,
                                                         "EN": PollStatus.OK}
    assert [r.queued for r in report.polls if r.feed == "EN"] == [1]
    assert sink.titles()[-1] == "[pact] Putin and Kim Jong Un sign mutual defence pact in " \
                                "Pyongyang"


def test_read_feed_and_match_entries_without_recording(tmp_path: Path,
                                                      feed_server: FeedServer) -> None:
    """`read_feed` reads a URL or a file and parses it; what is not a feed is a ParseError,
    what cannot be read a FetchError; `match_entries` pairs entries with their matches."""
    config = open_config(write_config(tmp_path, [], []))
    watchlists = compile_watchlists(config)
    parsed = asyncio.run(read_feed(config, feed_server.serve("/ru.xml",
                                                             render_feed("russian.xml"))))
    found = match_entries(parsed.entries, watchlists)
    assert found and {m.watchlist for _, m in found} == {"russia-dprk"}
    page = tmp_path / "page.html"
    page.write_bytes(b"<!doctype html><html><body>hello</body></html>")
    with pytest.raises(ParseError, match="not a feed"):
        asyncio.run(read_feed(config, str(page)))
    with pytest.raises(FetchError):
        asyncio.run(read_feed(config, str(tmp_path / "nowhere.xml")))


async def _one_cycle(config: Path) -> CycleReport:
    runtime = _runtime(config)
    try:
        return await runtime.run_cycle()
    finally:
        await runtime.close()


def _item(title: str, published: str) -> str:
    return f"<item><title>{title}</title><link>https://news.example/{abs(hash(title))}</link>" \
           f"{published}</item>"


def test_a_new_database_re_alerts_only_what_backfill_allows(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """Pointing a config that has history at a new database re-sends only the entries inside
    `poll.backfill`: the day-old story stays silent."""
    hour = (datetime.now(UTC) - timedelta(hours=1)).strftime("%a, %d %b %Y %H:%M:%S +0000")
    day = (datetime.now(UTC) - timedelta(days=1)).strftime("%a, %d %b %Y %H:%M:%S +0000")
    body = ("<rss version='2.0'><channel><title>T</title>"
            + _item("Lavrov arrives in Pyongyang for talks with North Korea",
                    f"<pubDate>{hour}</pubDate>")
            + _item("Shoigu meets Kim Jong Un in Pyongyang", f"<pubDate>{day}</pubDate>")
            + "</channel></rss>")
    url = feed_server.serve("/f.xml", body.encode())
    for database in ("first.db", "second.db"):
        config = write_config(tmp_path, [{"url": url, "name": "F"}], [{"url": sink.url}],
                              database=f"sqlite:///{tmp_path / database}")
        assert asyncio.run(_one_cycle(config)).delivery.sent == 1
    assert [t for t in sink.titles() if "Lavrov" in t] == sink.titles()
    assert len(sink.titles()) == 2


def test_one_cycle_sends_ready_alerts_while_a_slow_feed_is_still_fetched(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """In `run_cycle` (as `run --once` uses it) a feed whose server accepts and does not answer
    does not hold back the alert of a feed that answered: it is sent while the slow one waits."""
    release = threading.Event()
    slow = feed_server.serve("/slow.xml", b"")
    feed_server.routes["/slow.xml"].handler = held(release, render_feed("english.xml"))
    fast = feed_server.serve("/ru.xml", render_feed("russian.xml"))
    config = write_config(tmp_path, [{"url": slow, "name": "slow"}, {"url": fast, "name": "RU"}],
                          [{"url": sink.url}])
    done: list[CycleReport] = []
    cycle = threading.Thread(target=lambda: done.append(asyncio.run(_one_cycle(config))))
    cycle.start()
    try:
        deadline = time.monotonic() + 30
        while not sink.received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [t for t in sink.titles() if "Лавров" in t] == sink.titles() != []
        assert cycle.is_alive()  # the slow feed is still being fetched
    finally:
        release.set()
        cycle.join(60)
    assert done[0].delivery.sent == len(sink.received) == 2  # the slow feed's alert too
    assert {r.feed: r.status for r in done[0].polls} == {"slow": PollStatus.OK,
                                                         "RU": PollStatus.OK}


@pytest.mark.parametrize(("interval", "delays"), [
    (30, [7.5, 15, 30, 30]),                 # a 30 s feed retries after 7.5 s, not after 60 s
    (900, [60, 120, 240, 480, 900, 900]),   # the first wait is at most a minute
    (10, [2.5, 5, 10]),
])
def test_a_failing_feed_retries_below_its_interval_doubling_up_to_it(
        interval: float, delays: list[float]) -> None:
    """A failing feed's retries start at a quarter of its interval (a minute at most) and
    double up to the interval, as the README says."""
    base, cap = feed_backoff(interval)
    assert [backoff_delay(n, base, cap) for n in range(1, len(delays) + 1)] == delays


def test_a_failing_feeds_next_poll_comes_before_its_interval(
        tmp_path: Path, feed_server: FeedServer) -> None:
    """After a first failure the feed's next poll is set within its first backoff step (with
    jitter), well before a whole interval."""
    url = feed_server.serve("/gone.xml", b"", status=503)
    config = write_config(tmp_path, [{"url": url, "name": "gone", "interval": "2m"}], [])
    before = datetime.now(UTC)
    asyncio.run(_one_cycle(config))
    store = Store(open_config(config).database)
    try:
        (row,) = store.feeds.all()
    finally:
        store.close()
    wait = (row.next_poll_at.replace(tzinfo=UTC) - before).total_seconds()
    assert 30 * 0.8 <= wait <= 30 * 1.2 + 5


def test_a_failed_early_delivery_fails_the_cycle(
        tmp_path: Path, feed_server: FeedServer, sink: Sink,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A delivery pass made while a slow feed is still fetched that fails (the database, say)
    fails the cycle, as the last pass would: it is not dropped because a later pass worked."""
    release = threading.Event()
    slow = feed_server.serve("/slow.xml", b"")
    feed_server.routes["/slow.xml"].handler = held(release, render_feed("english.xml"))
    fast = feed_server.serve("/ru.xml", render_feed("russian.xml"))
    config = write_config(tmp_path, [{"url": slow, "name": "slow"}, {"url": fast, "name": "RU"}],
                          [{"url": sink.url}])
    calls: list[int] = []
    real = Runtime.deliver

    async def first_fails(self: Runtime, now: datetime | None = None) -> DeliveryReport:
        calls.append(1)
        if len(calls) == 1:
            release.set()  # the slow feed answers once the early pass has begun
            raise StoreError("OperationalError: database or disk is full")
        return await real(self, now)

    monkeypatch.setattr(Runtime, "deliver", first_fails)
    with pytest.raises(StoreError, match="disk is full"):
        asyncio.run(_one_cycle(config))
    assert len(calls) == 1
