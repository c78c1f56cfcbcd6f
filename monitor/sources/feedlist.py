"""The feed list: OPML in and out, and adding feeds to the config file without losing its comments.

New feeds are written as text after the last item of the config's `feeds` list, in that list's
own indentation, so the rest of the file stays byte for byte as the user wrote it (a flow-style
list, rare, is edited with ruamel.yaml's round-trip mode instead). The edited text is validated
as a whole config before it replaces the file (atomically), so an import can never leave a broken
config behind. Tags travel in OPML as enclosing outlines or the `category` attribute, and a
feed's own interval as an `interval` attribute. What an
OPML file or a feed says is written as a literal (`$` doubled): it can never read a secret from
the environment. An exported OPML file holds the feed URLs as used, credentials included, so it
is created readable by its owner alone.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml
from defusedxml import DefusedXmlException
from defusedxml import ElementTree as defused
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from monitor.config import (
    MIN_FEED_INTERVAL,
    Config,
    format_duration,
    literal,
    parse_config,
    parse_duration,
)
from monitor.errors import OpmlError

MAX_OPML = 10 * 1024**2
MAX_NAME, MAX_URL = 200, 2048  # longer names are cut; longer URLs are not feeds
MAX_TAGS = 20


@dataclass(frozen=True)
class FeedLink:
    """A feed named in an OPML outline (or given on the command line)."""

    url: str
    name: str | None = None
    tags: tuple[str, ...] = ()
    interval: str | None = None  # a duration as the config writes it ("1h")


def read_opml(data: bytes) -> list[FeedLink]:
    """Every outline with an http(s) `xmlUrl`; enclosing outlines' titles become tags."""
    if len(data) > MAX_OPML:
        raise OpmlError(f"larger than {MAX_OPML // 1024**2} MB")
    try:
        root = defused.fromstring(data, forbid_dtd=True)
    except ET.ParseError as error:
        raise OpmlError(f"not valid XML: {error}") from None
    except DefusedXmlException:
        raise OpmlError("OPML with a DTD or entities is not accepted") from None
    body = root.find("body")
    if root.tag != "opml" or body is None:
        raise OpmlError("not an OPML document (no <opml><body>)")
    found: list[FeedLink] = []

    def walk(outline: ET.Element, tags: tuple[str, ...]) -> None:
        url = (outline.get("xmlUrl") or "").strip()
        name = (outline.get("title") or outline.get("text") or "").strip()[:MAX_NAME] or None
        if url.lower().startswith(("http://", "https://")) and len(url) <= MAX_URL:
            found.append(FeedLink(url, name, _tags(tags, outline.get("category")),
                                  _interval(outline.get("interval"))))
        children = outline.findall("outline")
        for child in children:
            walk(child, (*tags, name) if name and not url and children else tags)

    for outline in body.findall("outline"):
        walk(outline, ())
    return found


def _tags(enclosing: tuple[str, ...], category: str | None) -> tuple[str, ...]:
    """Enclosing outlines' titles, then OPML 2.0 `category` values (comma-separated,
    slash-delimited paths: the last part of each is the tag), each once."""
    found = list(enclosing)
    for value in (category or "").split(","):
        tag = value.strip().rstrip("/").rpartition("/")[2].strip()[:MAX_NAME]
        if tag and tag not in found:
            found.append(tag)
    return tuple(found[:MAX_TAGS])


def _interval(value: str | None) -> str | None:
    """An outline's `interval`, if it is a duration the config accepts (else it is dropped)."""
    if not value:
        return None
    try:
        seconds = parse_duration(value.strip())
    except ValueError:
        return None
    return format_duration(seconds) if seconds >= MIN_FEED_INTERVAL else None


def write_opml(config: Config) -> str:
    """The configured feeds as an OPML 2.0 document."""
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = "monitor feeds"
    body = ET.SubElement(root, "body")
    for feed in config.feeds:
        attributes = {"type": "rss", "text": feed.title, "title": feed.title, "xmlUrl": feed.url}
        if feed.tags:
            attributes["category"] = ",".join(feed.tags)
        if feed.interval is not None:
            attributes["interval"] = format_duration(feed.interval)
        ET.SubElement(body, "outline", attributes)
    ET.indent(root)
    return str(ET.tostring(root, encoding="unicode", xml_declaration=True)) + "\n"


def write_private(path: Path, text: str) -> None:
    """Write `text` to a new or existing file at `path` that only its owner can read."""
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(text)


def _yaml() -> YAML:
    yaml = YAML()  # round-trip: comments, order and quoting survive
    yaml.preserve_quotes = True
    yaml.width = 100
    return yaml


def add_feeds(path: Path, links: Iterable[FeedLink]) -> tuple[list[FeedLink], list[FeedLink]]:
    """Append feeds missing from the config file at `path`; returns (added, already there).
    Only the `feeds` list changes: the new items follow its last one."""
    text = path.read_text(encoding="utf-8")
    existing = yaml.safe_load(text) or {}
    feeds = existing.get("feeds") if isinstance(existing, dict) else None
    known = {str(item.get("url", "")).strip().replace("$$", "$")
             for item in feeds or [] if isinstance(item, dict)}
    added, skipped = [], []
    for link in links:
        if link.url in known:
            skipped.append(link)
            continue
        known.add(link.url)
        added.append(link)
    if added:
        edited = _appended(text, added)
        if edited is None or _feeds_of(edited) != [*(feeds or []), *map(_item, added)]:
            edited = _round_trip(text, added)  # a flow-style list, or an edit that misread
        parse_config(edited, path)  # never write a config that would not load
        _replace(path, edited)
    return added, skipped


def _item(link: FeedLink) -> dict[str, object]:
    """A feed as the config holds it; what a stranger wrote is a literal (`$` doubled)."""
    item: dict[str, object] = {"url": literal(link.url)}
    if link.name:
        item["name"] = literal(link.name)
    if link.tags:
        item["tags"] = [literal(tag) for tag in link.tags]
    if link.interval:
        item["interval"] = link.interval
    return item


def _feeds_of(text: str) -> object:
    loaded = yaml.safe_load(text)
    return loaded.get("feeds") if isinstance(loaded, dict) else None


def _scalar(value: str, in_list: bool = False) -> str:
    """`value` as a YAML scalar: plain where it reads back as itself (inside `[…]` when
    `in_list`), else double-quoted."""
    wrapped, expected = (f"[{value}]", [value]) if in_list else (value, value)
    if "\n" not in value and value == value.strip():
        try:
            if yaml.safe_load(f"k: {wrapped}") == {"k": expected}:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value, ensure_ascii=False)  # JSON strings are YAML double-quoted scalars


def _lines(link: FeedLink, dash: int, key: int) -> list[str]:
    """The feed as block-mapping lines: its `-` at column `dash`, its keys at column `key`."""
    pairs = []
    for name, value in _item(link).items():
        shown = f"[{', '.join(_scalar(tag, in_list=True) for tag in value)}]" \
            if isinstance(value, list) else _scalar(str(value))
        pairs.append(f"{name}: {shown}")
    first, *rest = pairs
    return [" " * dash + "-" + " " * (key - dash - 1) + first,
            *(" " * key + line for line in rest)]


def _appended(text: str, links: list[FeedLink]) -> str | None:
    """`text` with `links` written after the last item of its block-style `feeds` list (or a
    new `feeds:` list where there is none or it is empty); None for a flow-style list."""
    root = yaml.compose(text)
    node = next((v for k, v in root.value if k.value == "feeds"), None) \
        if isinstance(root, yaml.MappingNode) else None
    if node is None:
        block = "\n".join(line for link in links for line in _lines(link, 2, 4))
        return text + ("" if text.endswith("\n") or not text else "\n") + f"feeds:\n{block}\n"
    if isinstance(node, yaml.SequenceNode) and node.value and not node.flow_style:
        first = node.value[0].start_mark
        dash = text.rfind("-", 0, first.index) - text.rfind("\n", 0, first.index) - 1
        end = _last_mark(node.value[-1]).index
        at = text.find("\n", end)
        at = len(text) if at < 0 else at
        block = "".join("\n" + line for link in links for line in _lines(link, dash,
                                                                          first.column))
        return text[:at] + block + text[at:]
    if isinstance(node, yaml.ScalarNode) or (isinstance(node, yaml.SequenceNode)
                                             and not node.value):  # `feeds:` or `feeds: []`
        block = "".join("\n" + line for link in links for line in _lines(link, 2, 4))
        return text[:node.start_mark.index].rstrip(" ") + block + text[node.end_mark.index:]
    return None


def _last_mark(node: yaml.Node) -> yaml.Mark:
    """Where the last scalar inside `node` ends (a block collection's own end is the start of
    the next token, maybe lines later; a flow collection ends at its bracket)."""
    while isinstance(node, yaml.CollectionNode) and node.value and not node.flow_style:
        last = node.value[-1]
        node = last[1] if isinstance(last, tuple) else last
    return node.end_mark


def _round_trip(text: str, links: list[FeedLink]) -> str:
    """The whole file re-dumped by ruamel.yaml's round-trip mode (comments kept), for a
    flow-style `feeds` list."""
    loader = _yaml()
    document = loader.load(text) or CommentedMap()
    feeds = document.get("feeds")
    if not isinstance(feeds, list):
        feeds = document["feeds"] = CommentedSeq()
    feeds.extend(CommentedMap(_item(link)) for link in links)
    buffer = io.StringIO()
    loader.dump(document, buffer)
    return buffer.getvalue()


def _replace(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, keeping the file's permissions."""
    mode = path.stat().st_mode & 0o777
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
