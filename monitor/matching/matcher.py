"""Matching: compiles every watchlist once, then tests an entry in one pass. Pure, no I/O.

How an entry is judged, in order:
1. Each field (title, summary, content) is NFKC-normalised; the fields are joined and case-folded,
   dashes become spaces, typographic quotes become `'`, `ё` becomes `е`.
2. One Aho-Corasick automaton holding every alias of every entity (plus one combined regular
   expression for `/regex/` aliases) finds all candidate occurrences in a single scan.
3. A candidate counts when its edges sit on word boundaries. Boundaries are Unicode-aware: a
   letter, digit or combining mark next to the alias breaks it, except at an edge written in a
   script without spaces or with attached particles (Han, Kana, Hangul, Thai), and except at an
   edge marked with `*` (`Росси*` takes every case ending, `*러시아` any prefix).
4. Per watchlist: hits outside its `fields` are dropped, hits inside one of its `ignore` phrases
   are dropped (so "Pyongyang naengmyeon" hides "Pyongyang"), a hit of any `none` entity vetoes.
5. A rule holds when every `all` entity and at least one `any` entity has a hit, no `none` entity
   has, and (with `within`) some single sentence or window of N words holds them all.
6. A watchlist matches when any of its rules holds; the match keeps its hits and a snippet.
"""

from __future__ import annotations

import bisect
import difflib
import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import ahocorasick

from monitor.errors import WatchlistError
from monitor.matching.watchlist import EntityAliases, RuleConfig, WatchlistConfig, WatchlistSource
from monitor.models import FIELDS, Entry, Hit, Match, Priority

_FOLD = {
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u30fb\u00b7-_", " "),
    **dict.fromkeys("\u2018\u2019\u201a\u201b\u02bc\u2032`\u00b4", "'"),
    **dict.fromkeys("\u201c\u201d\u201e\u201f\u00ab\u00bb", '"'),
    "ё": "е",
}
# A regex over the few characters to replace is several times faster than str.translate.
_FOLD_CHARS = re.compile("[" + re.escape("".join(_FOLD)) + "]")
_SPACELESS = re.compile(
    "[\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\ua960-\ua97f\uac00-\ud7af\uf900-\ufaff\u0e00-\u0e7f]"
)
_WORDS = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|\w+")
# Starts with a character class so the regex engine can skip ahead (a lookbehind first is 10x
# slower); `_ends_sentence` drops the dots of one-letter abbreviations such as "U.S.".
_SENTENCE_END = re.compile(r"[.!?…;]+(?=\s)|[。！？；]+|\n+|\s\|\s")
# Words written with a dot that does not end a sentence (folded: lower case, ё as е).
_ABBREVIATIONS_TEXT = (
    "тис тыс млн млрд трлн ім им св ул обл р рр г гг стор см др пр проф акад ген ген-полк "
    "полк подп чол жит грн руб коп км кв "
    "mr mrs ms dr gen lt col maj capt sgt gov sen rep st no nos vs approx est inc corp ltd co "
    "jan feb mar apr jun jul aug sep sept oct nov dec fig vol pp "
    "nr mio mrd bzw ca prof hr fr mme mlle sr sra srta dra gral jl kol letjen mayjen brigjen "
    "bpk")
_ABBREVIATIONS = frozenset(_ABBREVIATIONS_TEXT.split())
_LAST_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)?$")
_CLAUSE_END = re.compile(r"[;；]+(?=\s)|\s\|\s")
_HANGUL = re.compile("[\u1100-\u11ff\u3130-\u318f\ua960-\ua97f\uac00-\ud7af]")
# Korean particles (and the noun 측, "side") that may follow a whole-word `=` alias.
_PARTICLE = re.compile(
    r"(?:은|는|이|가|의|과|와|을|를|에|에서|에게|에는|에도|도|만|로|으로|과의|와의|과는|와는|"
    r"과도|와도|이나|나|이라|라|이며|며|측|측은|측의|측이|측과|측도|측에)(?!\w)")
_FIELD_GAP = "\n\n"
_MAX_LIST_GAP = 24
_LIST_PUNCTUATION = re.compile(r"[,،、，;；/·・]")
# Words that join or introduce list items, in the languages of the default watchlist.
_LIST_WORDS_TEXT = (
    "and or as well the a an its la le les l' d' el los las lo et ou y o e i и или а также "
    "і та й або також dan atau serta und oder sowie die der das den ve veya ile và hoặc cùng "
    "de do da dos das du des di del al en au aux à in na no nos nas em "
    "و أو ال 및 과 와 이나 나 랑 또는 그리고 와의 과의 "
    "和 及 与 與 或 以及 跟 や と および")
_LIST_WORDS = frozenset(_LIST_WORDS_TEXT.split())
# "…, Iran, North Korea and others": a trailing "and other(s)" or "etc." stands for one more
# item, so two names before it already make an enumeration.
_OTHERS_WORDS = (
    "other others otros otras otro otra autres autre outros outras outro andere anderen weitere "
    "weiteren другие других другими другим інші інших іншими diğer başka khác lain lainnya etc "
    "usw тощо dll وغيرها وغيرهما وغيره وسواها")
_OTHERS = re.compile(
    r"\s*[,、，·・]?\s*(?:"
    r"(?:(?:and|or|y|o|et|ou|e|und|oder|и|или|і|та|dan|ve|và|و)\s+)?"
    r"(?:" + "|".join(_OTHERS_WORDS.split()) + r"|и т\.\s?[дп])(?!\w)"
    r"|등(?:에|의|과|이|을|은|도|에서|에게|으로)?(?!\w)"
    r"|等|など|ほか)", re.IGNORECASE)
_SNIPPET = 240
_COMPILED: dict[str, Watchlists] = {}  # by the config's watchlist part, least recently used first
_COMPILED_KEPT = 4
_COMPILED_LOCK = threading.Lock()  # a reload compiles in a worker thread


@dataclass(frozen=True)
class _Term:
    key: str
    alias: str
    entity: str
    left_free: bool
    right_free: bool
    tail: re.Pattern[str] | None = None
    particles: bool = False


@dataclass(frozen=True)
class _Rule:
    all: tuple[str, ...]
    any: tuple[str, ...]
    none: tuple[str, ...]
    within: str | int | None
    fields: frozenset[str] = frozenset()  # empty: every field


@dataclass(frozen=True)
class _Watchlist:
    name: str
    tags: tuple[str, ...]
    priority: Priority
    fields: frozenset[str]
    rules: tuple[_Rule, ...]
    none: tuple[str, ...]
    ignore: str | None
    lists_of: tuple[str, ...] = ()
    lists_min: int = 3
    pairs_with: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Watchlists:
    """Every watchlist of a config, compiled into one automaton and one regex."""

    automaton: Any
    terms: tuple[_Term, ...]
    regex_terms: tuple[tuple[re.Pattern[str], str, str], ...]
    watchlists: tuple[_Watchlist, ...]
    display: dict[str, str]


def _unify(folded: str) -> str:
    """Dashes to spaces, typographic quotes to plain ones, ё to е (lengths unchanged)."""
    return _FOLD_CHARS.sub(lambda found: _FOLD[found.group()], folded)


def fold(text: str) -> tuple[str, list[int] | None]:
    """Case-folded matching text, and where each of its characters came from (None: same place).

    Turkish `İ` folds to plain `i` (Python gives `i` plus a combining dot, which breaks words).
    """
    folded = text.casefold()
    if len(folded) == len(text):
        return _unify(folded), None
    pieces, origin = [], []
    for index, char in enumerate(text):
        piece = "i" if char == "İ" else char.casefold()
        pieces.append(piece)
        origin.extend([index] * len(piece))
    return _unify("".join(pieces)), origin


def _is_word(char: str) -> bool:
    return char.isalnum() or unicodedata.category(char)[0] == "M"


def _parse_term(alias: str, entity: str, loc: tuple[str | int, ...]) -> _Term | str:
    """A literal or wildcard alias as a `_Term`; a `/regex/` alias as its pattern string."""
    text = unicodedata.normalize("NFKC", str(alias)).strip()
    if len(text) > 2 and text.startswith("/") and text.endswith("/"):
        pattern = text[1:-1]
        try:
            re.compile(pattern)
        except re.error as error:
            raise WatchlistError(f"alias {alias!r} is not a valid regular expression: {error}",
                                 loc) from None
        return pattern
    strict = text.startswith("=")
    text = text.removeprefix("=")
    left_free, right_free = text.startswith("*"), text.endswith("*")
    head, *rest = fold(text.strip("*"))[0].split("*")
    if not head.strip() or any(not part.strip() for part in rest):
        raise WatchlistError(f"alias {alias!r} is empty or has `**` in it", loc)
    # A `*` inside an alias ("Северн* Коре*") is checked only where the automaton found its head.
    tail = None
    if rest:
        tail = re.compile("".join(r"\w*" + re.escape(part) for part in rest))
    last = (rest or [head])[-1]
    if strict:
        return _Term(key=head, alias=str(alias), entity=entity, tail=tail, left_free=left_free,
                     right_free=right_free, particles=bool(_HANGUL.match(last[-1])))
    return _Term(
        key=head, alias=str(alias), entity=entity, tail=tail,
        left_free=left_free or not _is_word(head[0]) or bool(_SPACELESS.match(head[0])),
        right_free=right_free or not _is_word(last[-1]) or bool(_SPACELESS.match(last[-1])),
    )


def _flatten(aliases: EntityAliases) -> list[str]:
    if isinstance(aliases, dict):
        return [alias for group in aliases.values() for alias in group]
    return list(aliases)


class _Builder:
    """Collects terms and regexes while watchlists compile."""

    def __init__(self) -> None:
        self.terms: list[_Term] = []
        self.regexes: list[tuple[str, str, str]] = []
        self.display: dict[str, str] = {}

    def add_entity(self, entity: str, name: str, aliases: Iterable[str],
                   loc: tuple[str | int, ...]) -> None:
        self.display[entity] = name
        count = 0
        for index, alias in enumerate(aliases):
            parsed = _parse_term(alias, entity, (*loc, index))
            if isinstance(parsed, str):
                self.regexes.append((parsed, str(alias), entity))
            else:
                self.terms.append(parsed)
            count += 1
        if not count:
            raise WatchlistError(f"entity {name!r} has no aliases", loc)

    def build(self, watchlists: tuple[_Watchlist, ...]) -> Watchlists:
        automaton = ahocorasick.Automaton(ahocorasick.STORE_ANY)
        for term in self.terms:
            if automaton.exists(term.key):
                automaton.get(term.key).append(term)
            else:
                automaton.add_word(term.key, [term])
        if self.terms:
            automaton.make_automaton()
        # Each regex is scanned on its own: one alternation would hide overlapping matches.
        regexes = tuple((re.compile(p, re.IGNORECASE), alias, entity)
                        for p, alias, entity in self.regexes)
        return Watchlists(automaton if self.terms else None, tuple(self.terms), regexes,
                          watchlists, self.display)


def _resolve(names: Sequence[str], local: dict[str, str], known: dict[str, str],
             loc: tuple[str | int, ...]) -> tuple[str, ...]:
    resolved = []
    for index, name in enumerate(names):
        entity = local.get(name) or known.get(name)
        if entity is None:
            close = difflib.get_close_matches(name, [*local, *known], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise WatchlistError(f"unknown entity {name!r}{hint}", (*loc, index))
        resolved.append(entity)
    return tuple(resolved)


def _compile_watchlist(index: int, spec: WatchlistConfig, builder: _Builder,
                       known: dict[str, str]) -> _Watchlist:
    loc: tuple[str | int, ...] = ("watchlists", index)
    local = {}
    for name, aliases in spec.entities.items():
        local[name] = f"{spec.name}/{name}"
        builder.add_entity(local[name], name, _flatten(aliases), (*loc, "entities", name))
    ignore = None
    if spec.ignore:
        ignore = f"{spec.name}/!ignore"
        builder.add_entity(ignore, "ignore", spec.ignore, (*loc, "ignore"))

    def rule(number: int, rule: RuleConfig) -> _Rule:
        here = (*loc, "rules", number)
        return _Rule(all=_resolve(rule.all, local, known, (*here, "all")),
                     any=_resolve(rule.any, local, known, (*here, "any")),
                     none=_resolve(rule.none, local, known, (*here, "none")), within=rule.within,
                     fields=frozenset(rule.fields))

    lists = spec.lists
    return _Watchlist(
        name=spec.name, tags=spec.tags, priority=spec.priority, fields=frozenset(spec.fields),
        rules=tuple(rule(n, r) for n, r in enumerate(spec.rules)),
        none=_resolve(spec.none, local, known, (*loc, "none")), ignore=ignore,
        lists_of=_resolve(lists.of, local, known, (*loc, "lists", "of")) if lists else (),
        lists_min=lists.min_items if lists else 3,
        pairs_with=frozenset(_resolve(lists.pairs_with, local, known, (*loc, "lists", "pairs_with"))
                             if lists else ()),
    )


def compile_watchlists(config: WatchlistSource) -> Watchlists:
    """Compile all entities and watchlists of `config`; raises `WatchlistError` naming the term.

    A config is compiled once: validating it on load and starting or reloading the daemon with
    it share one result (compiled watchlists are immutable)."""
    key = repr((config.entities, config.watchlists))
    with _COMPILED_LOCK:
        compiled = _COMPILED.pop(key, None)
        if compiled is None:
            compiled = _compile(config)
        _COMPILED[key] = compiled  # most recently used last
        while len(_COMPILED) > _COMPILED_KEPT:
            del _COMPILED[next(iter(_COMPILED))]
    return compiled


def _compile(config: WatchlistSource) -> Watchlists:
    builder = _Builder()
    known = {}
    for name, aliases in config.entities.items():
        known[name] = name
        builder.add_entity(name, name, _flatten(aliases), ("entities", name))
    compiled = tuple(_compile_watchlist(i, w, builder, known)
                     for i, w in enumerate(config.watchlists))
    return builder.build(compiled)


def _ends_sentence(text: str, index: int) -> bool:
    """False for the dot after a lone letter ("U.S. officials", "Kim J. Un") or after a
    common abbreviation ("11 тис. військових", "Gen. Kim", "ім. Шевченка")."""
    if text[index] != "." or index == 0 or not text[index - 1].isalnum():
        return True
    if index < 2 or not text[index - 2].isalnum():
        return False
    word = _LAST_WORD.search(text, max(0, index - 12), index)
    return word is None or word.group() not in _ABBREVIATIONS


@dataclass
class _Text:
    """An entry's fields joined for one scan, with lazily built position indexes."""

    display: str
    folded: str
    origin: list[int] | None
    field_starts: list[int]
    field_names: list[str]
    _words: list[int] | None = None
    _sentences: list[int] | None = None

    def field_at(self, position: int) -> str:
        return self.field_names[bisect.bisect_right(self.field_starts, position) - 1]

    def to_display(self, start: int, end: int) -> tuple[int, int]:
        if self.origin is None:
            return start, end
        return self.origin[start], self.origin[end - 1] + 1

    def word_index(self, position: int) -> int:
        if self._words is None:
            self._words = [m.start() for m in _WORDS.finditer(self.folded)]
        return bisect.bisect_right(self._words, position)

    def sentence_index(self, position: int) -> int:
        if self._sentences is None:
            # A headline is one sentence however it is punctuated ("… into orbit. Moscow
            # probably helped", "…"), but for `;` and ` | `, which join separate items.
            text = self.folded
            headline = 0
            if self.field_names[:1] == ["title"]:
                headline = self.field_starts[1] - len(_FIELD_GAP) \
                    if len(self.field_starts) > 1 else len(text)
            self._sentences = [m.start() for m in _CLAUSE_END.finditer(text, 0, headline)]
            self._sentences += [m.start() for m in _SENTENCE_END.finditer(text, headline)
                                if _ends_sentence(text, m.start())]
        return bisect.bisect_right(self._sentences, position)


def _prepare(entry: Entry) -> _Text:
    parts, starts, names, offset = [], [], [], 0
    for name in FIELDS:
        value = unicodedata.normalize("NFKC", entry.text(name))
        if not value:
            continue
        starts.append(offset)
        names.append(name)
        parts.append(value)
        offset += len(value) + len(_FIELD_GAP)
    display = _FIELD_GAP.join(parts)
    folded, origin = fold(display)
    return _Text(display, folded, origin, starts, names)


def _on_boundaries(text: str, start: int, end: int, term: _Term) -> bool:
    if not term.left_free and start > 0 and _is_word(text[start - 1]):
        return False
    if term.right_free or end >= len(text) or not _is_word(text[end]):
        return True
    return term.particles and _PARTICLE.match(text, end) is not None


def _word_end(text: str, end: int, term: _Term) -> int:
    """Where the word a `*`-ended alias stopped in really ends, so the highlight covers it."""
    if not term.right_free or _SPACELESS.match(text[end - 1]):
        return end
    while end < len(text) and _is_word(text[end]) and not _SPACELESS.match(text[end]):
        end += 1
    return end


def _scan(text: _Text, compiled: Watchlists) -> list[tuple[str, str, int, int]]:
    """(entity, alias, start, end) in folded coordinates for every alias occurrence."""
    found = []
    folded = text.folded
    if compiled.automaton is not None:
        terms: list[_Term]
        for last, terms in compiled.automaton.iter(folded):
            for term in terms:
                start, end = last - len(term.key) + 1, last + 1
                if term.tail is not None:
                    rest = term.tail.match(folded, end)
                    if rest is None:
                        continue
                    end = rest.end()
                if _on_boundaries(folded, start, end, term):
                    if term.right_free:
                        end = _word_end(folded, end, term)
                    found.append((term.entity, term.alias, start, end))
    for pattern, alias, entity in compiled.regex_terms:
        found.extend((entity, alias, hit.start(), hit.end())
                     for hit in pattern.finditer(folded) if hit.end() > hit.start())
    return found


def _satisfying(hits: Sequence[Hit], rule: _Rule, place: dict[Hit, int],
                span: int) -> list[Hit] | None:
    """Hits of one window (places at most `span` apart) that hold the rule, or None."""
    wanted = [h for h in hits if h.entity in rule.all or h.entity in rule.any]
    wanted.sort(key=lambda h: place[h])
    counts: dict[str, int] = {}
    left = 0
    for right, hit in enumerate(wanted):
        counts[hit.entity] = counts.get(hit.entity, 0) + 1
        while place[hit] - place[wanted[left]] > span:
            counts[wanted[left].entity] -= 1
            left += 1
        present = {e for e, n in counts.items() if n}
        if all(e in present for e in rule.all) and (
                not rule.any or any(e in present for e in rule.any)):
            return wanted[left:right + 1]
    return None


def _holds(rule: _Rule, hits: Sequence[Hit], text: _Text,
           folded_start: dict[Hit, int]) -> list[Hit] | None:
    if rule.fields:
        hits = [hit for hit in hits if hit.field in rule.fields]
    entities = {hit.entity for hit in hits}
    if any(e in entities for e in rule.none) or not all(e in entities for e in rule.all):
        return None
    if rule.any and not any(e in entities for e in rule.any):
        return None
    if rule.within is None:
        return [h for h in hits if h.entity in rule.all or h.entity in rule.any]
    if rule.within == "sentence":
        place = {h: text.sentence_index(folded_start[h]) for h in hits}
        return _satisfying(hits, rule, place, 0)
    # Fields never share a window: each field's words are numbered far from the others'.
    place = {h: text.word_index(folded_start[h]) + FIELDS.index(h.field) * 10**7 for h in hits}
    return _satisfying(hits, rule, place, int(rule.within))


def _snippet(text: _Text, hits: Sequence[Hit]) -> tuple[str, str, tuple[tuple[int, int], ...]]:
    """About `_SNIPPET` characters around the first hit of the richest field, with highlights."""
    by_field = {f: [h for h in hits if h.field == f] for f in ("summary", "content", "title")}
    field = max(by_field, key=lambda f: (len({h.entity for h in by_field[f]}), f == "summary"))
    chosen = sorted(by_field[field], key=lambda h: h.start)
    field_start = text.field_starts[text.field_names.index(field)]
    end_of_field = text.display.find(_FIELD_GAP, field_start)
    body = text.display[field_start:end_of_field if end_of_field >= 0 else None]
    first = chosen[0].start - field_start
    begin = max(0, min(first - _SNIPPET // 3, len(body) - _SNIPPET))
    if begin:
        space = body.find(" ", begin, first)
        begin = space + 1 if space >= 0 else begin
    finish = min(len(body), begin + _SNIPPET)
    if finish < len(body):
        space = body.rfind(" ", max(begin, chosen[0].end - field_start), finish)
        finish = space if space > 0 else finish
    prefix = "…" if begin else ""
    spans, last = [], -1
    for hit in chosen:
        start, end = hit.start - field_start - begin, hit.end - field_start - begin
        if start >= last and end <= finish - begin:
            spans.append((start + len(prefix), end + len(prefix)))
            last = end
    suffix = "…" if finish < len(body) else ""
    return prefix + body[begin:finish] + suffix, field, tuple(spans)


def _is_list_gap(gap: str) -> bool:
    """Whether the text between two names only separates list items ("," "and" "、" "및"…)."""
    if not gap or len(gap) > _MAX_LIST_GAP or "\n" in gap:  # a list never spans fields
        return False
    folded = gap.casefold()
    # A suffix after an apostrophe (Turkish "Rusya'ya") belongs to the name before it.
    words = [t for t in _LIST_PUNCTUATION.sub(" ", folded).split() if not t.startswith("'")]
    if not all(word in _LIST_WORDS for word in words):
        return False
    return bool(words) or _LIST_PUNCTUATION.search(folded) is not None


def _is_joint(run: list[list[Hit]], pairs_with: frozenset[str]) -> bool:
    """Whether `run` is two names of which exactly one is of a `pairs_with` entity."""
    if len(run) != 2:
        return False
    paired = [any(h.entity in pairs_with for h in item) for item in run]
    return paired[0] != paired[1]


def _listed(hits: Sequence[Hit], text: _Text, minimum: int,
            pairs_with: frozenset[str] = frozenset()) -> set[Hit]:
    """Hits that stand in an enumeration of at least `minimum` names, or in a joint pair."""
    items: list[list[Hit]] = []  # overlapping hits ("North Korea" / "Korea") form one item
    for hit in sorted(hits, key=lambda h: (h.start, -h.end)):
        if items and hit.start < max(h.end for h in items[-1]):
            items[-1].append(hit)
        else:
            items.append([hit])
    listed: set[Hit] = set()
    run: list[list[Hit]] = []
    for item in [*items, []]:
        if run and item:
            gap = text.display[max(h.end for h in run[-1]):item[0].start]
            if _is_list_gap(gap):
                run.append(item)
                continue
        if len(run) >= minimum or _is_joint(run, pairs_with) or (
                len(run) == minimum - 1 >= 2 and _OTHERS.match(
                    text.display, max(h.end for h in run[-1]))):
            listed.update(h for group in run for h in group)
        run = [item] if item else []
    return listed


def _hits(text: _Text, found: list[tuple[str, str, int, int]]) -> tuple[list[Hit], dict[Hit, int]]:
    hits, starts = [], {}
    for entity, alias, start, end in dict.fromkeys(found):  # an alias listed twice counts once
        display_start, display_end = text.to_display(start, end)
        hit = Hit(entity, alias, text.display[display_start:display_end],
                  text.field_at(display_start), display_start, display_end)
        hits.append(hit)
        starts[hit] = start
    return hits, starts


def _judge(watchlist: _Watchlist, hits: list[Hit], text: _Text, starts: dict[Hit, int],
           display: dict[str, str]) -> Match | None:
    ignored = [h for h in hits if h.entity == watchlist.ignore]
    own = [h for h in hits if h.field in watchlist.fields and h.entity != watchlist.ignore]
    if watchlist.lists_of:  # before `ignore`, so "Belarus" counts as an item though it hides "Rus"
        listed = _listed([h for h in own if h.entity in watchlist.lists_of], text,
                         watchlist.lists_min, watchlist.pairs_with)
        own = [h for h in own if h not in listed]
    own = [h for h in own if not any(i.start <= h.start and h.end <= i.end for i in ignored)]
    if any(h.entity in watchlist.none for h in own):
        return None
    for rule in watchlist.rules:
        held = _holds(rule, own, text, starts)
        if held:
            explained = tuple(Hit(display[h.entity], h.alias, h.found, h.field, h.start, h.end)
                              for h in sorted(held, key=lambda h: h.start))
            snippet, field, spans = _snippet(text, held)
            return Match(watchlist.name, watchlist.tags, watchlist.priority, explained,
                         snippet, field, spans)
    return None


def match_entry(entry: Entry, compiled: Watchlists) -> list[Match]:
    """Every watchlist that `entry` satisfies, each with the hits and snippet that explain it."""
    text = _prepare(entry)
    if not text.display:
        return []
    hits, starts = _hits(text, _scan(text, compiled))
    if not hits:
        return []
    matches = (_judge(w, hits, text, starts, compiled.display) for w in compiled.watchlists)
    return [m for m in matches if m is not None]
