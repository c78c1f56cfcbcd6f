"""Message text: alerts and digests per format, users' templates, and channel-sized parts."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apprise.conversion import markdown_to_html
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.config import parse_config
from monitor.delivery.message import (
    AlertFields,
    Story,
    Style,
    Template,
    escape,
    fit,
    render_digest,
    render_story,
    safe_url,
)
from monitor.errors import ConfigError

FIELDS = AlertFields(
    title="Rusia & Korea Utara <teken> perjanjian", link="https://id.example/a?x=1&y=2",
    feed="Harian", published="2026-11-27T01:30:00+00:00", language="id",
    watchlists=("russia-dprk",), priority="high", terms="russia-dprk — russia: Rusia",
    snippet="Rusia dan Korea Utara <b>menandatangani</b>", highlights=((0, 5),),
    summary="…")
SEOUL = ZoneInfo("Asia/Seoul")


@pytest.mark.parametrize(("fmt", "expected", "absent"), [
    ("markdown", [r"**Rusia & Korea Utara \<teken\> perjanjian** \[id\]", "2026-11-27 10:30 KST",
                  r"> **Rusia** dan Korea Utara \<b\>menandatangani\</b\>",
                  "<https://id.example/a?x=1&y=2>", "Also reported by: A, B"],
     ["<teken>", "<b>"]),
    ("html", ['<b><a href="https://id.example/a?x=1&amp;y=2">Rusia &amp; Korea Utara &lt;teken&gt; '
              "perjanjian</a></b> [id]",
              "<b>Rusia</b> dan Korea Utara &lt;b&gt;menandatangani",
              '<a href="https://id.example/a?x=1&amp;y=2">'], ["<teken>"]),
    ("text", ["Rusia & Korea Utara <teken> perjanjian [id]", "“Rusia dan Korea"], ["**"]),
])
def test_alert_renders_in_each_format(fmt: str, expected: list[str], absent: list[str]) -> None:
    """Each format shows title, language code, local time, marked terms, link and sources;
    html and markdown escape every piece of feed text; in html the headline is the link."""
    title, body = render_story(Story(FIELDS, ("A", "B"), SEOUL),
                               Style(format=fmt, zone=SEOUL))  # type: ignore[arg-type]
    assert title == "[russia-dprk] Rusia & Korea Utara <teken> perjanjian"
    for fragment in expected:
        assert fragment in body, body
    for fragment in absent:
        assert fragment not in body


def test_template_gets_the_story_fields() -> None:
    """A target's template sees title, feed, language, time, sources and link."""
    template = Template(title="{{ feed }}: {{ title }}",
                        body="{{ language }} {{ published }} {{ also }} {{ link }}")
    title, body = render_story(Story(FIELDS, ("A", "B"), SEOUL),
                               Style(template=template, zone=SEOUL))
    assert title == "Harian: Rusia & Korea Utara <teken> perjanjian"
    assert body == "id 2026-11-27 10:30 KST A, B https://id.example/a?x=1&y=2"


def test_html_template_escapes_feed_text() -> None:
    """In an html template a feed's markup is text, not markup."""
    _, body = render_story(Story(FIELDS), Style(format="html", template=Template(
        body="<p>{{ title }}</p>")))
    assert body == "<p>Rusia &amp; Korea Utara &lt;teken&gt; perjanjian</p>"


def _config(template: str) -> str:
    return ("notify:\n  - url: json://127.0.0.1:9/x\n    template:\n"
            f"      body: {template!r}\n")


@pytest.mark.parametrize(("template", "problem"), [
    ("{{ title", "TemplateSyntaxError"),
    ("{{ nonsense }}", "UndefinedError"),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "template"),
    ("{% for x in range(10**9) %}{% endfor %}", "template"),
])
def test_bad_and_hostile_templates_are_refused_at_load(template: str, problem: str,
                                                        tmp_path: Path) -> None:
    """Syntax errors, unknown fields and sandbox escapes are config errors with a line."""
    with pytest.raises(ConfigError) as error:
        parse_config(_config(template), tmp_path / "c.yaml")
    assert problem in str(error.value)
    assert ":4: notify[0].template.body: template" in str(error.value)


def test_digest_groups_stories_by_watchlist() -> None:
    """A digest lists each story once under its watchlist, with its other sources."""
    other = AlertFields(title="Lavrov in Pyongyang", link=None, feed="Wire", published=None,
                        language="en", watchlists=("diplomacy",), priority="normal", terms="",
                        snippet="")
    title, body = render_digest([Story(FIELDS, ("A",)), Story(other)], Style(), "quiet hours")
    assert title == "2 stories (quiet hours): russia-dprk, diplomacy"
    lines = body.splitlines()
    assert lines[0] == "**russia-dprk (1)**"
    assert lines[1].startswith(r"• Rusia & Korea Utara \<teken\> perjanjian \[id\] — Harian")
    assert lines[1].endswith("(+1: A)")
    assert "**diplomacy (1)**" in lines and r"• Lavrov in Pyongyang \[en\] — Wire, no date" in lines


@pytest.mark.parametrize(("title_max", "body_max"), [(0, 4096), (250, 600), (100, 300)])
def test_long_messages_are_cut_between_lines_into_numbered_parts(title_max: int,
                                                                 body_max: int) -> None:
    """Every part fits the channel (with the title when the channel has none), lines stay
    whole, and nothing is lost."""
    lines = [f"• story {n}: " + "x" * 70 for n in range(200)]
    parts = fit("A digest", "\n".join(lines), title_max, body_max)
    assert len(parts) > 1
    for number, (title, body) in enumerate(parts, 1):
        assert title == f"A digest ({number}/{len(parts)})"
        size = len(body) + (0 if title_max else len(title) + 2)
        assert size <= body_max
    assert [line for _, body in parts for line in body.splitlines()] == lines


def test_a_line_longer_than_the_channel_is_trimmed() -> None:
    """One huge line is cut with an ellipsis instead of being refused by the channel."""
    [(_, body)] = fit("t", "y" * 10_000, 250, 500)
    assert len(body) <= 500 and body.endswith("…")


def test_digest_of_one_story_says_story() -> None:
    """A digest-mode target's digest of a single story reads "1 story"."""
    title, _ = render_digest([Story(FIELDS)], Style(), "digest")
    assert title == "1 story (digest): russia-dprk"


def test_digest_says_how_many_more_wait_for_the_next_one() -> None:
    """A digest capped at 50 stories lists them all and says how many follow next time."""
    many = [Story(AlertFields(title=f"Story {n}", link=None, feed="Wire", published=None,
                              language=None, watchlists=("w",), priority="normal", terms="",
                              snippet=""), tuple(f"Outlet {k}" for k in range(9)))
            for n in range(50)]
    title, body = render_digest(many, Style(), "rate limit", later=950)
    assert title == "50 stories (rate limit): w"
    assert body.count("• Story") == 50
    assert body.endswith("…and 950 more in the next digest")
    assert "(+9: Outlet 0, Outlet 1, Outlet 2, Outlet 3, Outlet 4 and 4 more)" in body
    assert len(body) < 6000


# Pieces of hostile feed text: markdown and HTML syntax, URLs, block markers, indents.
PIECES = [*"\\`*_{}[]()#+-.!|<>~&=:;\"' \n\tab1/", "https://", "javascript:", "<script>",
          "<img src=x onerror=a>", "&lt;", "&#60;", "    ", "1.", "***", "---", "===", "](",
          "]: ", "<https://x.example>", "|---|"]


class _Tags(HTMLParser):
    """The start tags of an HTML page, with their attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=30).map("".join))
def test_markdown_escaping_leaves_any_text_literal(text: str) -> None:
    """Whatever a feed writes, escaped for markdown it renders (as Apprise renders markdown for
    email and Matrix) as one plain paragraph: no link, image, code, heading, list or HTML."""
    parser = _Tags()
    parser.feed(markdown_to_html(escape(text, "markdown")))
    assert all(tag == "p" and not attrs for tag, attrs in parser.tags), text


def test_markdown_escaping_keeps_ordinary_text_readable() -> None:
    """Hyphens, dots and colons inside a line stay as they are; only what could open markup is
    escaped, and a block marker only where it would open a line."""
    assert escape("russia-dprk: Lavrov.txt 2026-11-27", "markdown") == \
        "russia-dprk: Lavrov.txt 2026-11-27"
    assert escape("1986. [a](b) - c", "markdown") == r"1986\. \[a\]\(b\) - c"
    assert escape("- x\n# y", "markdown") == r"\- x # y"


@pytest.mark.parametrize(("url", "shown"), [
    ("https://news.example/a?x=1&y=2", "https://news.example/a?x=1&y=2"),
    (" HTTP://News.example/a ", "http://News.example/a"),
    ("https://news.example/a?r=[x](https://phish.example/)",
     "https://news.example/a?r=%5Bx%5D%28https://phish.example/%29"),
    ("https://news.example/a b<c>\"d", "https://news.example/a%20b%3Cc%3E%22d"),
    ("https://news.example/\u202egnp.exe", "https://news.example/%E2%80%AEgnp.exe"),
    ("https://[::1]:8080/a", "https://[::1]:8080/a"),
    ("https://пример.рф/новости", "https://пример.рф/новости"),
    ("javascript:alert(1)", None), ("data:text/html,<script>", None), ("ftp://a.example/", None),
    ("https://a.example\\@phish.example/", None), ("https://a.exa\tmple/", None),
    ("https:///path", None), ("", None),
])
def test_only_http_links_are_shown_and_as_themselves(url: str, shown: str | None) -> None:
    """A link is shown only when http(s), with whatever could end, disguise or break out of
    it (spaces, brackets, quotes, bidi controls) percent-encoded."""
    assert safe_url(url) == shown
