"""Pacing through the real outbox, Apprise and local endpoints, with the clock moved by hand:
digests, quiet hours with an urgent bypass, rate limits folding into digests, channel-sized
parts, email digests in HTML, "updated" notes and the v1 → v2 database upgrade."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from monitor.delivery.schedule import Policy, next_digest
from monitor.pipeline import open_config
from monitor.storage.store import Store
from monitor.storage.tables import SCHEMA_VERSION
from monitor.surfaces.cli import main
from tests.support.project import run_cycle, write_config
from tests.support.servers import FeedServer, Mailbox, Sink, TelegramApi

WATCHLISTS = [
    {"name": "pact", "priority": "high", "entities": {"pact": ["defence pact"]},
     "rules": [{"any": ["pact"]}]},
    {"name": "trade", "entities": {"trade": ["fisheries", "rail link", "tourism"]},
     "rules": [{"any": ["trade"]}]},
]
TRADE = ["Fisheries quotas set for the Sea of Japan season",
         "New rail link opens between Khasan and Tumangang",
         "Tourism office reopens in Vladivostok after six years",
         "Fisheries inspectors report record crab catch near Sakhalin",
         "Rail link freight volumes double in October figures",
         "Tourism fair in Wonsan draws tour operators from Kazan",
         "Fisheries ministry drafts rules for joint processing plants"]
PACT = "Parliament ratifies the defence pact after a closed session"


def _rss(items: Sequence[tuple[str, str]], when: datetime | None = None) -> bytes:
    """An RSS feed of (guid, title) items published at `when` (now by default)."""
    stamp = (when or datetime.now(UTC)).strftime("%a, %d %b %Y %H:%M:%S +0000")
    body = "".join(f"<item><guid>{guid}</guid><title>{title}</title>"
                   f"<link>https://news.example/{guid}</link><pubDate>{stamp}</pubDate>"
                   f"<description>{title}.</description></item>" for guid, title in items)
    return f'<rss version="2.0"><channel><title>Desk</title>{body}</channel></rss>'.encode()


def _setup(tmp_path: Path, server: FeedServer, items: Sequence[tuple[str, str]],
           notify: list[dict[str, Any]]) -> Path:
    url = server.serve("/desk.xml", _rss(items))
    return write_config(tmp_path, [{"url": url, "name": "Desk"}], notify,
                        watchlists=WATCHLISTS, delivery={"retry_base": "1s"})


def _statuses(tmp_path: Path) -> list[str]:
    with sqlite3.connect(tmp_path / "monitor.db") as db:
        return [status for (status,) in db.execute("select status from outbox order by id")]


def test_digest_mode_sends_one_message_per_period(tmp_path: Path, feed_server: FeedServer,
                                                  sink: Sink) -> None:
    """A digest target gets nothing when stories arrive, then one message at the next digest
    time listing them all under their watchlist."""
    items = [(f"t{n}", title) for n, title in enumerate(TRADE[:3])]
    config = _setup(tmp_path, feed_server, items,
                    [{"url": sink.url, "mode": "digest", "digest_every": "1h"}])
    now = datetime.now(UTC)
    slot = next_digest(Policy(digest_every=timedelta(hours=1)), now)
    assert run_cycle(config, now, slot - timedelta(seconds=1), slot, slot) == [0, 0, 3, 0]
    [digest] = sink.received
    assert digest["title"] == "3 stories (digest): trade"
    for title in TRADE[:3]:
        assert title in digest["message"]
    assert _statuses(tmp_path) == ["SENT"] * 3


def test_quiet_hours_hold_alerts_but_let_urgent_ones_through(
        tmp_path: Path, feed_server: FeedServer, sink: Sink,
        capsys: pytest.CaptureFixture[str]) -> None:
    """In quiet hours a high-priority story alerts at once; the others wait and arrive as one
    digest when the quiet hours end."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    end = now + timedelta(hours=2)
    quiet = f"{(now - timedelta(hours=1)):%H:%M}-{end:%H:%M}"
    items = [("p", PACT), ("t0", TRADE[0]), ("t1", TRADE[1])]
    config = _setup(tmp_path, feed_server, items,
                    [{"url": sink.url, "quiet_hours": quiet, "timezone": "UTC"}])
    soon = datetime.now(UTC) + timedelta(seconds=30)  # after the poll has queued the alerts
    assert run_cycle(config, soon) == [1]
    assert main(["--config", str(config), "status"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert f"quiet {quiet} UTC (high priority goes through); 2 waiting, 2 held until " \
        f"{end:%Y-%m-%d %H:%M} UTC" in shown
    assert run_cycle(config, now + timedelta(hours=1), end - timedelta(minutes=1), end) == [0, 0, 2]
    assert PACT in sink.received[0]["title"]
    held = sink.received[1]
    assert held["title"] == "2 stories (quiet hours): trade"
    assert TRADE[0] in held["message"] and TRADE[1] in held["message"]


def test_rate_limit_folds_overflow_into_a_digest_and_drops_nothing(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """With 2 messages an hour, 5 stories go as 1 alert and 1 digest of 4; two more an hour
    later wait for a free slot and then go together; every alert ends up sent."""
    items = [(f"t{n}", title) for n, title in enumerate(TRADE[:5])]
    config = _setup(tmp_path, feed_server, items, [{"url": sink.url, "rate_limit": "2/h"}])
    now = datetime.now(UTC) + timedelta(seconds=30)  # after the poll has queued the alerts
    assert run_cycle(config, now) == [5]
    assert len(sink.received) == 2
    assert sink.received[1]["title"] == "4 stories (rate limit): trade"
    more = items + [(f"t{n}", TRADE[n]) for n in (5, 6)]
    feed_server.serve("/desk.xml", _rss(more))
    assert run_cycle(config, now + timedelta(minutes=10), now + timedelta(minutes=59),
                  now + timedelta(minutes=61)) == [0, 0, 2]
    assert sink.received[2]["title"] == "2 stories (rate limit): trade"
    assert _statuses(tmp_path) == ["SENT"] * 7


def test_check_describes_each_targets_pace_and_form(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`monitor check` says, per target, how often and in what form it hears from monitor."""
    config = write_config(tmp_path, [{"url": "https://a.example/f.xml"}], [
        {"url": "json://127.0.0.1:9/a", "name": "chat", "rate_limit": "6/h",
         "quiet_hours": "22:00-07:00", "timezone": "Asia/Seoul", "tags": ["korea"]},
        {"url": "mailto://u:p@127.0.0.1:9?from=u@example.org&to=a@example.org", "name": "mail",
         "mode": "digest", "digest_every": "1d", "digest_at": "08:00",
         "timezone": "Europe/Berlin"}])
    assert main(["--config", str(config), "check"]) == 0
    out = capsys.readouterr().out
    assert ("target chat: immediate; at most 6 per 1h; quiet 22:00-07:00 Asia/Seoul (high "
            "priority goes through); markdown, tags korea") in out
    assert "target mail: digest every 1d from 08:00 Europe/Berlin; html" in out


def test_long_digest_is_split_into_parts_the_channel_takes(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """A digest longer than the target's limit arrives in numbered parts, each within it."""
    items = [(f"t{n}", title) for n, title in enumerate(TRADE)]
    config = _setup(tmp_path, feed_server, items,
                    [{"url": sink.url, "mode": "digest", "max_length": 400}])
    now = datetime.now(UTC)
    slot = next_digest(Policy(), now)
    assert run_cycle(config, now, slot) == [0, 7]
    assert len(sink.received) > 1
    for number, part in enumerate(sink.received, 1):
        assert part["title"].endswith(f"({number}/{len(sink.received)})")
        assert len(part["message"]) <= 400
    text = "\n".join(part["message"] for part in sink.received)
    assert all(title in text for title in TRADE)


def test_email_digest_is_html(tmp_path: Path, feed_server: FeedServer,
                              smtp: tuple[Mailbox, int]) -> None:
    """An email digest is one HTML message with a heading per watchlist and clickable links."""
    mailbox, port = smtp
    url = f"mailto://127.0.0.1:{port}?from=monitor@example.org&to=desk@example.org&mode=insecure"
    items = [("p", PACT), ("t0", TRADE[0])]
    config = _setup(tmp_path, feed_server, items, [{"url": url, "mode": "digest"}])
    now = datetime.now(UTC)
    assert run_cycle(config, now, next_digest(Policy(), now)) == [0, 2]
    [message] = mailbox.messages
    page = _html(message)
    assert "<b>pact (1)</b>" in page and "<b>trade (1)</b>" in page
    assert '<a href="https://news.example/t0">' in page


def _html(message: Message) -> str:
    parts = [p for p in message.walk() if p.get_content_type() == "text/html"]
    payload = parts[0].get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def test_retitled_entry_gives_one_updated_note_and_never_a_second_alert(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """When a feed re-titles an alerted entry, a target with `updates: true` gets one short
    note (once, however often it changes again) and a target without gets nothing."""
    quiet_sink = Sink()
    try:
        config = _setup(tmp_path, feed_server, [("t0", TRADE[0])],
                        [{"url": sink.url, "updates": True}, {"url": quiet_sink.url}])
        now = datetime.now(UTC) + timedelta(seconds=30)
        assert run_cycle(config, now) == [2]
        feed_server.serve("/desk.xml", _rss([("t0", TRADE[0] + ", officials say")]))
        assert run_cycle(config, now) == [1]
        feed_server.serve("/desk.xml", _rss([("t0", "Fisheries quotas set (corrected)")]))
        assert run_cycle(config, now) == [0]
        assert len(sink.received) == 2 and len(quiet_sink.received) == 1
        note = sink.received[1]
        assert note["title"].startswith("Updated: ")
        assert f"was: {TRADE[0]}" in note["message"]
    finally:
        quiet_sink.close()


def test_sources_note_names_the_outlets_that_reported_the_story_after_its_alert(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """With `sources_after`, a story alerts at once and, that long after, one short note names
    the outlets that reported it since; a story nobody else reported gets no note."""
    config = _setup(tmp_path, feed_server, [("t0", TRADE[0]), ("t1", TRADE[1])],
                    [{"url": sink.url, "sources_after": "30m"}])
    now = datetime.now(UTC) + timedelta(seconds=30)
    assert run_cycle(config, now) == [2]
    feeds = [{"url": feed_server.serve("/desk.xml", _rss([("t0", TRADE[0]), ("t1", TRADE[1])])),
              "name": "Desk"}]
    for outlet in ("Wire", "Daily", "Herald"):
        body = _rss([(f"{outlet}-1", TRADE[0])]).replace(
            f"news.example/{outlet}-1".encode(), f"news.example/t0?utm_source={outlet}".encode())
        feeds.append({"url": feed_server.serve(f"/{outlet}.xml", body), "name": outlet})
    config = write_config(tmp_path, feeds, [{"url": sink.url, "sources_after": "30m"}],
                          watchlists=WATCHLISTS)
    assert run_cycle(config, now + timedelta(minutes=10), now + timedelta(minutes=31)) == [0, 1]
    note = sink.received[2]
    assert note["title"] == f"Also reported: {TRADE[0]}"
    named = note["message"].split("reported this story: ")[1].splitlines()[0]
    assert note["message"].startswith("Since the alert, 3 more outlets")
    assert sorted(named.split(", ")) == ["Daily", "Herald", "Wire"]
    assert len(sink.received) == 3  # nothing about the story no one else reported


def test_version_1_database_is_upgraded_in_place(tmp_path: Path, feed_server: FeedServer,
                                                 sink: Sink) -> None:
    """A database written by schema v1 gains the new columns and table, keeps its rows, and
    its pending alert is still sent."""
    config = _setup(tmp_path, feed_server, [], [{"url": sink.url}])
    Store(open_config(config).database).close()
    with sqlite3.connect(tmp_path / "monitor.db") as db:
        for table, column in [("outbox", "kind"), ("outbox", "fields"), ("outbox", "held"),
                              ("entries", "revised_at"), ("entries", "explained")]:
            db.execute(f"alter table {table} drop column {column}")
        db.execute("drop table messages")
        db.execute("update meta set value = '1' where key = 'schema_version'")
        db.execute("insert into outbox (target, target_name, watchlists, title, body, status,"
                   " attempts, created_at, next_attempt_at) values (?, 'sink', 'trade',"
                   " 'Old alert', 'old body', 'PENDING', 0, ?, ?)",
                   (_target_id(sink.url), _sql_now(), _sql_now()))
    store = Store(open_config(config).database)
    assert store.schema_version() == SCHEMA_VERSION
    store.close()
    assert run_cycle(config, datetime.now(UTC) + timedelta(seconds=1)) == [1]
    assert sink.titles() == ["Old alert"]


def _target_id(url: str) -> str:
    from monitor.delivery.notifier import target_id
    return target_id(url)


def _sql_now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")


def test_long_digest_to_telegram_arrives_in_parts_within_its_limit(
        tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through Apprise's real Telegram plugin (its HTTP API stubbed), a digest longer than
    4,096 characters arrives as numbered messages of at most 4,096, with every story."""
    from apprise.plugins import telegram

    api = TelegramApi()
    monkeypatch.setattr(telegram.requests, "post", api.post)
    titles = [f"{TRADE[n % len(TRADE)]} — part {n} of a long series on the border economy"
              for n in range(60)]
    items = [(f"t{n}", title) for n, title in enumerate(titles)]
    url = "tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-100123"
    config = _setup(tmp_path, feed_server, items, [{"url": url, "mode": "digest",
                                                    "digest_limit": 100}])
    now = datetime.now(UTC)
    assert run_cycle(config, now, next_digest(Policy(), now)) == [0, 60]
    assert len(api.texts) > 1
    assert all(len(text) <= 4096 for text in api.texts)
    assert f"(1/{len(api.texts)})" in api.texts[0]
    joined = "\n".join(api.texts)
    assert all(title.split(" — ")[1] in joined for title in titles)
