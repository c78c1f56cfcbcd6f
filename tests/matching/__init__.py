"""Tests of the matching stage: the matcher, the default watchlist on written and real news,
dedupe and story clustering."""
