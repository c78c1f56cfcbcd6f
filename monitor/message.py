"""Messages: what an alert, a digest or an "updated" note says, in each target's format.

An alert's facts are frozen as `AlertFields` when its entry is recorded (they travel in the outbox
as JSON) and rendered when it is sent, so the sources that joined the story since, the target's
time zone, format and template all apply. Formats: markdown (chat), html (email), text. Users'
templates run in Jinja2's sandbox; in html every field is escaped. `fit` cuts a message into
parts that fit the channel's limits, between lines, never inside one.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from monitor.models import Entry, Match
from monitor.schedule import RANK

log = logging.getLogger("monitor")
Format = Literal["markdown", "html", "text"]
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
    priority: str
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
        priority=max((m.priority for m in matches), key=lambda p: RANK.get(p, 1)),
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


def _escape(text: str, fmt: Format) -> str:
    return html.escape(text, quote=True) if fmt == "html" else text


def _highlighted(fields: AlertFields, fmt: Format) -> str:
    marks = {"markdown": ("**", "**"), "html": ("<b>", "</b>"), "text": ("", "")}[fmt]
    text, pieces, cursor = fields.snippet, [], 0
    for start, end in fields.highlights:
        if start < cursor or end > len(text):
            continue
        pieces += [_escape(text[cursor:start], fmt), marks[0], _escape(text[start:end], fmt),
                   marks[1]]
        cursor = end
    pieces.append(_escape(text[cursor:], fmt))
    return "".join(pieces)


def _link(url: str | None, fmt: Format) -> str:
    if not url:
        return ""
    if fmt == "html":
        return f'<a href="{html.escape(url, quote=True)}">{html.escape(url)}</a>'
    return url


def _variables(story: Story, fmt: Format) -> dict[str, Any]:
    f = story.fields
    return {"title": f.title, "link": f.link or "", "feed": f.feed, "published": story.when(),
            "language": f.language or "", "watchlists": ", ".join(f.watchlists),
            "priority": f.priority, "terms": f.terms, "summary": f.summary,
            # _highlighted escapes every piece of feed text itself; only its <b> marks are ours.
            "snippet": Markup(_highlighted(f, fmt)) if fmt == "html"  # noqa: S704
            else _highlighted(f, fmt),
            "sources": list(story.sources), "also": ", ".join(story.sources)}


def _environment(fmt: Format) -> SandboxedEnvironment:
    return SandboxedEnvironment(autoescape=fmt == "html", undefined=jinja2.StrictUndefined,
                                keep_trailing_newline=False)


def check_template(text: str, fmt: Format = "text") -> None:
    """Raise ValueError if `text` is not a template that renders with an alert's fields."""
    sample = Story(AlertFields(title="t", link="https://a.example/", feed="f", published=None,
                               language="en", watchlists=("w",), priority="normal", terms="x",
                               snippet="s"), ("g",))
    try:
        _environment(fmt).from_string(text).render(_variables(sample, fmt))
    except Exception as error:  # a user's template can raise anything
        raise ValueError(f"template: {error.__class__.__name__}: {error}") from None


def _templated(text: str, story: Story, fmt: Format) -> str:
    return _environment(fmt).from_string(text).render(_variables(story, fmt))


def _default_title(story: Story) -> str:
    return f"[{', '.join(story.fields.watchlists)}] {story.fields.title}"


def _default_body(story: Story, fmt: Format) -> str:
    f = story.fields
    bold = {"markdown": "**{}**", "html": "<b>{}</b>", "text": "{}"}[fmt]
    lines = [bold.format(_escape(f.title, fmt)) + _escape(story.language_tag(), fmt),
             _escape(f"{f.feed} · {story.when()}", fmt),
             _escape(f"Matched {f.terms}", fmt), ""]
    quote = {"markdown": "> {}", "html": "<blockquote>{}</blockquote>", "text": "“{}”"}[fmt]
    lines.append(quote.format(_highlighted(f, fmt)))
    if f.link:
        lines += ["", _link(f.link, fmt)]
    if story.sources:
        lines += ["", _escape(f"Also reported by: {_names(story.sources, 20)}", fmt)]
    return _join(lines, fmt)


def _join(lines: Sequence[str], fmt: Format) -> str:
    # Each line whole in html too (`<br>` ends it), so `fit` may cut between any two.
    return "\n".join(f"{line}<br>" if fmt == "html" and line else line for line in lines)


def render_story(story: Story, style: Style) -> tuple[str, str]:
    """Title and body of one alert for a target (the default layout where its template
    fails on this story: an alert is never lost to a template)."""
    template = style.template
    title, body = _default_title(story), None
    try:
        if template.title:
            title = _templated(template.title, story, "text")
        if template.body:
            body = _templated(template.body, story, style.format)
    except Exception as error:  # a user's template can raise anything
        log.warning("template failed on %r, default layout used: %s: %s", story.fields.title,
                    error.__class__.__name__, error)
    return " ".join(title.split()), body or _default_body(story, style.format)


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
        lines += ["", bold.format(_escape(f"{name} ({len(members)})", fmt))]
        for story in members:
            f = story.fields
            also = f" (+{len(story.sources)}: {_names(story.sources, 5)})" if story.sources \
                else ""
            lines.append(_escape(f"• {f.title}{story.language_tag()} — {f.feed}, "
                                 f"{story.when()}{also}", fmt))
            if f.link:
                lines.append("  " + _link(f.link, fmt))
    if later:
        lines += ["", _escape(f"…and {later} more in the next digest", fmt)]
    return title, _join(lines[1:], fmt)


def render_update(entry: Entry, old_title: str) -> tuple[str, str]:
    """Title and body (markdown) of the short note sent when an alerted entry is re-titled."""
    language = f" [{entry.language}]" if entry.language else ""
    lines = [f"{entry.feed_name} changed the title of an entry it was alerted for:",
             f"was: {old_title}", f"now: {entry.title}"]
    if entry.link:
        lines += ["", entry.link]
    return f"Updated: {entry.title}{language}", "\n".join(lines)


def render_sources(story: Story) -> tuple[str, str]:
    """Title and body (markdown) of the note naming the outlets that reported a story after
    its alert was sent."""
    f = story.fields
    lines = [f"Since the alert, {len(story.sources)} more outlet"
             f"{'s' if len(story.sources) > 1 else ''} reported this story: "
             f"{', '.join(story.sources)}"]
    if f.link:
        lines += ["", f.link]
    return f"Also reported: {f.title}{story.language_tag()}", "\n".join(lines)


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
