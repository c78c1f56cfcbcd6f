"""Matcher semantics: normalisation, boundaries per script, wildcards, regex, rules, explanation."""

from __future__ import annotations

import pytest

from monitor.config import parse_config
from monitor.matching.matcher import Watchlists, compile_watchlists, fold, match_entry
from monitor.models import Entry

CONFIG = """
entities:
  russia: [Russia, Russian*, Росси*, Москв*, 러시아, ロシア, 俄罗斯, Rusia]
  dprk: [North Korea*, DPRK, КНДР, Северн* Коре*, 북한, 北朝鮮, 朝鲜, Korea Utara, "*조선"]
  kim: [Kim Jong Un]
  donetsk: [Donetsk, ДНР]
  year: ['/\\b(19|20)\\d\\d\\b/']
watchlists:
  - name: pair
    ignore: [Pyongyang naengmyeon]
    rules:
      - all: [russia, dprk]
  - name: sentence
    rules:
      - all: [russia, dprk]
        within: sentence
  - name: near
    rules:
      - all: [russia, dprk]
        within: 5
  - name: titles
    fields: [title]
    rules:
      - all: [russia, dprk]
  - name: leader
    none: [donetsk]
    rules:
      - any: [kim]
  - name: dated
    rules:
      - all: [year, dprk]
"""


@pytest.fixture(scope="module")
def compiled() -> Watchlists:
    return compile_watchlists(parse_config(CONFIG))


def matched(compiled: Watchlists, title: str, summary: str = "") -> set[str]:
    entry = Entry("f", "Feed", None, None, title, summary)
    return {m.watchlist for m in match_entry(entry, compiled)}


# (title, summary, watchlists that must match, watchlists that must not)
CASES = [
    ("Russia and North Korea sign treaty", "", {"pair", "sentence", "near", "titles"}, set()),
    ("RUSSIA AND NORTH KOREA", "", {"pair"}, set()),
    ("Ｒｕｓｓｉａ ａｎｄ ＤＰＲＫ", "", {"pair"}, set()),  # full-width letters
    ("Russian envoy lands", "North Korean officials met him.", {"pair"}, {"sentence", "titles"}),
    ("Russia said.", "Far away, many words later, the DPRK replied.", {"pair"}, {"near"}),
    ("Russia, then one two three four five six seven, DPRK", "", {"pair", "sentence"},
     {"near"}),
    ("Russia and DPRKS", "", set(), {"pair"}),  # DPRK must stand alone
    ("Prussia and North Korea", "", set(), {"pair"}),  # Russia inside Prussia is no hit
    ("Россия и КНДР", "", {"pair"}, set()),
    ("Лавров: Северной Кореи и России", "", {"pair"}, set()),  # wildcards take case endings
    ("Северную Корею посетили из Москвы", "", {"pair"}, set()),
    ("북한은 러시아의 요청에", "", {"pair"}, set()),  # Korean particles
    ("북한군, 러시아에 파병", "", {"pair"}, set()),
    ("北朝鮮とロシアが合意", "", {"pair"}, set()),  # Japanese without spaces
    ("朝鲜与俄罗斯签署条约", "", {"pair"}, set()),  # Chinese without spaces
    ("Rusia meratifikasi perjanjian dengan Korea Utara", "", {"pair"}, set()),
    ("북조선과 러시아", "", {"pair"}, set()),  # "*조선": any prefix
    ("Russian tourists love Pyongyang naengmyeon", "", set(), {"pair"}),  # ignored phrase
    ("Kim Jong-un visits factory", "", {"leader"}, set()),  # dash equals space
    ("Kim Jong Un and the ДНР", "", set(), {"leader"}),  # none vetoes
    ("In 2024 the DPRK launched", "", {"dated"}, set()),  # regex alias
    ("In 12024 the DPRK launched", "", set(), {"dated"}),
]


@pytest.mark.parametrize(("title", "summary", "yes", "no"), CASES)
def test_rule_semantics(compiled: Watchlists, title: str, summary: str, yes: set[str],
                        no: set[str]) -> None:
    """Each case matches exactly the watchlists its rule semantics say."""
    found = matched(compiled, title, summary)
    assert yes <= found, found
    assert not (no & found), found


def test_match_explains_itself(compiled: Watchlists) -> None:
    """A match names the terms per entity, the fields, and highlights them in a snippet."""
    entry = Entry("f", "Feed", None, None, "Talks in Moscow",
                  "Officials of Russia met the DPRK delegation on Tuesday.")
    match = next(m for m in match_entry(entry, compiled) if m.watchlist == "sentence")
    assert match.terms_by_entity() == {"russia": ["Russia"], "dprk": ["DPRK"]}
    assert match.snippet_field == "summary"
    assert "**Russia**" in match.highlighted_snippet()
    assert "**DPRK**" in match.highlighted_snippet()


def test_snippet_of_long_text_is_short_and_centred(compiled: Watchlists) -> None:
    """The snippet of a long article is about 240 characters around the hits, with ellipses."""
    summary = "Filler words here. " * 100 + "Russia and the DPRK agreed. " + "More filler. " * 100
    entry = Entry("f", "Feed", None, None, "News", summary)
    match = next(m for m in match_entry(entry, compiled) if m.watchlist == "pair")
    assert len(match.snippet) <= 260
    assert match.snippet.startswith("…")
    assert match.snippet.endswith("…")
    assert "**Russia** and the **DPRK**" in match.highlighted_snippet()


def test_fold_keeps_positions_when_case_folding_changes_length() -> None:
    """ß folds to ss; the position map still points hits at the original characters."""
    folded, origin = fold("Straße Russia")
    assert folded == "strasse russia"
    assert origin is not None
    assert origin[folded.index("russia")] == "Straße Russia".index("Russia")


def test_highlight_survives_length_changing_folds(compiled: Watchlists) -> None:
    """After a ß earlier in the text, the highlighted words are still exactly the aliases."""
    entry = Entry("f", "Feed", None, None, "Großstraße: Russia and DPRK")
    match = next(m for m in match_entry(entry, compiled) if m.watchlist == "pair")
    assert {h.found for h in match.hits} == {"Russia", "DPRK"}


def test_empty_and_huge_entries_are_fine(compiled: Watchlists) -> None:
    """An empty entry matches nothing; a 20,000-character entry with many hits still works."""
    assert match_entry(Entry("f", "F", None, None, ""), compiled) == []
    huge = "Russia DPRK " * 1700
    assert matched(compiled, "x", huge) >= {"pair", "sentence", "near"}


LISTS_CONFIG = """
entities:
  russia: [Russia, Rusya*, 러시아, 俄罗斯, =러, "*روسيا"]
  dprk: [North Korea, Kuzey Kore*, 북한, 朝鲜, =조선, =북, "*كوريا الشمالية"]
  other: [Iran, China, Çin*, İran*, 중국, 이란, 伊朗, 中国, "*إيران"]
watchlists:
  - name: w
    ignore: [조선 시대]
    lists: {of: [russia, dprk, other]}
    rules:
      - all: [russia, dprk]
        within: sentence
"""

# (text, whether watchlist `w` matches)
LIST_AND_WORD_CASES = [
    ("Sanctions on Iran, Russia, North Korea and China.", False),
    ("Sanctions on Iran, Russia and North Korea.", False),
    ("Russia and North Korea signed a treaty.", True),
    ("Russia and North Korea, with China watching, signed.", True),  # 2 listed, then words
    ("Rusya'ya, İran'a ve Kuzey Kore'ye yaptırım", False),  # Turkish suffixes after '
    ("RUSYA VE KUZEY KORE ANLAŞTI", True),  # Turkish capitals fold right
    ("중국, 러시아, 북한에 대한 제재", False),
    ("러시아와 북한이 조약을 맺었다", True),
    ("伊朗、俄罗斯和朝鲜受到制裁", False),
    ("朝鲜与俄罗斯签署条约", True),
    ("عقوبات على روسيا وإيران وكوريا الشمالية", False),
    ("روسيا وكوريا الشمالية توقعان معاهدة", True),
    ("조선은 러시아와 협력한다", True),  # `=조선` with a particle
    ("조선소에서 러시아 선박 수리", False),  # 조선소 is a shipyard, not 조선
    ("조선 시대 러시아 지도", False),  # ignored phrase
    ("북은 러와 합의했다", True),  # one-syllable abbreviations as whole words with particles
    ("대북 제재와 러시아", False),  # 대북: 북 inside a word
    # Two names and "and others" / "etc." stand for a list of three.
    ("They disagree on Iran, North Korea and other issues, Russia said.", False),
    ("Russia, North Korea and others were sanctioned.", False),
    ("Russia, North Korea, etc. were sanctioned.", False),
    ("러시아·북한 등에 대한 제재", False),
    ("俄罗斯、朝鲜等国受到制裁", False),
    ("Russia and North Korea and their allies.", True),  # no "other": still a pair
]


@pytest.fixture(scope="module")
def lists_compiled() -> Watchlists:
    return compile_watchlists(parse_config(LISTS_CONFIG))


@pytest.mark.parametrize(("text", "expected"), LIST_AND_WORD_CASES)
def test_lists_and_whole_word_aliases(lists_compiled: Watchlists, text: str,
                                      expected: bool) -> None:
    """Enumerations do not count, `=` aliases stand as whole words (Korean particles allowed)."""
    assert (matched(lists_compiled, text) == {"w"}) is expected


def test_overlapping_regex_aliases_both_count() -> None:
    """Two regex aliases matching at the same place both produce hits (no alternation masking)."""
    compiled = compile_watchlists(parse_config("""
entities: {a: ['/俄(?!亥)/'], pair: ['/俄朝/']}
watchlists:
  - {name: w, rules: [{any: [pair]}]}
  - {name: v, rules: [{any: [a]}]}
"""))
    assert matched(compiled, "俄朝关系") == {"w", "v"}


@pytest.mark.parametrize(("text", "expected"), [
    ("Russia's Putin, North Korea's Kim and China's Xi", True),  # possessives are no list
    ("Russia North Korea China", True),  # bare spaces are no list separator
    ("en Chine, en Russie, en Iran et en Corée du Nord", False),  # French prepositions
])
def test_list_separators_need_a_real_separator(text: str, expected: bool) -> None:
    """Only commas and list words join list items; possessives and bare spaces do not."""
    compiled = compile_watchlists(parse_config("""
entities:
  russia: [Russia*, Russie]
  dprk: [North Korea*, Corée du Nord]
  other: [China*, Chine, Iran]
watchlists:
  - name: w
    lists: {of: [russia, dprk, other]}
    rules: [{all: [russia, dprk]}]
"""))
    assert (matched(compiled, text) == {"w"}) is expected


def test_lists_see_names_that_ignore_hides() -> None:
    """An item hidden by `ignore` (Belarus hides its "Russia") still counts in a list."""
    compiled = compile_watchlists(parse_config("""
entities:
  russia: [俄罗斯]
  dprk: [朝鲜]
  other: [白俄罗斯, 伊朗]
watchlists:
  - name: w
    ignore: [白俄罗斯]
    lists: {of: [russia, dprk, other]}
    rules: [{all: [russia, dprk]}]
"""))
    assert matched(compiled, "伊朗、白俄罗斯和朝鲜受到制裁，俄罗斯表示反对") == set()
    assert matched(compiled, "白俄罗斯总统访问朝鲜") == set()
    assert matched(compiled, "朝鲜与俄罗斯签署条约") == {"w"}


def test_a_config_is_compiled_once_and_an_edit_compiles_anew() -> None:
    """Loading a config and starting with it share one compiled result; a changed alias gets
    a new one that finds the new alias."""
    text = """
entities: {a: [Alpha]}
watchlists:
  - {name: w, rules: [{any: [a]}]}
"""
    first = compile_watchlists(parse_config(text))
    assert compile_watchlists(parse_config(text)) is first
    edited = compile_watchlists(parse_config(text.replace("Alpha", "Beta")))
    assert edited is not first
    assert matched(edited, "Beta") == {"w"} and matched(first, "Beta") == set()
