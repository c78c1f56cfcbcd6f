"""The default russia-dprk watchlist: per-language cases, the labelled corpus, the seed article."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.config import load_config
from monitor.matching.matcher import Watchlists, compile_watchlists, match_entry
from monitor.models import Entry
from tests.support.project import DATA, ROOT, corpus_as_feed

LANGUAGES = ("en", "ru", "ko", "ja", "zh", "uk", "id", "de", "fr", "es", "pt", "tr", "vi", "ar")
CASES: list[dict[str, Any]] = yaml.safe_load((DATA / "match_cases.yaml").read_text("utf-8"))


@pytest.fixture(scope="module")
def compiled() -> Watchlists:
    return compile_watchlists(load_config(ROOT / "config.yaml"))


def alerts(compiled: Watchlists, title: str, summary: str) -> bool:
    entry = Entry("corpus", "corpus", None, None, title, summary)
    return any(m.watchlist == "russia-dprk" for m in match_entry(entry, compiled))


@pytest.mark.parametrize("case", CASES, ids=[f"{c['lang']}-{i}" for i, c in enumerate(CASES)])
def test_case_table(compiled: Watchlists, case: dict[str, Any]) -> None:
    """Each hand-written case in each language alerts exactly when it should (see `why`)."""
    assert alerts(compiled, case["title"], case["summary"]) is case["expect"], case["why"]


def test_case_table_covers_every_language() -> None:
    """The table has positives and negatives in each of the 14 languages of the default list."""
    for lang in LANGUAGES:
        expected = {c["expect"] for c in CASES if c["lang"] == lang}
        assert expected == {True, False}, lang


def test_dev_corpus_precision_and_recall(compiled: Watchlists) -> None:
    """On the labelled dev corpus (null labels left out) precision and recall are ≥ 0.95."""
    rows = [json.loads(line) for line in (DATA / "dev_corpus.jsonl").read_text().splitlines()]
    scored = [(alerts(compiled, r["title"], r["summary"]), r["label"]) for r in rows
              if r["label"] is not None]
    true_positives = sum(1 for got, label in scored if got and label)
    precision = true_positives / max(1, sum(1 for got, _ in scored if got))
    recall = true_positives / max(1, sum(1 for _, label in scored if label))
    assert precision >= 0.95, precision
    assert recall >= 0.95, recall


def test_seed_article_alerts(compiled: Watchlists) -> None:
    """The Indonesian article the project grew from alerts, naming neither country in English."""
    title, _, body = (DATA / "russia-dprk-treaty-id.txt").read_text("utf-8").partition("\n")
    assert alerts(compiled, title, body)


@pytest.mark.parametrize("corpus", ["dev_corpus.jsonl", "holdout_corpus.jsonl"])
def test_corpus_through_match_json(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   corpus: str) -> None:
    """A labelled corpus served as a feed file scores ≥ 0.95 precision and recall through
    `monitor match FILE --json`, the way users tune watchlists."""
    from monitor.surfaces.cli import main

    path = DATA / corpus
    if not path.exists():
        pytest.skip(f"{corpus} is not in tests/data")
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if r["label"] is not None]
    feed = tmp_path / "corpus.xml"
    feed.write_bytes(corpus_as_feed(rows))
    assert main(["--config", str(ROOT / "config.yaml"), "match", str(feed), "--json"]) == 0
    flagged = {json.loads(line)["link"].rsplit("/", 1)[1]
               for line in capsys.readouterr().out.splitlines()}
    positives = {r["id"] for r in rows if r["label"]}
    precision = len(flagged & positives) / max(1, len(flagged))
    recall = len(flagged & positives) / max(1, len(positives))
    assert precision >= 0.95, (precision, sorted(flagged - positives))
    assert recall >= 0.95, (recall, sorted(positives - flagged))
