"""Story clustering: whether two entries tell the same story, from their titles or wire copy.

Titles are compared after the outlet's suffix (" - Reuters", " | BBC News") is removed and case,
punctuation and spacing are folded; texts are compared as sets of character trigrams (which
works the same for spaced and unspaced scripts) by their Jaccard resemblance. Only stories
first seen within `WINDOW` are candidates, so two different Putin–Kim meetings a week apart stay
two stories even when their headlines look alike. Pure functions; the store applies them.
"""

from __future__ import annotations

import re
from datetime import timedelta

from monitor.dedupe import normalise_title

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


def story_title(title: str) -> str:
    """The headline without its outlet suffix, case and punctuation folded."""
    return normalise_title(_OUTLET.sub("", title.strip()))


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
    numbers, other_numbers = _numbers(title), _numbers(other_title)
    if numbers and other_numbers and numbers != other_numbers:
        return False
    if resemblance(shingles(story_title(title)), shingles(story_title(other_title))) \
            >= TITLE_RESEMBLANCE:
        return True
    if len(summary) < MIN_COPY or len(other_summary) < MIN_COPY:
        return False
    copy, other_copy = normalise_title(summary[:600]), normalise_title(other_summary[:600])
    return resemblance(shingles(copy), shingles(other_copy)) >= COPY_RESEMBLANCE
