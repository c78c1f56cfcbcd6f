"""The HTTP endpoint of a running daemon: health, Prometheus metrics, an Atom feed, a page."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import feedparser
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import FeedServer, Sink, render_feed, write_config
from tests.test_daemon import wait_for


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def daemon_with_http(tmp_path: Path, feed_server: FeedServer, sink: Sink) -> Iterator[str]:
    """A `monitor run` with http.listen on a free loopback port, after its first alert."""
    base = f"http://127.0.0.1:{_free_port()}"
    feeds = [{"url": feed_server.serve("/ru.xml", render_feed("russian.xml")), "name": "RU wire"}]
    config = write_config(tmp_path, feeds, [{"url": sink.url}],
                          http={"listen": base.removeprefix("http://")})
    log = (tmp_path / "daemon.log").open("w")
    daemon = subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(config), "run"],
                              stdout=subprocess.DEVNULL, stderr=log)
    try:
        assert wait_for(lambda: len(sink.received) == 1), (tmp_path / "daemon.log").read_text()
        yield base
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
        log.close()


def test_healthz_metrics_and_atom_feed(daemon_with_http: str) -> None:
    """/healthz says ok, /metrics is Prometheus text counting the polls, /feed.xml is a valid
    Atom feed holding the match with its explanation."""
    base = daemon_with_http
    health = httpx.get(f"{base}/healthz")
    assert (health.status_code, health.text) == (200, "ok\n")
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{base}/metrics")
                                                                   .text)}
    polls = sum(s.value for s in families["monitor_polls"].samples if s.name.endswith("_total"))
    assert polls >= 1
    assert any(s.labels == {"state": "sent"} and s.value == 1
               for s in families["monitor_outbox"].samples)
    feed = feedparser.parse(httpx.get(f"{base}/feed.xml").content)
    assert feed.version == "atom10"
    assert not feed.bozo
    assert feed.entries[0].title.startswith("Лавров прибыл в Пхеньян")
    assert "russia-dprk" in feed.entries[0].summary
    assert feed.entries[0].link == "https://ru.example.com/politics/lavrov-pyongyang"
    assert httpx.get(f"{base}/nope").status_code == 404


def test_status_page_renders_in_headless_chromium(daemon_with_http: str, tmp_path: Path) -> None:
    """The status page renders in real headless Chromium: the DOM holds the feed and the match,
    and a screenshot is written."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium)")
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'c'}"]
    dom = subprocess.run([*flags, "--dump-dom", f"{daemon_with_http}/"], capture_output=True,
                         text=True, timeout=120, check=False).stdout
    assert "RU wire" in dom
    assert "Лавров прибыл в Пхеньян" in dom
    shot = tmp_path / "status.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1200,900",
                    f"{daemon_with_http}/"], capture_output=True, timeout=120, check=False)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one


def test_healthz_is_503_when_the_scheduler_is_not_running() -> None:
    """/healthz answers 503 with the reason once the scheduler has stopped."""
    from monitor.web import WebState, make_app

    app = make_app(WebState(runtime=None, scheduler_running=lambda: False))
    answers: list[str] = []
    body = b"".join(app({"PATH_INFO": "/healthz"}, lambda status, headers: answers.append(status)))
    assert answers == ["503 Service Unavailable"]
    assert body == b"scheduler not running\n"
