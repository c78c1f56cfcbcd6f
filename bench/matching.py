"""Matching throughput: the default watchlist over generated entries, against two baselines.

    python -m bench.matching [--entries 50000] [--config config.yaml] [--json FILE]

Entries are generated from the labelled cases in tests/data/match_cases.yaml (14 languages),
each varied with filler sentences and numbers so no two are alike. Measured in the same run:
- monitor's matcher (one Aho-Corasick pass per entry, then the rules);
- baseline "keyword loop": `alias in text` for every literal alias (what keyword filters do);
- baseline "one regex": one alternation of every literal alias with `\\b` boundaries.
The baselines find terms only (no rules), so they do strictly less work than the matcher.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from monitor.config import load_config
from monitor.matching.matcher import Watchlists, compile_watchlists, fold, match_entry
from monitor.models import Entry

ROOT = Path(__file__).resolve().parent.parent
FILLER = [
    "Officials declined to comment further on Tuesday.",
    "Рынки отреагировали сдержанно, сообщили аналитики.",
    "관계자들은 추가 논의가 필요하다고 밝혔다.",
    "会談の詳細は明らかにされていない。",
    "分析人士表示，局势仍不明朗。",
    "Para analis menilai situasi masih belum jelas.",
    "Les détails n'ont pas été communiqués.",
    "Die Gespräche sollen im nächsten Monat fortgesetzt werden.",
]


def generate_entries(count: int, seed: int = 7) -> list[Entry]:
    """`count` entries built from the labelled cases with random filler and numbers."""
    cases = yaml.safe_load((ROOT / "tests" / "data" / "match_cases.yaml").read_text("utf-8"))
    rng = random.Random(seed)
    entries = []
    for index in range(count):
        case = cases[index % len(cases)]
        filler = " ".join(rng.sample(FILLER, 3))
        summary = f"{case['summary']} {filler} ({rng.randint(1, 99999)})"
        entries.append(Entry("bench", "bench", f"g{index}", None, case["title"], summary))
    return entries


def _literal_aliases(compiled: Watchlists) -> list[str]:
    return sorted({term.key for term in compiled.terms})


def _time(label: str, work: Callable[[Entry], object], entries: Sequence[Entry]) -> float:
    started = time.perf_counter()
    for entry in entries:
        work(entry)
    rate = len(entries) / (time.perf_counter() - started)
    print(f"{label:34} {rate:>10,.0f} entries/s")
    return rate


def main() -> None:
    """Run the benchmark and print entries per second and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    compiled = compile_watchlists(load_config(args.config))
    entries = generate_entries(args.entries)
    aliases = _literal_aliases(compiled)
    alternation = re.compile(r"\b(?:" + "|".join(map(re.escape, aliases)) + r")\b")
    print(f"{len(entries):,} entries, {len(aliases)} literal aliases, "
          f"{len(compiled.regex_terms)} regex aliases, one process (one core)")

    def keyword_loop(entry: Entry) -> list[str]:
        text = fold(f"{entry.title}\n{entry.summary}")[0]
        return [alias for alias in aliases if alias in text]

    def one_regex(entry: Entry) -> list[str]:
        return alternation.findall(fold(f"{entry.title}\n{entry.summary}")[0])

    ours = _time("monitor matcher (rules included)", lambda e: match_entry(e, compiled), entries)
    loop = _time("baseline: keyword loop", keyword_loop, entries[: len(entries) // 5])
    regex = _time("baseline: one regex alternation", one_regex, entries[: len(entries) // 5])
    print(f"ratio to keyword loop: {ours / loop:.1f}x   ratio to one regex: {ours / regex:.1f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "entries": len(entries), "matcher_per_s": ours, "keyword_loop_per_s": loop,
            "one_regex_per_s": regex}, indent=1))


if __name__ == "__main__":
    main()
