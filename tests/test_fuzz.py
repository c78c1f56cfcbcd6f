"""Fuzzing (hypothesis): no feed bytes, entry text or config value makes a stage raise."""

from __future__ import annotations

import contextlib
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.config import Config, parse_config
from monitor.errors import ConfigError
from monitor.matching.matcher import compile_watchlists, match_entry
from monitor.models import Entry
from monitor.sources.parser import parse_feed
from tests.support.project import ROOT, render_feed

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
COMPILED = compile_watchlists(parse_config((ROOT / "config.yaml").read_text("utf-8")))
GOLDEN = render_feed("english.xml")

xml_fragments = st.sampled_from([
    "<rss version='2.0'>", "<channel>", "<item>", "</item>", "<title>", "</title>", "<link>",
    "javascript:x", "https://a.example/", "<![CDATA[", "]]>", "&amp;", "&#0;", "&#xD800;",
    "<!DOCTYPE x [<!ENTITY a 'b'>]>", "&a;", "<feed xmlns='http://www.w3.org/2005/Atom'>",
    "<entry>", "<description>", "Russia", "КНДР", "북한", "\x00", "\ufffe", "<?xml version='1.0'",
    " encoding='utf-16'?>", "{", '"version": "https://jsonfeed.org/version/1"', "[",
])


@FUZZ
@given(st.binary(max_size=4000))
def test_any_bytes_parse_to_entries_or_a_reason(body: bytes) -> None:
    """Random bytes never raise: they give entries or a one-line reason."""
    parsed = parse_feed(body, "https://fuzz.example/f")
    assert parsed.entries or parsed.error or parsed.title is not None


@FUZZ
@given(st.lists(xml_fragments | st.text(max_size=20), max_size=60))
def test_feed_like_documents_never_raise_and_links_stay_safe(parts: list[str]) -> None:
    """Feed-shaped noise parses without raising, and every link kept is http(s)."""
    parsed = parse_feed("".join(parts).encode("utf-8", "surrogatepass"), "https://fuzz.example/")
    for entry in parsed.entries:
        assert entry.link is None or entry.link.lower().startswith(("http://", "https://"))


@FUZZ
@given(st.integers(0, len(GOLDEN)), st.binary(max_size=50))
def test_corrupted_golden_feed_never_raises(cut: int, noise: bytes) -> None:
    """A real feed with random bytes spliced in parses or fails cleanly."""
    parse_feed(GOLDEN[:cut] + noise + GOLDEN[cut:], "https://fuzz.example/")


@FUZZ
@given(st.text(max_size=300), st.text(max_size=2000))
def test_any_text_matches_without_raising(title: str, summary: str) -> None:
    """Arbitrary Unicode (combining marks, surrogates, RTL, ß, İ…) matches without raising, and
    every hit points inside its field."""
    entry = Entry("f", "F", None, None, title, summary)
    for match in match_entry(entry, COMPILED):
        for hit in match.hits:
            assert hit.start < hit.end
        assert match.snippet


yaml_values: Any = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=20)


@FUZZ
@given(st.dictionaries(st.sampled_from(["database", "poll", "delivery", "health", "feeds",
                                        "notify", "entities", "watchlists", "other"]),
                       yaml_values, max_size=5))
def test_any_config_values_load_or_give_a_config_error(data: dict[str, Any]) -> None:
    """Any YAML values under the known keys either load or raise ConfigError, never a crash."""
    text = yaml.safe_dump(data, allow_unicode=True)
    outcome: object
    try:
        outcome = parse_config(text, "fuzz.yaml")
    except ConfigError as error:
        outcome = error
    assert isinstance(outcome, Config) or str(outcome).startswith("fuzz.yaml")


@FUZZ
@given(st.text(max_size=500))
def test_any_config_text_loads_or_gives_a_config_error(text: str) -> None:
    """Any text as a config file either loads or raises ConfigError."""
    with contextlib.suppress(ConfigError):
        parse_config(text, "fuzz.yaml")
