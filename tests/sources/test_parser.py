"""Parsing: golden feeds to whole entry lists, and hostile documents to clear errors, quickly."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.sources.parser import parse_feed, safe_link, to_text
from tests.support.payloads import BILLION_LAUGHS, DEEP, ITEM, QUADRATIC, XXE
from tests.support.project import FEEDS, SHARED, render_feed

FIXED_NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
GOLDEN = ["english.xml", "wire.xml", "russian.xml", "korean.atom", "indonesian.xml",
          "jsonfeed.json"]


def _entries_as_data(name: str) -> list[dict[str, object]]:
    parsed = parse_feed(render_feed(name, FIXED_NOW), f"https://feeds.example/{name}", name)
    assert parsed.error is None
    return [{**asdict(e), "published": e.published.isoformat() if e.published else None}
            for e in parsed.entries]


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_feed_gives_the_expected_entries(name: str) -> None:
    """A golden feed parses to exactly the entries in its .expected.json (MONITOR_UPDATE_GOLDEN=1
    rewrites them)."""
    expected_path = FEEDS / f"{name}.expected.json"
    actual = _entries_as_data(name)
    if os.environ.get("MONITOR_UPDATE_GOLDEN"):
        expected_path.write_text(json.dumps(actual, ensure_ascii=False, indent=1) + "\n")
    assert actual == json.loads(expected_path.read_text())


JAVASCRIPT = ITEM % (b"click", b"javascript:alert(1)", b"x")
NULS = ITEM % (b"nul\x00title", b"https://a.example/n", b"a\x00b")
BAD_UTF8 = ITEM % (b"bad \xff\xfe utf8 \xc3", b"https://a.example/u", b"\xed\xa0\x80")


@pytest.mark.parametrize(("body", "error"), [
    (b"", "empty body"),
    (b"   \n\t ", "empty body"),
    (b"<!doctype html><html><head><title>Hi</title></head><body>page</body></html>",
     "not a feed: an HTML page"),
    (b"\x89PNG\r\n\x1a\n\x00\x00garbage", "not a feed"),
    (b'{"hello": "world"}', "JSON that is not a JSON Feed"),
    (b'{"version": "https://jsonfeed.org/version/1.1", "items": [' * 3000, "invalid JSON Feed"),
    (b"[" * 100_000, "invalid JSON Feed"),
])
def test_non_feeds_get_a_clear_reason(body: bytes, error: str) -> None:
    """Empty, HTML, binary and broken-JSON documents are errors that say what they are."""
    parsed = parse_feed(body, "https://a.example/", "a")
    assert parsed.entries == []
    assert parsed.error is not None
    assert parsed.error.startswith(error), parsed.error


def test_deep_nesting_is_refused_before_parsing() -> None:
    """A 200,000-deep nesting is refused at once with a clear reason."""
    parsed = parse_feed(DEEP, "https://a.example/", "a")
    assert parsed.error == "not a feed: elements nested more than 256 deep"


@pytest.mark.parametrize("body", [BILLION_LAUGHS, QUADRATIC, XXE])
def test_entity_attacks_parse_without_expansion(body: bytes) -> None:
    """Entity bombs and external entities neither expand nor leak nor crash."""
    parsed = parse_feed(body, "https://a.example/", "a")
    for entry in parsed.entries:
        assert len(entry.title) < 1000
        assert len(entry.summary) <= 20_000
        assert "root:" not in entry.title


def test_javascript_link_is_dropped() -> None:
    """An entry whose link is `javascript:` keeps its text but has no link."""
    parsed = parse_feed(JAVASCRIPT, "https://a.example/", "a")
    assert [e.link for e in parsed.entries] == [None]
    assert parsed.entries[0].title == "click"


@pytest.mark.parametrize("body", [NULS, BAD_UTF8])
def test_nul_bytes_and_bad_utf8_do_not_break_parsing(body: bytes) -> None:
    """NUL bytes and invalid UTF-8 give entries (or a clear error), never an exception."""
    parsed = parse_feed(body, "https://a.example/", "a")
    assert parsed.error or parsed.entries
    for entry in parsed.entries:
        assert "\x00" not in entry.title + entry.summary


def test_html_becomes_plain_text() -> None:
    """Tags, scripts and entities become plain, tidy text."""
    assert to_text("<p>Hello&nbsp;<b>world</b></p><script>evil()</script><p>again</p>") == \
        "Hello world\nagain"


@pytest.mark.parametrize(("link", "safe"), [
    ("https://a.example/x", "https://a.example/x"), (" http://a.example ", "http://a.example"),
    ("javascript:alert(1)", None), ("data:text/html,x", None), ("ftp://a.example", None),
    ("/relative", None), (None, None), ("https://", None),
])
def test_safe_link(link: str | None, safe: str | None) -> None:
    """Only absolute http(s) links survive."""
    assert safe_link(link) == safe


RELATIVE = b"""<rss version="2.0"><channel><title>r</title>
<item><title>a</title><link>/news/1</link></item>
<item><title>b</title><link>//cdn.example/2</link></item>
<item><title>c</title><link>javascript:alert(1)</link></item>
</channel></rss>"""


def test_relative_links_resolve_against_the_feed_url() -> None:
    """Relative and scheme-relative entry links become absolute; other schemes are dropped."""
    parsed = parse_feed(RELATIVE, "https://a.example/feeds/rss.xml", "a")
    assert [e.link for e in parsed.entries] == [
        "https://a.example/news/1", "https://cdn.example/2", None]


PEERS = SHARED / "peer-feeds" / "feedparser-tests"


def _tags(markup: str) -> set[str]:
    """The element names in an HTML fragment."""
    from html.parser import HTMLParser

    found: set[str] = set()

    class Collector(HTMLParser):
        def handle_starttag(self, tag: str, attrs: object) -> None:
            found.add(tag)

    Collector().feed(markup)
    return found


@pytest.mark.skipif(not PEERS.is_dir(), reason="no peer feeds: ../shared is not beside this clone "
                    "and MONITOR_TEST_SHARED is not set")
def test_every_peer_feed_parses_matches_and_renders_without_error() -> None:
    """All 2,106 of feedparser's own test feeds parse into XML-safe text, match, and render as
    alerts in every format, cut into whole numbered parts within Telegram's limit; html carries
    only the layout's own tags."""
    from monitor.config import load_config
    from monitor.delivery.message import AlertFields, Story, Style, fit, render_story
    from monitor.matching.matcher import compile_watchlists, match_entry
    from tests.support.payloads import FORBIDDEN, entry_strings
    from tests.support.project import ROOT

    compiled = compile_watchlists(load_config(ROOT / "config.yaml"))
    files = [p for p in PEERS.rglob("*") if p.is_file() and p.name != "LICENSE"]
    assert len(files) > 2000
    for path in files:
        parsed = parse_feed(path.read_bytes(), "http://127.0.0.1/peer", path.name)
        for entry in parsed.entries:
            match_entry(entry, compiled)
            facts = AlertFields(
                title=entry.title or "(untitled)", link=entry.link, feed=entry.feed_name,
                published=entry.published.isoformat() if entry.published else None,
                language=entry.language, watchlists=("w",), priority="normal", terms="",
                snippet=entry.summary[:300], highlights=((0, min(5, len(entry.summary))),))
            assert not any(FORBIDDEN.search(text) for text in entry_strings(entry)), path
            for fmt in ("markdown", "html", "text"):
                title, body = render_story(Story(facts, ("a <b>",)),
                                           Style(format=fmt))  # type: ignore[arg-type]
                parts = fit(title, body, 0, 4096)
                assert all(len(t) + 2 + len(b) <= 4096 for t, b in parts), path
                assert [t for t, _ in parts] == ([title] if len(parts) == 1 else [
                    f"{title} ({n}/{len(parts)})" for n in range(1, len(parts) + 1)])
                assert [x for _, b in parts for x in b.split("\n") if x] == \
                    [x for x in body.split("\n") if x], path
                if fmt == "html":
                    assert _tags(body) <= {"b", "br", "i", "a"}, path


def test_jsonfeed_golden_file_is_read_by_our_own_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """The JSON Feed golden file gives exactly its expected entries with feedparser out of reach:
    JSON Feed, which feedparser cannot read, is parsed by our own code."""
    import feedparser

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("feedparser was handed a JSON Feed")

    monkeypatch.setattr(feedparser, "parse", refuse)
    expected = json.loads(Path(FEEDS, "jsonfeed.json.expected.json").read_text())
    assert len(expected) == 2
    assert _entries_as_data("jsonfeed.json") == expected
