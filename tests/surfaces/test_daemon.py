"""The daemon as systemd runs it: a subprocess that polls on schedule and stops on SIGTERM."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.support.project import render_feed, wait_for, write_config
from tests.support.servers import FeedServer, Sink


@contextlib.contextmanager
def running_daemon(config: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`monitor run` on `config`, logging to `log`; killed at the end if still running."""
    with log.open("w") as stderr:
        daemon = subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(config), "run"],
                                  stderr=stderr, stdout=subprocess.DEVNULL)
        try:
            yield daemon
        finally:
            if daemon.poll() is None:
                daemon.kill()


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
    with running_daemon(config, log) as daemon:
        assert wait_for(lambda: len(sink.received) == 1), log.read_text()
        extra = render_feed("russian.xml").replace(b"<item>", """<item>
          <title>Россия и КНДР подписали соглашение о туризме</title>
          <link>https://ru.example.com/politics/tourism</link></item><item>""".encode(), 1)
        feed_server.serve("/ru.xml", extra)
        assert wait_for(lambda: len(sink.received) == 2), log.read_text()
        assert "туризме" in sink.titles()[-1]
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    text = log.read_text()
    assert "broken one failed" in text
    assert "stopping (SIGTERM)" in text
    assert "monitor stopped" in text
    assert "Traceback" not in text
    assert len(sink.received) == 2


def test_config_edits_are_applied_and_broken_ones_keep_the_last_good_config(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """Adding a feed in the file takes effect without a restart; a broken edit, or one that
    leaves no feed, is logged and the daemon keeps running with the last good config; SIGHUP
    reloads too."""
    first = {"url": feed_server.serve("/ru.xml", render_feed("russian.xml")), "interval": "1s"}
    second = {"url": feed_server.serve("/id.xml", render_feed("indonesian.xml")),
              "interval": "1s"}
    options = {"poll": {"jitter": 0}, "delivery": {"interval": "1s"}}
    config = write_config(tmp_path, [first], [{"url": sink.url}], **options)
    log = tmp_path / "daemon.log"
    with running_daemon(config, log) as daemon:
        assert wait_for(lambda: len(sink.received) == 1), log.read_text()
        config.write_text(config.read_text() + "\nfeedz: []\n")
        assert wait_for(lambda: "keeping the last good config" in log.read_text())
        assert "did you mean `feeds`" in log.read_text()
        write_config(tmp_path, [], [{"url": sink.url}], **options)  # nothing left to do
        assert wait_for(lambda: "no feeds configured" in log.read_text()), log.read_text()
        assert log.read_text().count("keeping the last good config") == 2
        write_config(tmp_path, [first, second], [{"url": sink.url}], **options)
        assert wait_for(lambda: len(sink.received) == 2), log.read_text()
        assert "Rusia meratifikasi" in sink.titles()[-1]
        write_config(tmp_path, [second], [{"url": sink.url}], **options)
        daemon.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "config reloaded" in log.read_text().split("Rusia")[-1])
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    assert "Traceback" not in log.read_text()
    assert len(sink.received) == 2


def test_systemd_notify_ready_watchdog_and_stopping(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """Under Type=notify the daemon says READY, pings the watchdog, and says STOPPING."""
    import os
    import socket

    address = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(0.2)
    feeds = [{"url": feed_server.serve("/ru.xml", render_feed("russian.xml"))}]
    config = write_config(tmp_path, feeds, [{"url": sink.url}])
    env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000"}
    daemon = subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(config), "run"],
                              env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    messages: list[str] = []

    def received(text: str) -> bool:
        with contextlib.suppress(TimeoutError):
            messages.append(listener.recv(4096).decode())
        return any(text in m for m in messages)

    try:
        assert wait_for(lambda: received("READY=1"))
        assert wait_for(lambda: received("WATCHDOG=1"))
        daemon.send_signal(signal.SIGTERM)
        assert wait_for(lambda: received("STOPPING=1"))
        assert daemon.wait(timeout=30) == 0
    finally:
        listener.close()
        if daemon.poll() is None:
            daemon.kill()


def test_undoing_a_broken_edit_says_the_error_is_resolved(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """A broken edit is logged in full once: a SIGHUP that reads it again says only that the
    error is the same; putting the file back as it was logs that the error is resolved."""
    feeds = [{"url": feed_server.serve("/ru.xml", render_feed("russian.xml"))}]
    config = write_config(tmp_path, feeds, [{"url": sink.url}])
    good = config.read_text()
    log = tmp_path / "daemon.log"
    with running_daemon(config, log) as daemon:
        assert wait_for(lambda: len(sink.received) == 1), log.read_text()
        config.write_text(good + "\nfeedz: []\n")
        assert wait_for(lambda: "(the config file changed) failed" in log.read_text())
        daemon.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "(SIGHUP): the same error as before" in log.read_text())
        config.write_text(good)
        assert wait_for(lambda: "the config error is resolved" in log.read_text()), \
            log.read_text()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    assert log.read_text().count("keeping the last good config") == 1


def test_each_feeds_later_polls_fall_at_its_own_phase_of_the_interval(tmp_path: Path) -> None:
    """Every feed is polled at start, then at a random phase of its interval: instances sharing
    a database split the feeds between them instead of one common phase taking them all."""
    import asyncio
    from datetime import datetime

    from monitor.pipeline import Runtime, open_config
    from monitor.surfaces.daemon import Daemon

    feeds = [{"url": f"https://f{i}.example/feed.xml"} for i in range(100)]
    config = write_config(tmp_path, feeds, [], poll={"interval": "15m"})

    async def phases() -> tuple[list[datetime], list[datetime], list[datetime]]:
        runtime = Runtime.from_config(open_config(config))
        try:
            daemon = Daemon(runtime, config)
            daemon._schedule()  # the jobs, without starting the scheduler
            jobs = [j for j in daemon.scheduler.get_jobs() if j.id.startswith("feed:")]
            # When each job runs after its first run, then after that, as the scheduler asks.
            second = [j.trigger.get_next_fire_time(j.next_run_time, j.next_run_time)
                      for j in jobs]
            third = [j.trigger.get_next_fire_time(t, t) for j, t in zip(jobs, second, strict=True)]
            return [j.next_run_time for j in jobs], second, third
        finally:
            await runtime.close()

    first, later, after = asyncio.run(phases())
    assert len(first) == len(later) == 100
    assert (max(first) - min(first)).total_seconds() < 60  # all polled right away
    assert all(450 <= (b - a).total_seconds() <= 1380 for a, b in zip(first, later, strict=True))
    # On the grid of its phase: jitter (30 s) does not add up from one run to the next.
    assert all(870 < (c - b).total_seconds() < 930 for b, c in zip(later, after, strict=True))
    offsets = [(t - min(first)).total_seconds() % 900 for t in later]
    thirds = [sum(1 for o in offsets if k * 300 <= o < (k + 1) * 300) for k in range(3)]
    # Uniform phases put about 33 feeds in each third of the 15 minutes; one common
    # phase would put all 100 in one (a random split falls under 15 about once in 10^5 runs).
    assert min(thirds) >= 15, thirds


def test_an_idle_daemon_is_a_single_process(tmp_path: Path, feed_server: FeedServer) -> None:
    """Parser processes start for the first polls and exit after `poll.parse_idle` without
    work, with spawn's helper process: between polls the daemon is one process."""
    from bench.memory import descendants

    feeds = [{"url": feed_server.serve(f"/{n}.xml", render_feed("russian.xml"))}
             for n in range(6)]
    config = write_config(tmp_path, feeds, [], poll={"parse_idle": "1s", "parsers": 2})
    daemon = subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(config), "run"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: len(descendants(daemon.pid)) >= 2), "the parser processes"
        assert wait_for(lambda: len(feed_server.requests) >= 6), "the first polls"
        assert wait_for(lambda: descendants(daemon.pid) == [], 60), descendants(daemon.pid)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
