"""Increments: the new part of a changed feed document, cut out so that feedparser parses only
it. Pure, no I/O.

A busy feed's document changes with every new item while most of its fifty items stay as they
were. The document is cut into its head (everything before the first item, with the XML
declaration, namespaces and channel), its items (`<item>…</item>` or `<entry>…</entry>`,
byte for byte) and its tail; the items whose bytes were in the last document are left out,
and head + new items + tail is a smaller document of the same kind and encoding, which
feedparser reads exactly as it reads those items in the whole one. The cut is refused (and the
whole document parsed) whenever it could change the reading: a DOCTYPE or entity
declaration, `xml:base`, an item tag inside a comment or CDATA section, nested or
self-closing items, anything but white space between items, both RSS items and Atom entries,
or a document that is not ASCII-compatible (no tags found).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection
from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise

_ITEM = re.compile(rb"<(/?)((?:[A-Za-z_][\w.-]*:)?(item|entry))(\s[^>]*)?(/?)>", re.IGNORECASE)
_REFUSED = re.compile(rb"<!DOCTYPE|<!ENTITY|xml:base", re.IGNORECASE)
_HIDDEN = re.compile(rb"<!--.*?-->|<!\[CDATA\[.*?\]\]>", re.DOTALL)
_TAG_INSIDE = re.compile(rb"<\s*/?\s*(?:[A-Za-z_][\w.-]*:)?(?:item|entry)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Split:
    """A document cut around its items."""

    head: bytes
    items: tuple[bytes, ...]
    tail: bytes

    @cached_property
    def fingerprints(self) -> tuple[bytes, ...]:
        """One digest per item, in document order."""
        return tuple(hashlib.blake2b(item, digest_size=16).digest() for item in self.items)

    def without(self, known: Collection[bytes]) -> tuple[bytes, int]:
        """The document with only the items whose fingerprint is not in `known`, and how many
        items it keeps."""
        kept = [item for item, print_ in zip(self.items, self.fingerprints, strict=True)
                if print_ not in known]
        return self.head + b"".join(kept) + self.tail, len(kept)


def split_items(body: bytes) -> Split | None:
    """`body` cut around its items, or None whenever the cut could read differently."""
    if _REFUSED.search(body) or any(_TAG_INSIDE.search(hidden.group())
                                    for hidden in _HIDDEN.finditer(body)):
        return None
    spans = _item_spans(body)
    if not spans or any(body[end:start].strip() for (_, end), (start, _) in pairwise(spans)):
        return None
    return Split(body[:spans[0][0]], tuple(body[s:e] for s, e in spans), body[spans[-1][1]:])


def _item_spans(body: bytes) -> list[tuple[int, int]]:
    """(start, end) of each item, or [] for nested, self-closing, unclosed or mixed ones."""
    spans: list[tuple[int, int]] = []
    kinds: set[bytes] = set()
    opened: int | None = None
    for tag in _ITEM.finditer(body):
        closing, _, kind, _, self_closing = tag.groups()
        kinds.add(kind.lower())
        if self_closing or len(kinds) > 1 or bool(closing) == (opened is None):
            return []  # self-closing, RSS items and Atom entries mixed, nested or unopened
        if closing:
            assert opened is not None
            spans.append((opened, tag.end()))
            opened = None
        else:
            opened = tag.start()
    return spans if opened is None else []
