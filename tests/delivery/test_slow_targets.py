"""Slow targets: a target that answers within the configured timeout gets each alert once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.project import render_feed, run_cycle, write_config
from tests.support.servers import FeedServer, Sink


@pytest.mark.parametrize(("delivery", "target"), [
    ({"timeout": "10s"}, {}),                    # delivery.timeout for every target
    ({"timeout": "3s"}, {"timeout": "10s"}),     # a target's own timeout wins
])
def test_a_target_answering_in_six_seconds_gets_each_alert_once(
        tmp_path: Path, feed_server: FeedServer, sink: Sink, delivery: dict[str, Any],
        target: dict[str, Any]) -> None:
    """With a 10 s timeout, a target that takes 6 s to answer counts as reached: Apprise's own
    4 s read limit no longer makes it a failure that is sent again on the next retry."""
    sink.delay = 6.0
    feeds = [{"url": feed_server.serve("/ru.xml", render_feed("russian.xml")), "name": "RU"}]
    config = write_config(tmp_path, feeds, [{"url": sink.url, **target}], delivery=delivery)
    now = datetime.now(UTC)
    assert run_cycle(config, now + timedelta(seconds=30), now + timedelta(hours=2)) == [1, 0]
    assert len(sink.received) == 1
