"""Story clustering: whether two entries tell the same story, from their titles or wire copy.

Titles are compared after wire prefixes ("UPDATE 1-", "EXCLUSIVE:"), the outlet's or section's
suffix (" - Reuters", " | World", " (video)", ": live") are removed, thousands separators
(10,000 = 10000) and common abbreviations (US, U.S. = United States) are written one way, and
case, punctuation and spacing are folded; texts are compared as sets of character trigrams (which
works the same for spaced and unspaced scripts) by their Jaccard resemblance. Only stories
first seen within `WINDOW` are candidates, so two different Putin–Kim meetings a week apart stay
two stories even when their headlines look alike. Pure functions; the store applies them.
"""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

from monitor.matching.dedupe import normalise_title
from monitor.support.secrets import mask_url

WINDOW = timedelta(hours=48)
# Conservative on purpose: headlines about one pair of countries share many words, and merging
# two stories would hide one (a missed story is worse than a second alert). Measured: variants
# of one headline score 0.8-1.0; "… sign agreement on rail transport" against "… on fisheries"
# scores 0.64, "Putin meets Kim in Pyongyang" against "… in Vladivostok" 0.56.
TITLE_RESEMBLANCE = 0.8
COPY_RESEMBLANCE = 0.8
MIN_COPY = 80
_NUMBER = re.compile(r"\d+")
_OUTLET = re.compile(r"\s+[-–—|:]\s+[^-–—|:]{2,40}$")
_WIRE_PREFIX = re.compile(
    r"^\s*(?:(?:update|wrapup|corrected|refile|rpt)\s*\d*|exclusive|breaking(?: news)?|"
    r"analysis|factbox|explainer|insight|live|watch|video|photos?|opinion|update)"
    r"\s*(?:[-:–—|]\s*|\s+)(?=\S)", re.IGNORECASE)
_TAG_SUFFIX = re.compile(
    r"\s*(?:[(\[](?:video|photos?|live|update[sd]?|watch|opinion|analysis|\d+ photos)[)\]]|"
    r":\s*(?:live(?: updates)?|as it happened|report|reports|sources?))\s*$", re.IGNORECASE)
_THOUSANDS = re.compile(r"\b\d{1,3}(?:[,.\u00a0\u202f\u2009' ]\d{3})+(?![\d,.]\d)")
_ABBREVIATIONS = [  # case-sensitive: "US" is the country, "us" the pronoun
    (re.compile(r"\bU\.?S\.?A?\.?(?=\W|$)"), "United States"),
    (re.compile(r"\bU\.?K\.?(?=\W|$)"), "United Kingdom"),
    (re.compile(r"\bU\.?N\.?(?=\W|$)"), "United Nations"),
    (re.compile(r"\bN\.\s?Korea"), "North Korea"),
    (re.compile(r"\bS\.\s?Korea"), "South Korea"),
]


def _headline(title: str) -> str:
    """The headline without wire prefixes and outlet or section suffixes, numbers and
    abbreviations written one way."""
    text = title.strip()
    for _ in range(2):  # "UPDATE 2-EXCLUSIVE-…", "… (video) - Outlet"
        text = _WIRE_PREFIX.sub("", text)
        text = _TAG_SUFFIX.sub("", _OUTLET.sub("", text))
    text = _THOUSANDS.sub(lambda found: re.sub(r"\D", "", found.group()), text)
    for pattern, full in _ABBREVIATIONS:
        text = pattern.sub(full, text)
    return text


def outlet_name(name: str, url: str, outlet: str | None, link: str | None) -> str:
    """How a message names a feed that reported a story: its configured name, else the feed
    document's own title, else the host of the entry's link (or the feed's) — never a URL."""
    if name and name != mask_url(url) and "://" not in name:
        return name
    if outlet:
        return outlet
    for address in (link, url):
        try:
            host = urlsplit(address or "").hostname
        except ValueError:
            host = None
        if host:
            return host.removeprefix("www.")
    return "another feed"


def shingles(text: str, size: int = 3) -> frozenset[str]:
    """The character n-grams of `text` (spaces count as characters)."""
    return frozenset(text[i:i + size] for i in range(max(1, len(text) - size + 1)))


def resemblance(first: frozenset[str], second: frozenset[str]) -> float:
    """Jaccard resemblance of two shingle sets."""
    if not first or not second:
        return 0.0
    return len(first & second) / len(first | second)


def _numbers(text: str) -> tuple[str, ...]:
    return tuple(_NUMBER.findall(text))


def same_story(title: str, summary: str, other_title: str, other_summary: str) -> bool:
    """Whether two entries report the same story: alike headlines or the same wire copy.

    Headlines that carry different numbers ("accord 12" / "accord 13", "Day 3" / "Day 4") are
    different stories however alike the rest.
    """
    title, other_title = _headline(title), _headline(other_title)
    numbers, other_numbers = _numbers(title), _numbers(other_title)
    if numbers and other_numbers and numbers != other_numbers:
        return False
    if resemblance(shingles(normalise_title(title)), shingles(normalise_title(other_title))) \
            >= TITLE_RESEMBLANCE:
        return True
    if len(summary) < MIN_COPY or len(other_summary) < MIN_COPY:
        return False
    copy, other_copy = normalise_title(summary[:600]), normalise_title(other_summary[:600])
    return resemblance(shingles(copy), shingles(other_copy)) >= COPY_RESEMBLANCE
