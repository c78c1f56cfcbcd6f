"""The daemon as systemd runs it: a subprocess that polls on schedule and stops on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import FeedServer, Sink, render_feed, write_config


def wait_for(condition: Callable[[], bool], seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_daemon_polls_on_schedule_alerts_new_items_and_stops_on_sigterm(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """`monitor run` alerts at start, alerts an item added later, survives a broken feed, and
    exits 0 on SIGTERM."""
    feeds = [
        {"url": feed_server.serve("/ru.xml", render_feed("russian.xml")), "interval": "1s"},
        {"url": feed_server.serve("/broken.xml", b"<html>not a feed</html>"), "interval": "1s",
         "name": "broken one"},
    ]
    config = write_config(tmp_path, feeds, [{"url": sink.url}], poll={"jitter": 0},
                          delivery={"interval": "1s"})
    log = tmp_path / "daemon.log"
    with log.open("w") as stderr:
        daemon = subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(config), "run"],
                                  stderr=stderr, stdout=subprocess.DEVNULL)
        try:
            assert wait_for(lambda: len(sink.received) == 1), log.read_text()
            extra = render_feed("russian.xml").replace(b"<item>", """<item>
              <title>Россия и КНДР подписали соглашение о туризме</title>
              <link>https://ru.example.com/politics/tourism</link></item><item>""".encode(), 1)
            feed_server.serve("/ru.xml", extra)
            assert wait_for(lambda: len(sink.received) == 2), log.read_text()
            assert "туризме" in sink.titles()[-1]
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=30) == 0
        finally:
            if daemon.poll() is None:
                daemon.kill()
    text = log.read_text()
    assert "broken one failed" in text
    assert "stopping (SIGTERM)" in text
    assert "monitor stopped" in text
    assert "Traceback" not in text
    assert len(sink.received) == 2
