"""Parsing: feed bytes into typed `Entry` values with plain text and safe links.

feedparser only ever gets an `io.BytesIO`: given a `str` (or bytes that spell a path) it opens
local files and fetches URLs by itself. A DOCTYPE's internal subset is removed first, because
entity expansion there costs feedparser's loose parser minutes and gigabytes. JSON Feed, which
feedparser cannot read, is parsed here. Pure CPU work: the pipeline runs it off the event loop.

Every string a feed gives is cleaned here, once: characters XML forbids (C0 controls but tab
and line breaks, lone surrogates, U+FFFE/U+FFFF), the other Unicode noncharacters and C1
controls are dropped, so nothing downstream (the database, `/feed.xml`, a terminal, a log
line) ever sees them. A title is one line; a language is a language tag or nothing. One
entry that cannot be read is skipped with its reason (`ParsedFeed.skipped`); the others stay.
"""

from __future__ import annotations

import html
import io
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import feedparser

from monitor.models import Entry
from monitor.sources.cadence import document_hint

T = TypeVar("T")
MAX_TITLE = 1_000
MAX_TEXT = 20_000
MAX_ENTRIES = 1_000

# 256 opening tags in a row with nothing between: no real feed nests like that, and
# feedparser takes minutes and gigabytes over a million-deep nesting. ~1 ms per 70 KB feed.
MAX_NESTING = 256
_DEEP = re.compile(rb"(?:<[A-Za-z][^<>/]{0,200}>\s*){%d}" % MAX_NESTING)
_INTERNAL_SUBSET = re.compile(rb"(<!DOCTYPE[^\[>]*)\[.*?\]\s*>", re.IGNORECASE | re.DOTALL)
_DROPPED = re.compile(r"<(script|style|noscript)\b.*?</\1\s*>|<!--.*?-->", re.I | re.S)
_BLOCK = re.compile(r"</?(p|div|br|li|ul|ol|h[1-6]|tr|table|blockquote|section|article)\b[^>]*>",
                    re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef"
                     + "".join(chr(plane << 16 | 0xFFFE) + chr(plane << 16 | 0xFFFF)
                               for plane in range(17)) + "]")
# Zero-padded references count too (`&#x000000000DFFF;`); past 64 digits feedparser keeps text.
_CHAR_REF = re.compile(rb"&#(?:[xX]([0-9a-fA-F]{1,64})|([0-9]{1,64}));")
_LANGUAGE = re.compile(r"^[A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8}){0,4}$")
# Only runs of 2+ spaces or single other blanks: replacing each lone space costs 3x the time.
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]{2,}|[\t\r\f\v\u00a0]")
_LINES = re.compile(r"\n\s*")  # a literal first: the regex engine skips ahead fast


@dataclass(frozen=True)
class ParsedFeed:
    """Entries of one document, or the reason it is not a feed."""

    entries: list[Entry] = field(default_factory=list)
    title: str = ""
    error: str | None = None
    warning: str | None = None
    skipped: tuple[str, ...] = ()  # why each unreadable entry was left out
    refresh_hint: float | None = None  # seconds between updates the document announces


def clean(text: str) -> str:
    """`text` without the characters no feed text may carry (see the module's docstring)."""
    return _UNSAFE.sub("", text)


def plain_text(text: str, limit: int = MAX_TEXT) -> str:
    """Plain text cleaned, with spacing tidied."""
    text = clean(text)
    return _LINES.sub("\n", _SPACES.sub(" ", text)).replace(" \n", "\n").strip()[:limit]


def to_text(markup: str, limit: int = MAX_TEXT) -> str:
    """Plain text of an HTML fragment: tags gone, entities decoded, spacing tidied."""
    if "<" in markup:
        markup = _DROPPED.sub(" ", markup)
        markup = _BLOCK.sub("\n", markup)
        markup = _TAG.sub(" ", markup)
    return plain_text(html.unescape(markup), limit)


def one_line(markup: object, limit: int = MAX_TITLE) -> str:
    """A title: the plain text of `markup` on one line ("" for anything but a string)."""
    return " ".join(to_text(markup, limit).split()) if isinstance(markup, str) else ""


def _language(value: object) -> str | None:
    """A language tag such as `en` or `pt-BR`, or None for anything else."""
    return value if isinstance(value, str) and _LANGUAGE.match(value) else None


def _guid(value: object) -> str | None:
    """An entry id as text (a number counts; objects do not)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return clean(str(value)).strip()[:1000] or None


def safe_link(link: object) -> str | None:
    """The link if it is an http(s) URL; `javascript:` and the like become None."""
    if not isinstance(link, str):
        return None
    text = link.strip()
    if not re.match(r"^https?://[^\s/?#]+", text, re.IGNORECASE) or len(text) > 2048 \
            or _UNSAFE.search(text):
        return None
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (raises on a port that is no number or out of range)
    except ValueError:
        return None
    return text if parts.hostname else None


def _absolute(link: object, base: str) -> object:
    """A relative link resolved against the feed's URL; anything else as it is."""
    if isinstance(link, str) and link and "://" not in link[:12]:
        try:
            return urljoin(base, link.strip())
        except ValueError:
            return None
    return link


def _when(value: Any) -> datetime | None:
    try:
        return datetime(*value[:6]).replace(tzinfo=UTC) if value else None
    except (TypeError, ValueError, OverflowError):
        return None


def _iso_when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _entry_from_feedparser(item: Any, feed_url: str, feed_name: str, language: str | None) -> Entry:
    summary = to_text(item.get("summary", "") or "")
    contents = [c.get("value", "") for c in item.get("content", []) or [] if isinstance(c, dict)]
    content = to_text(" ".join(contents)) if contents else ""
    # RSS readers often repeat the summary as content: keep one copy so nothing is matched twice.
    if content == summary or (summary and content.startswith(summary)
                              and len(content) < 2 * len(summary)):
        summary, content = content, ""
    detail = item.get("summary_detail") or {}
    return Entry(
        feed_url=feed_url, feed_name=feed_name,
        guid=_guid(item.get("id")),
        link=safe_link(_absolute(item.get("link"), feed_url)),
        title=one_line(item.get("title", "") or ""),
        summary=summary, content=content,
        # dict.get: feedparser's own get() warns when it maps updated_parsed to published.
        published=_when(dict.get(item, "published_parsed") or dict.get(item, "updated_parsed")),
        language=_language(detail.get("language")) or language,
    )


def _parse_json_feed(body: bytes, feed_url: str, feed_name: str) -> ParsedFeed:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as error:
        return ParsedFeed(error=f"invalid JSON Feed: {str(error)[:200]}")
    if not isinstance(document, dict) or not str(document.get("version", "")).startswith(
            "https://jsonfeed.org/version/"):
        return ParsedFeed(error="JSON that is not a JSON Feed")
    items = document.get("items")
    language, title = _language(document.get("language")), one_line(document.get("title"))
    outlet = _outlet(feed_name, title, feed_url)
    entries, skipped = _each([i for i in items[:MAX_ENTRIES] if isinstance(i, dict)]
                             if isinstance(items, list) else [],
                             lambda item: _json_entry(item, feed_url, outlet, language))
    return ParsedFeed(entries=entries, title=title, skipped=skipped)


def _outlet(feed_name: str, title: str, feed_url: str) -> str:
    """How entries name their source: the configured name, the document's title, or the
    feed's host."""
    if feed_name or title:
        return feed_name or title
    try:
        return (urlsplit(feed_url).hostname or "").removeprefix("www.")
    except ValueError:
        return ""


def _json_entry(item: dict[str, Any], feed_url: str, feed_name: str,
                language: str | None) -> Entry:
    text = item.get("content_text")
    content = plain_text(text) if isinstance(text, str) and text.strip() \
        else to_text(_string(item.get("content_html")))
    return Entry(
        feed_url=feed_url, feed_name=feed_name, guid=_guid(item.get("id")),
        link=safe_link(item.get("url")) or safe_link(item.get("external_url")),
        title=one_line(item.get("title")), summary=to_text(_string(item.get("summary"))),
        content=content,
        published=_iso_when(item.get("date_published") or item.get("date_modified")),
        language=_language(item.get("language")) or language,
    )


def _string(value: object) -> str:
    return value if isinstance(value, str) else ""


def _each(items: Sequence[T], make: Callable[[T], Entry]) -> tuple[list[Entry], tuple[str, ...]]:
    """`make` applied to each item; an item it fails on is left out, with the reason why."""
    entries, skipped = [], []
    for number, item in enumerate(items, 1):
        try:
            entries.append(make(item))
        except Exception as error:  # a hostile entry must cost itself, never its feed
            skipped.append(f"entry {number} skipped: {error.__class__.__name__}: "
                           f"{clean(str(error))[:160]}")
    return entries, tuple(skipped)


def _allowed_ref(found: re.Match[bytes]) -> bytes:
    """A character reference, or nothing when it names a character no feed text may carry
    (feedparser fails the whole document on `&#xDFFF;`)."""
    hexadecimal, decimal = found.group(1), found.group(2)
    code = int(hexadecimal, 16) if hexadecimal else int(decimal)
    if code > 0x10FFFF or _UNSAFE.match(chr(code)):
        return b""
    return found.group()


def _describe_bozo(error: Any) -> str:
    text = str(error).splitlines()[0] if str(error) else error.__class__.__name__
    return text[:200]


def _feedparser(body: bytes, feed_url: str, headers: Mapping[str, str] | None) -> Any:
    """feedparser's result for `body`, or the reason it failed."""
    # No Content-Location: with a base URI feedparser resolves every URI of the document,
    # 15 % of its time; we resolve the one we use, the entry's link (`_entry_from_feedparser`).
    response_headers = {k.lower(): v for k, v in (headers or {}).items()
                        if k.lower() != "content-location"}
    try:
        return feedparser.parse(io.BytesIO(body), response_headers=response_headers,
                                sanitize_html=False, resolve_relative_uris=False)
    except MemoryError:
        return "parsing needed more memory than allowed"
    except (RecursionError, ValueError) as error:
        return f"cannot parse: {error.__class__.__name__}"


def parse_feed(body: bytes, feed_url: str, feed_name: str = "",
               headers: Mapping[str, str] | None = None) -> ParsedFeed:
    """Entries of the feed document `body` (RSS, Atom, RDF or JSON Feed)."""
    stripped = body.lstrip()
    if not stripped:
        return ParsedFeed(error="empty body")
    if stripped[:1] in (b"{", b"["):
        return _parse_json_feed(stripped, feed_url, feed_name)
    if _DEEP.search(body):
        return ParsedFeed(error=f"not a feed: elements nested more than {MAX_NESTING} deep")
    body = _CHAR_REF.sub(_allowed_ref, _INTERNAL_SUBSET.sub(rb"\1>", body))
    parsed = _feedparser(body, feed_url, headers)
    if isinstance(parsed, str):
        return ParsedFeed(error=parsed)
    items = parsed.get("entries", [])[:MAX_ENTRIES]
    feed_info = parsed.get("feed", {})
    title = one_line(feed_info.get("title", "") or "")
    if not items and not parsed.get("version"):  # no feed format recognised, nothing found
        reason = _describe_bozo(parsed.get("bozo_exception")) if parsed.get("bozo") \
            else "no RSS, Atom, RDF or JSON Feed document"
        looks_html = b"<html" in body[:2048].lower()
        return ParsedFeed(error=("not a feed: an HTML page" if looks_html
                                 else f"not a feed: {reason}"))
    language = _language(feed_info.get("language"))
    entries, skipped = _each(items, lambda item: _entry_from_feedparser(
        item, feed_url, _outlet(feed_name, title, feed_url), language))
    warning = _describe_bozo(parsed.get("bozo_exception")) if parsed.get("bozo") else None
    hint = document_hint(_text_of(feed_info.get("ttl")),
                         _text_of(feed_info.get("sy_updateperiod")),
                         _text_of(feed_info.get("sy_updatefrequency")))
    return ParsedFeed(entries=entries, title=title, warning=warning, skipped=skipped,
                      refresh_hint=hint)


def _text_of(value: Any) -> str | None:
    """A short element's text, or None for anything else a hostile document put there."""
    return value[:32] if isinstance(value, str) else None
