"""Dedupe keys: canonical URLs and titles that make one story of its copies."""

from __future__ import annotations

import pytest

from monitor.matching.dedupe import canonical_url, entry_key, normalise_title, story_keys
from monitor.models import Entry

CANONICAL = "https://news.example.com/world/story?id=7"


@pytest.mark.parametrize("url", [
    "https://news.example.com/world/story?id=7",
    "http://news.example.com/world/story?id=7",
    "https://www.news.example.com/world/story?id=7",
    "https://NEWS.Example.COM/world/story?id=7#comments",
    "https://news.example.com/world/story/?id=7",
    "https://news.example.com/world/story?utm_source=rss&id=7&utm_medium=feed",
    "https://news.example.com/world/story?id=7&fbclid=IwAR0abc&gclid=xyz",
    "https://news.example.com:443/world/story?id=7",
])
def test_variants_of_one_url_have_one_canonical_form(url: str) -> None:
    """Scheme, www., case of host, fragments, trailing slash and tracking parameters are ignored."""
    assert canonical_url(url) == CANONICAL


def test_different_pages_stay_different() -> None:
    """Real query parameters and paths still tell pages apart."""
    assert canonical_url("https://a.example/s?id=7") != canonical_url("https://a.example/s?id=8")
    assert canonical_url("https://a.example/a") != canonical_url("https://a.example/b")


def test_entry_key_prefers_guid_then_link_then_text() -> None:
    """An entry is known by its GUID, else its canonical link, else a hash of its text."""
    assert entry_key(Entry("f", "F", "g-1", "https://a.example/x", "T")) == "guid:g-1"
    assert entry_key(Entry("f", "F", None, "http://www.a.example/x?utm_source=x", "T")) == \
        "url:https://a.example/x"
    assert entry_key(Entry("f", "F", None, None, "T", "S")).startswith("hash:")


def test_story_keys_use_long_titles_only() -> None:
    """A specific title is a cross-feed key; a short generic one ("News") is not."""
    specific = Entry("f", "F", None, None, "Putin and Kim sign a defence pact in Pyongyang!")
    generic = Entry("f", "F", None, None, "News")
    assert story_keys(specific) == ["title:putin and kim sign a defence pact in pyongyang"]
    assert story_keys(generic) == []
    assert normalise_title("  Putin, KIM — sign… ") == "putin kim sign"
    assert story_keys(Entry("f", "F", None, None, "북한, 러시아와 군사협력 강화 합의")) != []
