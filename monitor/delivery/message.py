"""Messages: what an alert, a digest or a note says, in each target's format.

An alert's facts are frozen as `AlertFields` when its entry is recorded (they travel in the outbox
as JSON) and rendered when it is sent, so the sources that joined the story since, the target's
time zone, format and template all apply; so does the note naming the outlets that reported a
story after its alert. Notes about a re-titled entry and about a feed's health are stored as
plain text and written in the target's format when sent. `fit` cuts a message into parts that
fit the channel's limits, between lines.

Nothing a feed or a server wrote is rendered live. Formats: markdown (chat; Apprise turns it into
HTML for email and Matrix, and into Telegram's dialect), html (email), text. Every string from
outside is `escape`d for the format: in html its markup is text; in markdown the characters that
make links, images, emphasis, code and raw HTML (Apprise's markdown passes HTML through) are
backslash-escaped, as are the markers that open a heading, a list or a quote at a line's start,
and white space (line breaks too) becomes single spaces. A link is shown only when it is an
http(s) URL, as the URL itself (`safe_url`), never behind other text.

Users' templates run in Jinja2's sandbox, in a worker process bounded in time, memory and output
(`monitor.templates`); a template that fails or overruns on a story gives the default layout for it,
with a logged error. `check_template` renders a template on the longest alert a feed can bring.
"""

from __future__ import annotations

import html
import json
import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import quote, urlsplit

from markupsafe import Markup

from monitor.delivery.templates import RENDERER, Format
from monitor.errors import TemplateError
from monitor.models import Entry, Match, Priority

log = logging.getLogger("monitor")
FORMATS: tuple[Format, ...] = ("markdown", "html", "text")
ELLIPSIS = "…"


@dataclass(frozen=True)
class AlertFields:
    """The facts of one alert, as recorded with its entry."""

    title: str
    link: str | None
    feed: str
    published: str | None  # ISO 8601, UTC
    language: str | None
    watchlists: tuple[str, ...]
    priority: Priority
    terms: str
    snippet: str
    highlights: tuple[tuple[int, int], ...] = ()
    summary: str = ""

    def to_json(self) -> str:
        """The fields as stored in the outbox."""
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> AlertFields:
        """Fields read back from the outbox."""
        data = json.loads(text)
        data["watchlists"] = tuple(data.get("watchlists", ()))
        data["highlights"] = tuple(tuple(pair) for pair in data.get("highlights", ()))
        data["priority"] = Priority.of(data.get("priority"))
        return cls(**data)


def alert_fields(entry: Entry, matches: Sequence[Match]) -> AlertFields:
    """The facts of the alert for `entry`, which `matches` explain."""
    terms = "; ".join(
        f"{m.watchlist} — " + "; ".join(f"{entity}: {', '.join(aliases)}"
                                        for entity, aliases in m.terms_by_entity().items())
        for m in matches)
    first = matches[0]
    return AlertFields(
        title=entry.title or "(untitled)", link=entry.link, feed=entry.feed_name,
        published=entry.published.astimezone(UTC).isoformat() if entry.published else None,
        language=entry.language, watchlists=tuple(m.watchlist for m in matches),
        priority=max((m.priority for m in matches), key=lambda p: p.rank),
        terms=terms, snippet=first.snippet.replace("\n", " "), highlights=first.highlights,
        summary=entry.summary[:600])


@dataclass(frozen=True)
class Story:
    """One alert as a message shows it: its fields, the other sources, the reader's zone."""

    fields: AlertFields
    sources: tuple[str, ...] = ()
    zone: tzinfo = UTC

    def when(self) -> str:
        """The published time in the reader's time zone, or "no date"."""
        if not self.fields.published:
            return "no date"
        moment = datetime.fromisoformat(self.fields.published).astimezone(self.zone)
        return moment.strftime("%Y-%m-%d %H:%M ") + (moment.tzname() or "")

    def language_tag(self) -> str:
        """The source's language code in brackets, e.g. " [id]", or nothing."""
        return f" [{self.fields.language}]" if self.fields.language else ""


@dataclass(frozen=True)
class Template:
    """A target's own title and body templates (Jinja2), either may be None."""

    title: str | None = None
    body: str | None = None


@dataclass(frozen=True)
class Style:
    """How a target wants its messages: format, template and time zone."""

    format: Format = "markdown"
    template: Template = field(default_factory=Template)
    zone: tzinfo = UTC


# Escaping. Markdown: the characters that open links, images, emphasis, code, strike-through,
# tables and raw HTML or autolinks, anywhere; and the block markers (heading, quote, list item,
# setext underline) where they would open a line. `.` and `-` inside a line stay as they are.
_MARKDOWN_INLINE = re.compile(r"([\\`*_{}\[\]()<>!|~])")
_MARKDOWN_LEADING = re.compile(r"^(\s*)([#>+\-=]|\d+[.)])")
_WHITE = re.compile(r"\s+")
_URL_UNSAFE = frozenset("<>\"'`\\[](){}|^")


def escape(text: str, fmt: Format) -> str:
    """`text` from a feed or a server, as literal text in `fmt` (in markdown and text, an @
    can no longer mention anyone)."""
    if fmt == "html":
        return html.escape(text, quote=True)
    # Chat services ping on @everyone, @here, @room, <@id>: a zero-width space after each @
    # leaves the text as it reads and pings no one.
    text = text.replace("@", "@\u200b")
    if fmt == "markdown":  # one space for each run of white space: no line break, no indent
        text = _MARKDOWN_INLINE.sub(r"\\\1", _WHITE.sub(" ", text))
        return _MARKDOWN_LEADING.sub(_escape_marker, text)
    return text


def _escape_marker(found: re.Match[str]) -> str:
    """The block marker found at a line's start, its last character backslash-escaped."""
    spaces, marker = found.groups()
    return f"{spaces}{marker[:-1]}\\{marker[-1]}"


def one_line(text: str, limit: int = 0) -> str:
    """`text` on one line: each run of white space (line breaks too) one space, control
    characters dropped, cut to `limit` characters with an ellipsis (0: no limit)."""
    text = "".join(c for c in _WHITE.sub(" ", text) if unicodedata.category(c) != "Cc").strip()
    return _trim(text, limit) if limit else text


def safe_url(url: str | None) -> str | None:
    """`url` if it is an absolute http(s) URL, with every character that could end it, hide it
    or break the markup around it (white space, controls, invisible format characters, quotes,
    brackets, backslashes) percent-encoded; None for any other URL (`javascript:`, `data:`…)."""
    text = (url or "").strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    head = f"{parts.scheme}://{parts.netloc}"
    # urlsplit has checked that brackets in the host hold an IPv6 address; it drops tabs and
    # line breaks, so a head it did not read verbatim is refused.
    host = parts.netloc.replace("[", "").replace("]", "")
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname \
            or any(_unsafe_in_url(c) for c in host) or text[:len(head)].lower() != head.lower():
        return None
    return head + "".join(quote(c, safe="") if _unsafe_in_url(c) else c
                          for c in text[len(head):])


def _unsafe_in_url(char: str) -> bool:
    """Whether `char` could end, hide or break out of a link shown in markdown or html."""
    return char in _URL_UNSAFE or unicodedata.category(char)[0] in "CZ"


def _link(url: str | None, fmt: Format) -> str:
    """A clickable link to `url` in `fmt`, showing the URL itself; "" unless it is http(s)."""
    safe = safe_url(url)
    if safe is None:
        return ""
    if fmt == "html":
        return f'<a href="{html.escape(safe, quote=True)}">{html.escape(safe)}</a>'
    return f"<{safe}>" if fmt == "markdown" else safe


def _highlighted(fields: AlertFields, fmt: Format) -> str:
    """The snippet escaped for `fmt`, its matched terms marked in bold."""
    marks = {"markdown": ("**", "**"), "html": ("<b>", "</b>"), "text": ("", "")}[fmt]
    text, pieces, cursor = fields.snippet, [], 0
    for start, end in fields.highlights:
        if start < cursor or end > len(text):
            continue
        pieces += [escape(text[cursor:start], fmt), marks[0], escape(text[start:end], fmt),
                   marks[1]]
        cursor = end
    pieces.append(escape(text[cursor:], fmt))
    return "".join(pieces)


def _variables(story: Story, fmt: Format) -> dict[str, Any]:
    """A template's fields. In html Jinja2 escapes them on output; in markdown they come
    escaped; `link` is the story's http(s) link or empty."""
    f = story.fields

    def text(value: str) -> str:
        return escape(value, "markdown") if fmt == "markdown" else value

    return {"title": text(f.title), "link": safe_url(f.link) or "", "feed": text(f.feed),
            "published": story.when(), "language": text(f.language or ""),
            "watchlists": text(", ".join(f.watchlists)), "priority": text(f.priority),
            "terms": text(f.terms), "summary": text(f.summary),
            # _highlighted escapes every piece of feed text itself; only its <b> marks are ours.
            "snippet": Markup(_highlighted(f, fmt)) if fmt == "html"  # noqa: S704
            else _highlighted(f, fmt),
            "sources": [text(s) for s in story.sources], "also": text(", ".join(story.sources))}


def _worst_case() -> Story:
    """The longest alert a feed can bring, with markup and wide characters in every field: a
    1,000-character title (the parser's cap), 50 sources, a 1,000-character snippet."""
    words = "Russia & <b>North Korea</b> [sign](https://a.example/) «조약» *pact* "

    def text(size: int) -> str:
        return (words * (size // len(words) + 1))[:size]

    fields = AlertFields(
        title=text(1000), link="https://news.example/" + "section/" * 40, feed=text(200),
        published="2026-11-27T01:30:00+00:00", language="pt-BR",
        watchlists=tuple(f"watchlist-{n}" for n in range(5)), priority=Priority.HIGH,
        terms=text(500), snippet=text(1000),
        highlights=tuple((n * 50, n * 50 + 9) for n in range(20)), summary=text(600))
    return Story(fields, tuple(f"{text(60)} {n}" for n in range(50)))


def check_template(text: str) -> None:
    """Raise ValueError unless `text` renders, in every format and within a render's bounds,
    the longest alert a feed can bring."""
    sample = _worst_case()
    for fmt in FORMATS:
        try:
            RENDERER.render(text, fmt, _variables(sample, fmt))
        except TemplateError as error:
            where = f" on a sample alert in {fmt} (a {len(sample.fields.title):,}-character " \
                    f"title, {len(sample.sources)} sources)" if error.overran else ""
            raise ValueError(f"template: {error}{where}") from None


def headline(fields: AlertFields) -> str:
    """An alert's default title, "[watchlists] title": in messages without a template, and
    as the outbox row's title in logs and `status`."""
    return f"[{', '.join(fields.watchlists)}] {fields.title}"


def _default_title(story: Story) -> str:
    return headline(story.fields)


def _default_body(story: Story, fmt: Format) -> str:
    f = story.fields
    bold = {"markdown": "**{}**", "html": "<b>{}</b>", "text": "{}"}[fmt]
    title, url = escape(f.title, fmt), safe_url(f.link)
    if fmt == "html" and url:  # the headline itself opens the story
        title = f'<a href="{html.escape(url, quote=True)}">{title}</a>'
    lines = [bold.format(title) + escape(story.language_tag(), fmt),
             escape(f"{f.feed} · {story.when()}", fmt),
             escape(f"Matched {f.terms}", fmt), ""]
    # Not <blockquote> in html: email's plain-text part would show it as " >…".
    quote_ = {"markdown": "> {}", "html": "<i>“{}”</i>", "text": "“{}”"}[fmt]
    lines.append(quote_.format(_highlighted(f, fmt)))
    link = _link(f.link, fmt)
    if link:
        lines += ["", link]
    if story.sources:
        lines += ["", escape(f"Also reported by: {_names(story.sources, 20)}", fmt)]
    return _join(lines, fmt)


def _join(lines: Sequence[str], fmt: Format) -> str:
    # Each line whole in html too (`<br>` ends it, blank ones included), so `fit` may cut
    # between any two; `send` drops the newlines after `<br>` (see `html_lines`).
    return "\n".join(f"{line}<br>" if fmt == "html" else line for line in lines)


def html_lines(body: str) -> str:
    """An html body without the newlines after its `<br>`s: HTML needs none, and email's
    plain-text part (made from the HTML) would show each as a space starting the next line."""
    return body.replace("<br>\n", "<br>")


def render_story(story: Story, style: Style, target: str = "target") -> tuple[str, str]:
    """Title and body of one alert for a target named `target` (the default layout where its
    template fails or overruns on this story, with a logged error: an alert is never lost to a
    template). A template renders in a worker process: call this off the event loop."""
    template = style.template
    title, body = _default_title(story), None
    try:
        if template.title:
            title = RENDERER.render(template.title, "text", _variables(story, "text"))
        if template.body:
            body = RENDERER.render(template.body, style.format,
                                    _variables(story, style.format))
    except TemplateError as error:
        title, body = _default_title(story), None
        log.error("template of %s failed on the alert %r, default layout used: %s", target,
                  one_line(story.fields.title, 120), error)
    return one_line(title), body or _default_body(story, style.format)


def _names(names: Sequence[str], limit: int) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def render_digest(stories: Sequence[Story], style: Style, reason: str,
                  later: int = 0) -> tuple[str, str]:
    """Title and body of one message listing `stories` grouped by watchlist, and how many
    more (`later`) wait for the next digest."""
    fmt, groups = style.format, dict[str, list[Story]]()
    for story in stories:
        groups.setdefault(", ".join(story.fields.watchlists), []).append(story)
    count = f"{len(stories)} stor{'y' if len(stories) == 1 else 'ies'}"
    title = f"{count} ({reason}): {', '.join(groups)}"
    bold = {"markdown": "**{}**", "html": "<b>{}</b>", "text": "{}"}[fmt]
    lines: list[str] = []
    for name, members in groups.items():
        lines += ["", bold.format(f"{escape(name, fmt)} ({len(members)})")]
        for story in members:
            f = story.fields
            also = f" (+{len(story.sources)}: {escape(_names(story.sources, 5), fmt)})" \
                if story.sources else ""
            lines.append(f"• {escape(f.title + story.language_tag(), fmt)} — "
                         f"{escape(f.feed, fmt)}, {story.when()}{also}")
            link = _link(f.link, fmt)
            if link:
                lines.append("  " + link)
    if later:
        lines += ["", escape(f"…and {later} more in the next digest", fmt)]
    return one_line(title), _join(lines[1:], fmt)


def note(title: str, lines: Sequence[str], link: str | None = None) -> tuple[str, str]:
    """Title and body of a note as the outbox stores it, before its target's format is known:
    plain text, each of `lines` on one line, then the link (http(s) only) on a line of its own.
    `render_note` writes it in a target's format."""
    body = [one_line(line) for line in lines]
    url = safe_url(link)
    if url:
        body += ["", url]
    return one_line(title), "\n".join(body)


def render_note(title: str, body: str, style: Style) -> tuple[str, str]:
    """A stored note (see `note`; also a health notice or an alert of a version-1 database) for
    a target: each line escaped for its format; a line that is one http(s) URL, a link."""
    fmt = style.format
    lines = [_link(line, fmt) if _is_url(line) else escape(line, fmt)
             for line in body.split("\n")]
    return one_line(title), _join(lines, fmt)


def _is_url(line: str) -> bool:
    """Whether a stored note's line is a link (`note` writes it alone on its line)."""
    return bool(line) and safe_url(line) == line


def render_update(entry: Entry, old_title: str) -> tuple[str, str]:
    """Title and body of the short note (see `note`) sent when an alerted entry is re-titled."""
    language = f" [{entry.language}]" if entry.language else ""
    return note(f"Updated: {entry.title}{language}",
                [f"{entry.feed_name} changed the title of an entry it was alerted for:",
                 f"was: {old_title}", f"now: {entry.title}"], entry.link)


def render_sources(story: Story, style: Style) -> tuple[str, str]:
    """Title and body of the note naming the outlets that reported a story after its alert
    was sent, in the target's format."""
    f, fmt, count = story.fields, style.format, len(story.sources)
    lines = [escape(f"Since the alert, {count} more outlet{'s' if count > 1 else ''} "
                    f"reported this story: {_names(story.sources, 50)}", fmt)]
    link = _link(f.link, fmt)
    if link:
        lines += ["", link]
    return one_line(f"Also reported: {f.title}{story.language_tag()}"), _join(lines, fmt)


def fit(title: str, body: str, title_max: int, body_max: int) -> list[tuple[str, str]]:
    """The message as parts that fit a channel's limits (0 = the channel has no title: Apprise
    puts the title in the body), cut between lines and numbered "(1/3)" when cut."""
    title_room = title_max or body_max // 4
    title = _trim(title, max(title_room - 8, 16))
    room = body_max - (0 if title_max else len(title) + 10)
    room = max(room, 64)
    parts: list[list[str]] = [[]]
    size = 0
    for whole in body.split("\n"):
        line = _trim(whole, room)
        if parts[-1] and size + len(line) + 1 > room:
            parts.append([])
            size = 0
        parts[-1].append(line)
        size += len(line) + 1
    bodies = ["\n".join(lines).strip("\n") for lines in parts]
    if len(bodies) == 1:
        return [(title, bodies[0])]
    return [(f"{title} ({n}/{len(bodies)})", text) for n, text in enumerate(bodies, 1)]


def _trim(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:max(limit - 1, 0)] + ELLIPSIS
