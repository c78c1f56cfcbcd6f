"""Matching: the watchlist schema, the matcher that judges an entry (pure), and the keys that
say which entry and which story an entry is (dedupe, clustering)."""
