"""Hostile text from feeds and servers: inert in terminals and logs, never XML-breaking, and one
bad entry or one odd failure never silences a feed; a config with nothing to do is refused."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor import pipeline
from monitor.config import load_config
from monitor.models import Entry
from monitor.sources import parser
from monitor.sources.parser import parse_feed
from monitor.storage.store import Store
from monitor.surfaces.cli import main
from tests.support.payloads import FORBIDDEN, entry_strings
from tests.support.project import write_config
from tests.support.servers import FeedServer, Route, Sink

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR) [\w.]+: ")
STORY = "Putin meets Kim Jong Un in Pyongyang to sign a defence treaty"


def _json_feed(*items: str) -> bytes:
    """A JSON Feed whose items are given as raw JSON text (so they may hold anything)."""
    return ('{"version": "https://jsonfeed.org/version/1.1", "title": "JF", "items": ['
            + ", ".join(items) + "]}").encode()


def _status(config: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "monitor", "--config", str(config), "status",
                           "--json"], capture_output=True, text=True, timeout=60, check=True)
    loaded: dict[str, Any] = json.loads(done.stdout)
    return loaded


def _reason(text: str) -> Any:
    """A feed-server handler answering 503 with `text` as its reason phrase."""
    def handle(request: BaseHTTPRequestHandler) -> None:
        request.send_response(503, text)
        request.send_header("Content-Length", "0")
        request.end_headers()
    return handle


def test_status_shows_markup_from_feeds_and_servers_as_plain_text(
        tmp_path: Path, feed_server: FeedServer, capsys: pytest.CaptureFixture[str]) -> None:
    """A server error `Busy [/]`, a feed named with rich `[link=…]` markup and an ESC sequence
    are printed by `status` as the literal text they are, and `status` exits 0."""
    busy = feed_server.base + "/busy.xml"
    feed_server.routes["/busy.xml"] = Route(handler=_reason("Busy [/]"))
    feeds = [{"url": busy, "name": "[link=https://evil.example]click[/link] \x1b[31mred"}]
    config = write_config(tmp_path, feeds, [])
    assert main(["--config", str(config), "run", "--once"]) == 0
    capsys.readouterr()
    assert main(["--config", str(config), "status"]) == 0
    out = capsys.readouterr().out
    assert "HTTP 503 Busy [/]" in out
    assert "[link=https://evil.example]click[/link] \\x1b[31mred" in out
    assert "\x1b" not in out


def test_a_feed_name_with_a_line_break_cannot_forge_a_log_line(
        tmp_path: Path, feed_server: FeedServer) -> None:
    """A feed named (by an imported OPML) with a line break and a fake log line is logged on one
    line with the break escaped: every line of the log is a real record."""
    forged = "News\n2026-12-04 10:00:00 CRITICAL monitor: database corrupted\r\x85\u2028x"
    feed_server.routes["/f.xml"] = Route(handler=_reason("Busy"))
    opml = tmp_path / "f.opml"
    attribute = forged.replace("\n", "&#10;").replace("\r", "&#13;")
    opml.write_text(f'<opml version="2.0"><body><outline title="{attribute}" '
                    f'xmlUrl="{feed_server.base}/f.xml"/></body></opml>', encoding="utf-8")
    config = write_config(tmp_path, [{"url": feed_server.base + "/other.xml"}], [])
    assert main(["--config", str(config), "feeds", "import", str(opml)]) == 0
    done = subprocess.run([sys.executable, "-m", "monitor", "--config", str(config), "run",
                           "--once"], capture_output=True, text=True, timeout=120, check=True)
    lines = done.stderr.splitlines()
    assert all(LOG_LINE.match(line) for line in lines), done.stderr
    assert "CRITICAL" not in "".join(line[:40] for line in lines)
    assert any("feed News\\n2026-12-04 10:00:00 CRITICAL monitor: database corrupted\\r\\x85"
               "\\u2028x failed" in line for line in lines), done.stderr


def _xml_round_trip(entries: list[Entry]) -> None:
    """Every string of the entries, written into an XML document, parses back unchanged."""
    root = ET.Element("feed")
    for entry in entries:
        for text in entry_strings(entry):
            ET.SubElement(root, "s").text = text
    parsed = ET.fromstring(ET.tostring(root, encoding="unicode"))
    # XML itself reads a carriage return as a line feed.
    expected = [t.replace("\r\n", "\n").replace("\r", "\n") for e in entries
                for t in entry_strings(e)]
    assert [s.text for s in parsed] == expected


@pytest.mark.parametrize("document", [
    _json_feed('{"id": "1\\u0001", "title": "a\\uffffb\\ufffe\\u0000c\\u001b[31m", '
               '"summary": "s\\ud800t", "content_text": "x\\u0007\\ufdd0y", '
               '"url": "https://a.example/\\u0001x", "language": "en\\u0000"}'),
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>T&#65535;</title>'
    b"<item><title>A &#65535; &#xFFFE; &#x1;B\x0b&#x9b;</title><guid>g&#1;</guid>"
    b"<description>&lt;p&gt;x&amp;#65535;y&lt;/p&gt;</description></item></channel></rss>",
    b'<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><entry><title>&#xDFFF;a'
    b"&#x10FFFF;b&#x1FFFE;</title><id>i</id></entry></feed>",
    b'<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><entry><title>A '
    b"&#x000000000DFFF; &#0000000000055296; b</title><id>i</id></entry></feed>",
])
def test_characters_xml_forbids_are_dropped_at_parse_time(document: bytes) -> None:
    """Controls, lone surrogates and noncharacters from JSON Feed or `&#65535;` never leave the
    parser, so the entries can always be written as XML."""
    entries = parse_feed(document, "https://a.example/feed").entries
    assert entries
    for entry in entries:
        for text in entry_strings(entry):
            assert not FORBIDDEN.search(text), repr(text)
            assert "\n" not in entry.title
    _xml_round_trip(entries)


@settings(max_examples=150, deadline=None)
@given(st.text(), st.text())
def test_any_json_feed_text_parses_into_xml_safe_entries(title: str, summary: str) -> None:
    """Whatever text a JSON Feed item holds, its entry's strings are XML-safe."""
    document = json.dumps({"version": "https://jsonfeed.org/version/1", "items": [
        {"id": title, "title": title, "summary": summary, "content_text": summary}]})
    _xml_round_trip(parse_feed(document.encode(), "https://a.example/feed").entries)


def test_odd_json_feed_entries_cost_themselves_not_their_feed(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """A lone surrogate in a title, a `language` that is an object, ids and titles of the
    wrong type, links with an impossible port or host: every entry still alerts (what cannot
    be read is left out of it), and the feed is polled OK."""
    items = [
        f'{{"id": "1", "title": "{STORY} \\ud800", "url": "https://a.example/1"}}',
        '{"id": "2", "title": "Lavrov lands in Pyongyang for talks with Choe Son Hui", '
        '"language": {"x": [1]}, '
        '"url": "https://a.example/2"}',
        f'{{"id": {{"nested": 1}}, "title": ["list"], "summary": "{STORY} (3)", '
        '"url": "https://a.example/3", "date_published": {"when": 1}}',
        '{"id": "4", "title": "Shoigu arrives in Pyongyang for talks with Kim", '
        '"url": "https://a.example:99999/4"}',
        '{"id": "5", "title": "Russian and North Korean ministers open a bridge", '
        '"url": "http://[::1/5"}',
    ]
    url = feed_server.serve("/f.json", _json_feed(*items))
    config = write_config(tmp_path, [{"url": url}], [{"url": sink.url}])
    assert main(["--config", str(config), "run", "--once"]) == 0
    assert len(sink.received) == 5, sink.titles()
    feed = _status(config)["feeds"][0]
    assert (feed["outcome"], feed["failures"]) == ("ok", 0)


@pytest.mark.parametrize("location", ["data:text/xml,<rss/>", "javascript:alert(1)",
                                      "http://[::1", "file:///etc/passwd"])
def test_a_redirect_to_an_odd_url_is_a_recorded_failure(
        tmp_path: Path, feed_server: FeedServer, location: str) -> None:
    """A redirect to a `data:`, `javascript:` or broken URL fails the poll with a reason that
    is recorded against the feed and counts toward its health."""
    def redirect(request: BaseHTTPRequestHandler) -> None:
        request.send_response(302)
        request.send_header("Location", location)
        request.send_header("Content-Length", "0")
        request.end_headers()

    feed_server.routes["/moved.xml"] = Route(handler=redirect)
    config = write_config(tmp_path, [{"url": feed_server.base + "/moved.xml"}], [])
    assert main(["--config", str(config), "run", "--once"]) == 0
    feed = _status(config)["feeds"][0]
    assert feed["outcome"] == "error"
    assert feed["failures"] == 1
    assert feed["last_poll"] is not None
    assert "internal error" not in feed["last_error"]


def test_an_unforeseen_error_in_a_poll_is_recorded_against_the_feed(
        tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any exception while polling (here a bug in recording) is a failure of that feed, in
    `status` and toward its health, not a poll that never happened."""
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    url = feed_server.serve("/f.json", _json_feed(f'{{"id": "1", "title": "{STORY}"}}'))
    config = write_config(tmp_path, [{"url": url}], [])
    monkeypatch.setattr(pipeline, "_record", broken)
    for _ in range(2):
        assert main(["--config", str(config), "run", "--once"]) == 0
    store = Store(f"sqlite:///{tmp_path / 'monitor.db'}")
    try:
        row = store.feeds.get(url)
    finally:
        store.close()
    assert row.consecutive_failures == 2
    assert row.failing_since is not None
    assert row.last_error == "internal error (a bug; please report it): RuntimeError('a bug')"


def test_an_entry_the_parser_cannot_read_is_skipped_with_its_reason(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """When building one entry fails, the others are kept and the reason is reported."""
    build = parser._entry_from_feedparser

    def fragile(item: Any, *args: Any) -> Entry:
        if item.get("title") == "boom":
            raise ValueError("cannot read this one")
        return build(item, *args)

    monkeypatch.setattr(parser, "_entry_from_feedparser", fragile)
    document = (b"<rss version='2.0'><channel><item><title>one</title></item><item><title>"
                b"boom</title></item><item><title>three</title></item></channel></rss>")
    parsed = parse_feed(document, "https://a.example/feed")
    assert [e.title for e in parsed.entries] == ["one", "three"]
    assert parsed.skipped == ("entry 2 skipped: ValueError: cannot read this one",)


NOTHING_TO_DO = [(feeds, watchlists, key, command)
                 for feeds, watchlists, key in (([], None, "feeds"),
                                                ([{"url": "https://a.example/f.xml"}], [],
                                                 "watchlists"))
                 for command in (["check"], ["run", "--once"])]


@pytest.mark.parametrize("case", NOTHING_TO_DO)
def test_a_config_with_nothing_to_do_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        case: tuple[list[dict[str, str]], list[object] | None, str, list[str]]) -> None:
    """`check` and `run` refuse a config without feeds or watchlists (exit 2, naming the key)."""
    feeds, watchlists, key, command = case
    extra = {} if watchlists is None else {"watchlists": watchlists}
    config = write_config(tmp_path, feeds, [], **extra)
    assert main(["--config", str(config), *command]) == 2
    error = capsys.readouterr().err
    assert f"config.yaml: {key}: no {key} configured" in error


def test_an_empty_config_file_is_refused(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """An empty config file does not pass `check` as "OK — 0 feeds"."""
    config = tmp_path / "config.yaml"
    config.write_text("", encoding="utf-8")
    assert main(["--config", str(config), "check"]) == 2
    assert "no feeds configured" in capsys.readouterr().err


def test_an_opml_with_huge_names_and_urls_imports_what_fits(
        tmp_path: Path, feed_server: FeedServer) -> None:
    """An outline title of 10,000 characters is cut to 200; a 5,000-character URL is no feed;
    the config still loads and runs."""
    config = write_config(tmp_path, [{"url": feed_server.base + "/other.xml"}], [])
    opml = tmp_path / "big.opml"
    opml.write_text(f'<opml version="2.0"><body><outline title="{"N" * 10_000}" '
                    f'xmlUrl="{feed_server.base}/a.xml"/><outline title="long" '
                    f'xmlUrl="{feed_server.base}/{"u" * 5000}.xml"/></body></opml>',
                    encoding="utf-8")
    assert main(["--config", str(config), "feeds", "import", str(opml)]) == 0
    feeds = load_config(config).feeds
    assert [(f.url, f.name) for f in feeds[1:]] == [(feed_server.base + "/a.xml", "N" * 200)]
    assert main(["--config", str(config), "run", "--once"]) == 0


def test_match_on_an_html_page_says_it_is_not_a_feed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A well-formed HTML page is "not a feed" (exit 1), not "0 matches in 0 entries"."""
    page = tmp_path / "page.html"
    page.write_text("<html><head><title>x</title></head><body><p>hi</p></body></html>",
                    encoding="utf-8")
    config = write_config(tmp_path, [{"url": "https://a.example/f.xml"}], [])
    assert main(["--config", str(config), "match", str(page)]) == 1
    assert "not a feed: an HTML page" in capsys.readouterr().err


def test_match_prints_bidi_overrides_in_titles_as_escapes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`match` shows a right-to-left override in a headline as `\\u202e`, so a title cannot
    reorder what the terminal shows."""
    feed = tmp_path / "f.xml"
    feed.write_text(f"<rss version='2.0'><channel><title>t</title><item><title>{STORY} "
                    "\u202egnp.exe</title></item></channel></rss>", encoding="utf-8")
    config = write_config(tmp_path, [{"url": "https://a.example/f.xml"}], [])
    assert main(["--config", str(config), "match", str(feed)]) == 0
    out = capsys.readouterr().out
    assert "\u202e" not in out
    assert "\\u202egnp.exe" in out
