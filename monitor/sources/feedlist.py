"""The feed list: OPML in and out, and adding feeds to the config file without losing its comments.

The config file is edited with ruamel.yaml's round-trip mode, so the user's comments, order and
`${VAR}` placeholders stay as they were; the edited text is validated as a whole config before
it replaces the file (atomically), so an import can never leave a broken config behind. What an
OPML file or a feed says is written as a literal (`$` doubled): it can never read a secret from
the environment. An exported OPML file holds the feed URLs as used, credentials included, so it
is created readable by its owner alone.
"""

from __future__ import annotations

import io
import os
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as defused
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from monitor.config import Config, literal, parse_config
from monitor.errors import OpmlError

MAX_OPML = 10 * 1024**2
MAX_NAME, MAX_URL = 200, 2048  # longer names are cut; longer URLs are not feeds


@dataclass(frozen=True)
class FeedLink:
    """A feed named in an OPML outline (or given on the command line)."""

    url: str
    name: str | None = None
    tags: tuple[str, ...] = ()


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
            found.append(FeedLink(url, name, tags))
        children = outline.findall("outline")
        for child in children:
            walk(child, (*tags, name) if name and not url and children else tags)

    for outline in body.findall("outline"):
        walk(outline, ())
    return found


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
    """Append feeds missing from the config file at `path`; returns (added, already there)."""
    yaml = _yaml()
    document = yaml.load(path.read_text(encoding="utf-8")) or CommentedMap()
    feeds = document.get("feeds")
    if feeds is None:
        feeds = document["feeds"] = CommentedSeq()
    known = {str(item.get("url", "")).strip().replace("$$", "$") for item in feeds
             if isinstance(item, dict)}
    added, skipped = [], []
    for link in links:
        if link.url in known:
            skipped.append(link)
            continue
        known.add(link.url)
        entry = CommentedMap(url=literal(link.url))
        if link.name:
            entry["name"] = literal(link.name)
        if link.tags:
            entry["tags"] = [literal(tag) for tag in link.tags]
        feeds.append(entry)
        added.append(link)
    if added:
        buffer = io.StringIO()
        yaml.dump(document, buffer)
        parse_config(buffer.getvalue(), path)  # never write a config that would not load
        _replace(path, buffer.getvalue())
    return added, skipped


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
