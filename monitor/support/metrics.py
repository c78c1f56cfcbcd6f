"""Metrics: Prometheus counters and histograms the pipeline updates, and gauges read at scrape.

The pipeline only increments; the outbox depth and broken-feed gauges are read from the database
when `/metrics` is scraped, so they are right whichever instance did the work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry()
POLLS = Counter("monitor_polls", "Feed polls by outcome", ["outcome"], registry=REGISTRY)
FETCH_SECONDS = Histogram("monitor_fetch_seconds", "Time to fetch a feed", registry=REGISTRY)
PARSE_SECONDS = Histogram("monitor_parse_seconds", "Time to parse a feed", registry=REGISTRY)
ENTRIES = Counter("monitor_entries_seen", "New entries recorded", registry=REGISTRY)
MATCHES = Counter("monitor_matches", "New entries matching a watchlist", ["watchlist"],
                  registry=REGISTRY)
DELIVERIES = Counter("monitor_deliveries", "Delivery attempts by outcome", ["outcome"],
                     registry=REGISTRY)
DATABASE_ERRORS = Counter("monitor_database_errors", "Database transactions that failed "
                          "(full disk, read-only file, lost connection…)", registry=REGISTRY)
DATABASE_FAILING = Gauge("monitor_database_failing", "1 while the database is failing (until "
                         "a write succeeds again)", registry=REGISTRY)


class StateCollector(Collector):
    """Outbox depth and broken feeds, read from the database at each scrape."""

    def __init__(self) -> None:
        self.read: Callable[[], tuple[dict[str, int], int]] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.read is None:
            return
        outbox, broken = self.read()
        depth = GaugeMetricFamily("monitor_outbox", "Alerts in the outbox by state",
                                  labels=["state"])
        for state, count in outbox.items():
            depth.add_metric([state], count)
        yield depth
        yield GaugeMetricFamily("monitor_broken_feeds", "Feeds whose last poll failed",
                                value=broken)


_STATE = StateCollector()
REGISTRY.register(_STATE)


def watch_state(read: Callable[[], tuple[dict[str, int], int]]) -> None:
    """Read the outbox and broken feeds with `read` at each scrape."""
    _STATE.read = read
