"""Tests of the sources stage: fetching, parsing, parser workers, feed lists."""
