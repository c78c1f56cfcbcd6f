"""End to end: local feeds over real HTTP, real SQLite, real Apprise into local endpoints."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from monitor.surfaces.cli import main
from tests.support.project import render_feed, write_config
from tests.support.servers import FeedServer, Sink

GOLDEN = {
    "/english.xml": "english.xml",
    "/wire.xml": "wire.xml",
    "/russian.xml": "russian.xml",
    "/korean.atom": "korean.atom",
    "/indonesian.xml": "indonesian.xml",
}
EXPECTED = [
    "pact in Pyongyang",  # carried by two feeds: whichever is polled first alerts
    "North Korean troops deployed to Kursk",
    "Лавров прибыл в Пхеньян",
    "북한, 러시아와 군사협력 강화",
    "Rusia meratifikasi perjanjian bantuan militer",
]
NOT_EXPECTED = ["DPR leader", "naengmyeon", "Choe Son Hui", "Пушилин", "평양냉면", "tahanan"]


def _serve_golden(server: FeedServer) -> list[dict[str, str]]:
    return [{"url": server.serve(path, render_feed(name)), "name": name}
            for path, name in GOLDEN.items()]


def _alerted(sink: Sink, fragment: str) -> int:
    return sum(fragment in title for title in sink.titles())


@pytest.fixture
def setup(tmp_path: Path, feed_server: FeedServer, sink: Sink) -> Path:
    return write_config(tmp_path, _serve_golden(feed_server), [{"url": sink.url}],
                        delivery={"retry_base": "0.05s", "retry_max": "0.1s"})


def test_each_matching_story_alerts_exactly_once(setup: Path, sink: Sink) -> None:
    """One run alerts each matching story once (across two feeds too) and no trap story."""
    assert main(["--config", str(setup), "run", "--once"]) == 0
    for fragment in EXPECTED:
        assert _alerted(sink, fragment) == 1, (fragment, sink.titles())
    for fragment in NOT_EXPECTED:
        assert _alerted(sink, fragment) == 0, (fragment, sink.titles())
    assert len(sink.received) == len(EXPECTED)


def test_second_run_alerts_nothing_and_new_item_alerts_next(
        setup: Path, sink: Sink, feed_server: FeedServer) -> None:
    """A second run is silent; an item added to a feed is alerted on the next run, alone."""
    assert main(["--config", str(setup), "run", "--once"]) == 0
    assert main(["--config", str(setup), "run", "--once"]) == 0
    assert len(sink.received) == len(EXPECTED)
    new_item = """<item>
      <title>КНДР и Россия открыли мост через Туманную</title>
      <link>https://ru.example.com/economy/bridge</link>
      <description>Автомобильный мост соединил Хасан и Туманган.</description>
    </item>
    <item>"""
    body = render_feed("russian.xml").replace(b"<item>", new_item.encode(), 1)
    feed_server.serve("/russian.xml", body)
    assert main(["--config", str(setup), "run", "--once"]) == 0
    assert len(sink.received) == len(EXPECTED) + 1
    assert "КНДР и Россия открыли мост" in sink.titles()[-1]


def test_alert_carries_source_terms_snippet_and_link(setup: Path, sink: Sink) -> None:
    """An alert names its source, the matched terms, shows a snippet and the link verbatim."""
    main(["--config", str(setup), "run", "--once"])
    body = next(m["message"] for m in sink.received if "Лавров" in m["title"])
    assert "russian.xml" in body
    assert "Matched russia-dprk" in body and "Лавров" in body and "Пхеньян" in body
    assert "**Лавров**" in body
    assert "https://ru.example.com/politics/lavrov-pyongyang" in body


def test_target_down_gets_the_alert_later_even_after_the_item_left_its_feed(
        setup: Path, sink: Sink, feed_server: FeedServer) -> None:
    """Alerts queued while the target is down are delivered once it is back, exactly once."""
    sink.failing = True
    assert main(["--config", str(setup), "run", "--once"]) == 0
    assert sink.received == []
    for path in GOLDEN:
        feed_server.serve(path, b'<?xml version="1.0"?><rss version="2.0"><channel>'
                                b"<title>empty</title></channel></rss>")
    sink.failing = False
    deadline = time.monotonic() + 30
    while len(sink.received) < len(EXPECTED):  # runs until the (test-sized) backoff has passed
        assert time.monotonic() < deadline, sink.titles()
        assert main(["--config", str(setup), "run", "--once"]) == 0
    assert sorted(sink.titles()) == sorted(set(sink.titles()))
    assert len(sink.received) == len(EXPECTED)


def test_email_target_receives_html_alert(tmp_path: Path, feed_server: FeedServer,
                                          smtp: tuple[object, int]) -> None:
    """A mailto:// target gets the alert as an HTML email: the title in bold with its language,
    the source and the published time in the target's time zone, the matched terms, the snippet
    with the terms marked, the headline and the link clickable; its plain-text part has the same
    lines, none indented."""
    mailbox, port = smtp
    now = datetime.now(UTC)
    feeds = [{"url": feed_server.serve("/ru.xml", render_feed("russian.xml", now))}]
    url = f"mailto://127.0.0.1:{port}?from=monitor@example.org&to=desk@example.org&mode=insecure"
    config = write_config(tmp_path, feeds, [{"url": url, "name": "desk",
                                              "timezone": "Asia/Seoul"}])
    assert main(["--config", str(config), "run", "--once"]) == 0
    messages = mailbox.messages  # type: ignore[attr-defined]
    assert len(messages) == 1
    assert (str(make_header(decode_header(messages[0]["Subject"]))), messages[0]["To"]) == (
        "[russia-dprk] Лавров прибыл в Пхеньян для переговоров с Чвэ Сон Хи", "desk@example.org")
    [html] = [p for p in messages[0].walk() if p.get_content_type() == "text/html"]
    # The feed's item is dated an hour before `now`, to the second (render_feed).
    published = (now.replace(microsecond=0) - timedelta(hours=1)).astimezone(
        ZoneInfo("Asia/Seoul"))
    link = "https://ru.example.com/politics/lavrov-pyongyang"
    assert html.get_payload(decode=True).decode().strip().split("<br>") == [
        f'<b><a href="{link}">Лавров прибыл в Пхеньян для переговоров с Чвэ Сон Хи</a></b> [ru]',
        f"Новости · {published:%Y-%m-%d %H:%M} KST",
        "Matched russia-dprk — russia_related: Лавров*; dprk_related: Пхеньян*",
        "",
        "<i>“<b>Лавров</b> прибыл в <b>Пхеньян</b> для переговоров с Чвэ Сон Хи”</i>",
        "",
        f'<a href="{link}">{link}</a>', ""]
    # The plain-text part (Apprise makes it from the HTML): no line starts with a space.
    [text] = [p for p in messages[0].walk() if p.get_content_type() == "text/plain"]
    assert text.get_payload(decode=True).decode().strip().splitlines() == [
        "Лавров прибыл в Пхеньян для переговоров с Чвэ Сон Хи [ru]",
        f"Новости · {published:%Y-%m-%d %H:%M} KST",
        "Matched russia-dprk — russia_related: Лавров*; dprk_related: Пхеньян*",
        "",
        "“Лавров прибыл в Пхеньян для переговоров с Чвэ Сон Хи”",
        "",
        link]


def test_no_notify_prints_alerts_to_the_console(
        tmp_path: Path, feed_server: FeedServer, capsys: pytest.CaptureFixture[str]) -> None:
    """Without a notify entry the alert goes through Apprise's console target to stdout."""
    feeds = [{"url": feed_server.serve("/id.xml", render_feed("indonesian.xml"))}]
    config = write_config(tmp_path, feeds, [])
    assert main(["--config", str(config), "run", "--once"]) == 0
    out = capsys.readouterr().out
    assert "Rusia meratifikasi" in out
    assert "https://id.example.co.id/dunia/rusia-ratifikasi-perjanjian" in out


def test_unreachable_feeds_are_reported_and_the_cycle_still_exits_zero(
        tmp_path: Path, sink: Sink, capsys: pytest.CaptureFixture[str]) -> None:
    """A run over feeds that cannot be reached exits 0, logs each, and status shows them."""
    feeds = [{"url": "http://127.0.0.1:9/nothing.xml", "name": "closed port"}]
    config = write_config(tmp_path, feeds, [{"url": sink.url}])
    assert main(["--config", str(config), "run", "--once"]) == 0
    assert "closed port" in capsys.readouterr().err
    assert main(["--config", str(config), "status"]) == 0
    out = capsys.readouterr().out
    assert "closed port" in out and "cannot connect" in out
    rows = sqlite3.connect(tmp_path / "monitor.db").execute(
        "select consecutive_failures from feeds").fetchall()
    assert rows == [(1,)]


def test_installed_command_runs_once_in_a_subprocess(setup: Path, sink: Sink) -> None:
    """`python -m monitor --config C run --once` works as a separate process."""
    done = subprocess.run([sys.executable, "-m", "monitor", "--config", str(setup), "run",
                           "--once"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert len(sink.received) == len(EXPECTED)
