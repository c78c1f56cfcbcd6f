"""Hostile text and hostile templates in messages (issue 12, findings 3 and 9), through the real
outbox, Apprise and local endpoints: no feed or server text arrives as a live link, tag or
script in any kind of message, and no user's template stalls the daemon or the config check."""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from email.message import Message
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from apprise.conversion import markdown_to_html

from monitor.config import parse_config
from monitor.delivery.message import AlertFields, Story, Style, Template, render_story
from monitor.delivery.schedule import Policy, next_digest
from monitor.errors import ConfigError
from monitor.pipeline import Runtime, open_config
from monitor.surfaces.cli import main
from tests.support.project import run_cycle, write_config
from tests.support.servers import FeedServer, Mailbox, Sink, TelegramApi

# A markdown link disguised as a prompt, a script, an image with a handler, javascript: links.
HOSTILE = ('[Click to verify](https://phish.example/login) <script>alert(1)</script> '
           '<img src=x onerror=alert(1)> [me](javascript:alert(1)) '
           '<a href="javascript:alert(2)">here</a>')
OWN = "https://news.example/"  # the stories' own links: the only ones a message may carry
WATCHLISTS = [{"name": "pact", "entities": {"pact": ["defence pact"]},
               "rules": [{"any": ["pact"]}]}]
TELEGRAM = "tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-100123"
RUNAWAY = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


def _literal(text: str) -> str:
    """`text` as an RSS element holds it so that the feed's reader sees these very characters
    (the parser reads titles as HTML: the markup must be escaped twice)."""
    return html.escape(html.escape(text))


def _rss(channel: str, items: Sequence[tuple[str, str, str]]) -> bytes:
    """An RSS feed named `channel` with (guid, title, link) items published now."""
    stamp = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
    body = "".join(f"<item><guid>{guid}</guid><title>{_literal(title)}</title>"
                   f"<link>{link}</link><pubDate>{stamp}</pubDate>"
                   f"<description>{_literal(title)}. {_literal(HOSTILE)}</description></item>"
                   for guid, title, link in items)
    return (f'<rss version="2.0"><channel><title>{_literal(channel)}</title>{body}'
            f"</channel></rss>").encode()


def _mail(port: int, to: str) -> str:
    return f"mailto://127.0.0.1:{port}?from=monitor@example.org&to={to}&mode=insecure"


def _targets(sink: Sink, port: int, **pace: Any) -> list[dict[str, Any]]:
    """A chat target (markdown, json://), an html email and a markdown email, alike in pace."""
    return [{"url": sink.url, **pace}, {"url": _mail(port, "html@example.org"), **pace},
            {"url": _mail(port, "md@example.org"), "format": "markdown", **pace}]


class _Tags(HTMLParser):
    """Every start tag of an HTML page, with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _live(page: str) -> list[str]:
    """What in an HTML page a mail client would run, load or follow: scripts, images, frames,
    event handlers, and links other than the stories' own."""
    parser = _Tags()
    parser.feed(page)
    parser.close()
    found: list[str] = []
    for tag, attrs in parser.tags:
        if tag in ("script", "img", "iframe", "object", "embed", "svg", "form", "style"):
            found.append(tag)
        found += [f"{tag} {name}" for name in attrs if name.startswith("on")]
        target = attrs.get("href") or attrs.get("src") or ""
        if target and not target.startswith(OWN):
            found.append(f"{tag} -> {target}")
    return found


def _html(message: Message) -> str:
    parts = [p for p in message.walk() if p.get_content_type() == "text/html"]
    payload = parts[0].get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def _assert_inert(sink: Sink, mailbox: Mailbox, kind: Callable[[str], bool]) -> None:
    """Each message of a kind (by title) reached the chat and both emails; none has a live
    link or tag, and the hostile text is there, as text."""
    def plain(title: str) -> str:  # markdown targets get their titles escaped too
        return re.sub(r"\\(.)", r"\1", title)

    chats = [m["message"] for m in sink.received if kind(plain(m["title"]))]
    mails = {str(m["To"]): _html(m) for m in mailbox.messages
             if kind(plain(str(m["Subject"])))}
    assert chats and sorted(mails) == ["html@example.org", "md@example.org"], (
        sink.titles(), [m["Subject"] for m in mailbox.messages])
    for body in chats:
        assert "](https://phish" not in body and "](javascript" not in body, body
        page = markdown_to_html(body)  # what Apprise makes of markdown for email and Matrix
        assert _live(page) == [], body
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for address, page in mails.items():
        assert _live(page) == [], (address, page)
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, (address, page)


def test_hostile_alert_is_inert_in_chat_and_in_email(
        tmp_path: Path, feed_server: FeedServer, sink: Sink,
        smtp: tuple[Mailbox, int]) -> None:
    """A headline, feed name and summary carrying a disguised markdown link, a script, an image
    with a handler and javascript: links alert as plain text in markdown chat, html email and
    markdown email; the story's own link is the one link, shown as itself."""
    mailbox, port = smtp
    url = feed_server.serve("/f.xml", _rss(f"Wire {HOSTILE}", [
        ("a", f"Defence pact signed {HOSTILE}", f"{OWN}a")]))
    config = write_config(tmp_path, [{"url": url}], _targets(sink, port),
                          watchlists=WATCHLISTS)
    assert main(["--config", str(config), "run", "--once"]) == 0
    _assert_inert(sink, mailbox, lambda title: "Defence pact" in title)
    [chat] = sink.received
    assert f"<{OWN}a>" in chat["message"]
    assert f'<a href="{OWN}a">{OWN}a</a>' in _html(mailbox.messages[0])


def test_hostile_digest_is_inert_in_chat_and_in_email(
        tmp_path: Path, feed_server: FeedServer, sink: Sink,
        smtp: tuple[Mailbox, int]) -> None:
    """A digest listing a hostile headline from a hostile outlet carries them as text."""
    mailbox, port = smtp
    url = feed_server.serve("/f.xml", _rss(f"Wire {HOSTILE}", [
        ("a", f"Defence pact signed {HOSTILE}", f"{OWN}a")]))
    config = write_config(tmp_path, [{"url": url}], _targets(sink, port, mode="digest"),
                          watchlists=WATCHLISTS)
    now = datetime.now(UTC)
    assert run_cycle(config, now, next_digest(Policy(), now)) == [0, 3]
    _assert_inert(sink, mailbox, lambda title: title.startswith("1 story (digest)"))


def test_hostile_updated_note_is_inert_in_chat_and_in_email(
        tmp_path: Path, feed_server: FeedServer, sink: Sink,
        smtp: tuple[Mailbox, int]) -> None:
    """When a feed re-titles an alerted entry to a hostile headline, the "Updated:" note quotes
    both titles and the feed's name as text, in each target's own format."""
    mailbox, port = smtp
    url = feed_server.serve("/f.xml", _rss(f"Wire {HOSTILE}", [
        ("a", "Defence pact signed", f"{OWN}a")]))
    config = write_config(tmp_path, [{"url": url}], _targets(sink, port, updates=True),
                          watchlists=WATCHLISTS)
    now = datetime.now(UTC) + timedelta(seconds=30)
    assert run_cycle(config, now) == [3]
    feed_server.serve("/f.xml", _rss(f"Wire {HOSTILE}", [
        ("a", f"Defence pact signed {HOSTILE}", f"{OWN}a")]))
    assert run_cycle(config, now) == [3]
    _assert_inert(sink, mailbox, lambda title: title.startswith("Updated:"))
    note = next(m for m in mailbox.messages if str(m["Subject"]).startswith("Updated:")
                and m["To"] == "html@example.org")
    assert f'<a href="{OWN}a">' in _html(note)


def test_hostile_sources_note_is_inert_in_chat_and_in_email(
        tmp_path: Path, feed_server: FeedServer, sink: Sink,
        smtp: tuple[Mailbox, int]) -> None:
    """The "Also reported:" note names hostile outlets as text, and shows a story link that
    carries markdown link syntax as one link to itself."""
    mailbox, port = smtp
    pace = {"sources_after": "30m"}
    link = f"{OWN}a?ref=[Click](https://phish.example/login)"
    feeds = [{"url": feed_server.serve("/f.xml", _rss("Desk", [
        ("a", "Defence pact signed", html.escape(link))]))}]
    config = write_config(tmp_path, feeds, _targets(sink, port, **pace), watchlists=WATCHLISTS)
    now = datetime.now(UTC) + timedelta(seconds=30)
    assert run_cycle(config, now) == [3]
    for n in range(2):
        body = _rss(f"Outlet {n} {HOSTILE}", [(f"o{n}", "Defence pact signed",
                                               html.escape(f"{link}&utm_source=o{n}"))])
        feeds.append({"url": feed_server.serve(f"/o{n}.xml", body), "name": f"O{n} {HOSTILE}"})
    config = write_config(tmp_path, feeds, _targets(sink, port, **pace), watchlists=WATCHLISTS)
    assert run_cycle(config, now + timedelta(minutes=10), now + timedelta(minutes=31)) == [0, 3]
    _assert_inert(sink, mailbox, lambda title: title.startswith("Also reported:"))


def test_hostile_health_notice_is_inert_in_chat_and_in_email(
        tmp_path: Path, feed_server: FeedServer, sink: Sink,
        smtp: tuple[Mailbox, int]) -> None:
    """A health notice quoting a hostile feed name and a server's hostile reason phrase
    carries both as text, in each target's own format."""
    mailbox, port = smtp

    def hostile_error(request: BaseHTTPRequestHandler) -> None:
        request.send_response(500, HOSTILE)
        request.send_header("Content-Length", "0")
        request.end_headers()

    url = feed_server.serve("/f.xml", b"", handler=hostile_error)
    config = write_config(tmp_path, [{"url": url, "name": f"Wire {HOSTILE}"}],
                          _targets(sink, port, tags=["ops"]), watchlists=WATCHLISTS,
                          health={"tag": "ops", "failing_after": "0s"})
    for _ in range(2):
        assert main(["--config", str(config), "run", "--once"]) == 0
    _assert_inert(sink, mailbox, lambda title: title.startswith("monitor: feed"))
    [notice] = sink.received
    assert "HTTP 500" in notice["message"]


def test_hostile_headline_is_no_link_in_telegram(
        tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through Apprise's real Telegram plugin (which has no title field: the title goes into
    the body), a headline and its "Updated:" note carry the disguised link as text."""
    from apprise.plugins import telegram

    api = TelegramApi()
    monkeypatch.setattr(telegram.requests, "post", api.post)
    url = feed_server.serve("/f.xml", _rss("Wire", [("a", "Defence pact signed", f"{OWN}a")]))
    config = write_config(tmp_path, [{"url": url}], [{"url": TELEGRAM, "updates": True}],
                          watchlists=WATCHLISTS)
    now = datetime.now(UTC) + timedelta(seconds=30)
    assert run_cycle(config, now) == [1]
    feed_server.serve("/f.xml", _rss("Wire", [("a", f"Defence pact {HOSTILE}", f"{OWN}a")]))
    assert run_cycle(config, now) == [1]
    assert len(api.texts) == 2
    for text in api.texts:
        assert _telegram_links(text) == [], text
    assert "Click to verify" in api.texts[1]


def _telegram_links(text: str) -> list[str]:
    """The targets of the links in a Telegram Markdown (v1 or v2) text: `[label](target)`
    whose opening bracket is not escaped."""
    return re.findall(r"(?<!\\)\[(?:[^\]\\]|\\.)*\]\(([^)]*)\)", text)


@pytest.mark.parametrize("fmt", ["markdown", "html"])
def test_templates_get_feed_text_escaped_and_only_http_links(fmt: str) -> None:
    """In a user's template the fields are literal text in the target's format, and `link` is
    empty when the story's link is not http(s)."""
    fields = AlertFields(title=HOSTILE, link="javascript:alert(3)", feed=HOSTILE,
                         published=None, language="en", watchlists=("w",), priority="normal",
                         terms="", snippet=HOSTILE)
    body = {"markdown": "[{{ title }}]({{ link }}) {{ feed }} {{ snippet }}",
            "html": '<a href="{{ link }}">{{ title }}</a> {{ feed }} {{ snippet }}'}[fmt]
    _, text = render_story(Story(fields, (HOSTILE,)),
                           Style(format=fmt, template=Template(body=body)))  # type: ignore[arg-type]
    assert "javascript:alert(3)" not in text
    if fmt == "markdown":
        assert "](https://phish" not in text
    page = markdown_to_html(text) if fmt == "markdown" else text
    assert [tag for tag in _live(page) if tag != "a -> "] == [], text


def _within(seconds: float, work: Callable[[], Any]) -> Any:
    """`work()`'s result, failing the test if it has not returned after `seconds` (a generous
    bound: the daemon's own deadline is a few seconds)."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(("ok", work()))
        except BaseException as error:  # handed to the test's thread
            outcome.append(("error", error))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still running after {seconds:g}s"
    status, value = outcome[0]
    if status == "error":
        raise value
    return value


def _config_with(template: str) -> str:
    return ("notify:\n  - url: json://127.0.0.1:9/x\n    template:\n"
            f"      body: {template!r}\n")


@pytest.mark.parametrize(("template", "reason"), [
    ("{% for a in title %}{% for b in title %}{% for c in title %}{% for d in title %}"
     "{% endfor %}{% endfor %}{% endfor %}{% endfor %}{{ title }}", "took longer than"),
    ("{% for a in title %}{% for b in title %}{% for c in title %}{% for d in title %}"
     "{{ d }}{% endfor %}{% endfor %}{% endfor %}{% endfor %}", "wrote more than 100,000"),
    (RUNAWAY, "took longer than"),
    ("{% set copies = title * 100000000 %}{{ copies|length }}", "needed more than"),
])
def test_runaway_templates_are_refused_by_the_config_check(template: str, reason: str,
                                                           tmp_path: Path) -> None:
    """Templates that run long, write or allocate without bound on a real alert (four nested
    loops over the title, nested ranges, a repeated title) are config errors naming the key
    and the reason, found quickly (the check renders a 1,000-character title, 50 sources)."""
    def check() -> None:
        parse_config(_config_with(template), tmp_path / "c.yaml")

    with pytest.raises(ConfigError) as error:
        _within(60, check)
    message = str(error.value)
    assert ":4: notify[0].template.body: template: " in message
    assert reason in message and "1,000-character title, 50 sources" in message


def test_ordinary_templates_pass_the_check(tmp_path: Path) -> None:
    """A template that loops over the sources and repeats fields passes the worst-case check."""
    template = ("{{ feed }}: {{ title|upper }} ({{ published }})\n{% for s in sources %}- {{ s }}"
                "\n{% endfor %}{{ snippet }} {{ summary|truncate(200) }} {{ link }}")
    parse_config(_config_with(template), tmp_path / "c.yaml")


def _overrunning_setup(tmp_path: Path, feed_server: FeedServer, sink: Sink) -> Path:
    """A target whose template passes the check but runs away on a story naming Kursk; two
    stories, one of them naming Kursk."""
    url = feed_server.serve("/f.xml", _rss("Wire", [
        ("k", "Defence pact troops reach Kursk", f"{OWN}k"),
        ("m", "Defence pact text published", f"{OWN}m")]))
    template = f'{{% if "Kursk" in title %}}{RUNAWAY}{{% endif %}}T: {{{{ title }}}}'
    return write_config(tmp_path, [{"url": url}], [{"url": sink.url, "name": "desk chat",
                                                    "template": {"body": template}}],
                        watchlists=WATCHLISTS)


def test_template_overrunning_on_a_real_story_falls_back_to_the_default_layout(
        tmp_path: Path, feed_server: FeedServer, sink: Sink,
        caplog: pytest.LogCaptureFixture) -> None:
    """At send time a template that runs away on one story is stopped; that story goes out in
    the default layout, the other in the template's, and one error line names the target and
    the reason."""
    config = _overrunning_setup(tmp_path, feed_server, sink)
    now = datetime.now(UTC) + timedelta(seconds=30)
    with caplog.at_level(logging.ERROR, logger="monitor"):
        assert _within(60, lambda: run_cycle(config, now)) == [2]
    bodies = {m["title"]: m["message"] for m in sink.received}
    assert bodies["[pact] Defence pact text published"] == "T: Defence pact text published"
    fallback = bodies["[pact] Defence pact troops reach Kursk"]
    assert "**Defence pact troops reach Kursk**" in fallback and "Matched pact" in fallback
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "desk chat" in record.getMessage() and "took longer than 2s" in record.getMessage()
    assert "\n" not in record.getMessage()


def test_event_loop_keeps_running_while_a_template_renders(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """While a runaway template renders (until its deadline), the event loop goes on serving
    other coroutines: rendering happens off it."""
    config = _overrunning_setup(tmp_path, feed_server, sink)

    async def go() -> tuple[int, int]:
        rt = Runtime.from_config(open_config(config))
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        try:
            await rt.poll_all()
            ticker = asyncio.create_task(tick())
            report = await rt.deliver(now=datetime.now(UTC) + timedelta(seconds=30))
            ticker.cancel()
            return report.sent, ticks
        finally:
            await rt.close()

    sent, ticks = _within(60, lambda: asyncio.run(go()))
    assert sent == 2
    assert ticks >= 20, ticks  # a 2 s deadline at 10 ms a tick leaves room for ~200


def test_hostile_headline_is_inert_in_discord(
        tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through Apprise's real Discord plugin (its HTTP API stubbed), which writes the title
    into the message as markdown: the headline's disguised link, spoiler and @everyone arrive
    as text and ping no one."""
    from types import SimpleNamespace

    from apprise.plugins import discord

    sent: list[str] = []

    def post(url: str, data: Any = None, **_: Any) -> Any:
        sent.append(json.loads(data)["content"])
        return SimpleNamespace(status_code=204, content=b"", headers={})

    monkeypatch.setattr(discord.requests, "post", post)
    headline = "Defence pact signed @everyone [Official](https://phish.example/x) ||spoiler||"
    url = feed_server.serve("/f.xml", _rss("Wire", [("a", headline, f"{OWN}a")]))
    config = write_config(tmp_path, [{"url": url}], [{"url": "discord://1234/abcdefgh"}],
                          watchlists=WATCHLISTS)
    assert main(["--config", str(config), "run", "--once"]) == 0
    assert sent, "nothing reached Discord"
    text = "\n".join(sent)
    assert "@everyone" not in text and "@\u200beveryone" in text
    assert "[Official](https" not in text and "\\[Official\\]\\(https" in text
    assert "||spoiler||" not in text
