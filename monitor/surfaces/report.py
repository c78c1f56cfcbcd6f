"""Reports: matches as JSON records or readable text, for `match` and `backtest`."""

from __future__ import annotations

from typing import Any

from monitor.models import Entry, Match
from monitor.support.logs import printable


def match_record(entry: Entry, match: Match) -> dict[str, Any]:
    """One match as a JSON-ready object (the `--json` line format)."""
    return {
        "watchlist": match.watchlist, "title": entry.title, "link": entry.link,
        "guid": entry.guid, "feed": entry.feed_name, "terms": match.terms,
        "entities": match.terms_by_entity(), "fields": sorted({h.field for h in match.hits}),
        "snippet": match.snippet,
        "published": entry.published.isoformat() if entry.published else None,
    }


def describe_match(entry: Entry, match: Match, mark: str = "") -> str:
    """One match as a few readable lines: title, link, terms per entity, highlighted snippet."""
    found = "; ".join(f"{entity}: {', '.join(aliases)}"
                      for entity, aliases in match.terms_by_entity().items())
    lines = (f"{mark}[{match.watchlist}] {entry.title}", f"  {entry.link or '(no link)'}",
             f"  matched {found}", f"  {match.highlighted_snippet()}")
    # For a terminal: feed text with its controls and bidi overrides shown, one line each.
    return "\n".join(printable(line) for line in lines) + "\n"
