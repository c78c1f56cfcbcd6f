"""Crashes and a full disk: no alert lost, at most the one in flight repeated, no corruption."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.daemons import free_port
from tests.support.project import write_config
from tests.support.servers import FeedServer, Sink, answer

ITEMS = 60


def _sixty_stories() -> bytes:
    items = "".join(
        f"<item><title>Russia and North Korea sign agreement number {i} on trade</title>"
        f"<link>https://crash.example/story/{i}</link><guid>story-{i}</guid></item>"
        for i in range(ITEMS))
    return (f'<?xml version="1.0"?><rss version="2.0"><channel><title>crash</title>{items}'
            f"</channel></rss>").encode()


def _until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Poll until `condition()` holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _recorded(database: Path) -> int:
    """Rows in the outbox of `database` (0 while it or its tables do not exist yet)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True,
                                                timeout=5)) as db:
            return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def test_kill_9_during_delivery_then_a_normal_run_loses_nothing(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """SIGKILL while 60 alerts are being sent, then `run --once`: all 60 arrive, at most the one
    in flight at the kill twice."""
    feeds = [{"url": feed_server.serve("/crash.xml", _sixty_stories())}]
    config = write_config(tmp_path, feeds, [{"url": sink.url}])
    command = [sys.executable, "-m", "monitor", "--config", str(config), "run", "--once"]
    sink.delay = 0.05
    victim = subprocess.Popen(command, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        _until(lambda: len(sink.received) >= 20, "20 alerts at the sink")
    finally:
        victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    delivered_before = len(sink.received)
    assert 0 < delivered_before < ITEMS
    sink.delay = 0
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    counts = Counter(sink.titles())
    assert len(counts) == ITEMS
    assert sum(counts.values()) - ITEMS <= 1  # the one in flight at the kill


def test_kill_9_while_polling_recording_and_sending_loses_nothing(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """Three runs killed at three observed stages (fetch under way, the 60 alerts recorded,
    sending under way), then a normal run: every alert arrives, at most the one in flight at
    each of the last two kills twice."""
    release = threading.Event()
    body = _sixty_stories()

    def held_once(request: BaseHTTPRequestHandler) -> None:
        release.wait(60)  # the first request waits for the kill; later ones pass at once
        with contextlib.suppress(OSError):
            answer(200, body)(request)

    feeds = [{"url": feed_server.serve("/crash.xml", b"", handler=held_once)}]
    config = write_config(tmp_path, feeds, [{"url": sink.url}])
    database = tmp_path / "monitor.db"
    command = [sys.executable, "-m", "monitor", "--config", str(config), "run", "--once"]
    sink.delay = 0.05

    def run_killed_once(ready: Callable[[], bool], what: str) -> None:
        victim = subprocess.Popen(command, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        try:
            _until(ready, what)
        finally:
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=30)

    run_killed_once(lambda: len(feed_server.requests) == 1, "the feed's request")
    release.set()
    assert (_recorded(database), sink.received) == (0, [])  # killed before recording
    run_killed_once(lambda: _recorded(database) == ITEMS, "the 60 alerts in the outbox")
    sent = len(sink.received)
    run_killed_once(lambda: len(sink.received) >= sent + 10, "ten more alerts at the sink")
    assert len(set(sink.titles())) < ITEMS  # the last kill cut sending short
    sink.delay = 0
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    counts = Counter(sink.titles())
    assert len(counts) == ITEMS
    assert sum(counts.values()) - ITEMS <= 2, counts.most_common(3)


def _mount_tiny_disk(folder: Path) -> bool:
    if os.geteuid() != 0:
        return False
    folder.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)],
                            capture_output=True, check=False)
    return result.returncode == 0


def test_full_disk_says_what_is_wrong_and_loses_nothing(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """With the database on a full disk a run exits 3 naming the problem; once space is back,
    every alert goes out and the database is intact."""
    disk = tmp_path / "disk"
    if not _mount_tiny_disk(disk):
        pytest.skip("needs root to mount a 16 MB tmpfs as a full disk")
    try:
        filler = disk / "filler"
        items = "".join(
            f"<item><title>Russia and North Korea agree on item {i}</title>"
            f"<link>https://disk.example/{i}</link><description>{'x' * 3000}</description></item>"
            for i in range(200))
        feeds = [{"url": feed_server.serve("/f.xml", f'<rss version="2.0"><channel><title>d'
                                           f"</title>{items}</channel></rss>".encode())}]
        config = write_config(tmp_path, feeds, [{"url": sink.url}],
                              database=f"sqlite:///{disk / 'monitor.db'}")
        command = [sys.executable, "-m", "monitor", "--config", str(config), "run", "--once"]
        assert subprocess.run([*command[:-2], "check"], capture_output=True,
                              check=False).returncode == 0
        filler.write_bytes(b"\0" * (16 * 1024**2 - 150 * 1024))  # leaves ~150 KB for the db
        full = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert full.returncode == 3, full.stderr
        assert "database or disk is full" in full.stderr
        assert "Traceback" not in full.stderr
        assert sink.received == []
        filler.unlink()
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        assert len(set(sink.titles())) == 200
        with sqlite3.connect(disk / "monitor.db") as db:
            assert db.execute("pragma integrity_check").fetchone() == ("ok",)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path) -> Path:
    """Fill the tmpfs at `disk` to the last byte with one file; returns it."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:
        for size in (1024**2, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    out.write(b"\0" * size)
    return filler


def test_a_full_disk_turns_healthz_503_with_the_reason_and_back(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """While the daemon's database is on a full disk, /healthz answers 503 naming the database
    error, /metrics counts it (errors total, failing gauge 1), `status` shows it and the
    health target gets one notice; once space is freed the next write turns /healthz back to
    200 and the gauge to 0, one notice says so, and the held-up stories alert."""
    disk = tmp_path / "disk"
    if not _mount_tiny_disk(disk):
        pytest.skip("needs root to mount a 16 MB tmpfs as a full disk")
    base = f"http://127.0.0.1:{free_port()}"
    daemon, desk = None, Sink()  # the desk gets health notices only
    try:
        feed = feed_server.serve("/f.xml", _stories(0, 1))
        targets = [{"url": sink.url}, {"url": desk.url, "tags": ["ops"]}]
        config = write_config(tmp_path, [{"url": feed, "name": "disk", "interval": "1s",
                                          "tags": ["news"]}], targets,
                              database=f"sqlite:///{disk / 'monitor.db'}",
                              http={"listen": base.removeprefix("http://")},
                              health={"tag": "ops"})
        daemon = subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(config),
                                   "run"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _until(lambda: len(sink.received) == 1 and _health(base)[0] == 200, "the first alert")
        filler = _fill(disk)
        feed_server.serve("/f.xml", _stories(0, 101))  # 100 new long stories to record
        _until(lambda: _health(base)[0] == 503, "/healthz to fail")
        reason = _health(base)[1]
        assert reason.startswith("database failing since ") and "disk is full" in reason
        assert _metric(base, "monitor_database_failing") == 1
        assert _metric(base, "monitor_database_errors_total") >= 1
        status = subprocess.run([sys.executable, "-m", "monitor", "--config", str(config),
                                 "status"], capture_output=True, text=True, check=False)
        assert "healthz: NOT HEALTHY: database failing since" in status.stdout, status.stdout
        filler.unlink()
        _until(lambda: _health(base) == (200, "ok"), "/healthz to recover")
        assert _metric(base, "monitor_database_failing") == 0
        _until(lambda: len(sink.received) > 1, "the held-up stories to alert")
        _until(lambda: len(desk.received) == 2, "the second database notice")
        assert desk.titles() == ["monitor: database failing", "monitor: database usable again"]
        assert "disk is full" in desk.received[0]["message"]
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(timeout=60)
        desk.close()
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _stories(first: int, last: int) -> bytes:
    items = "".join(
        f"<item><title>Russia and North Korea sign accord {i} on fisheries</title>"
        f"<link>https://disk.example/{i}</link><description>{'x' * 3000}</description></item>"
        for i in range(first, last))
    return f'<rss version="2.0"><channel><title>d</title>{items}</channel></rss>'.encode()


def _health(base: str) -> tuple[int, str]:
    """/healthz's status and text; (0, "") while the daemon is not listening yet."""
    try:
        answer = httpx.get(f"{base}/healthz", timeout=10)
    except httpx.HTTPError:
        return 0, ""
    return answer.status_code, answer.text.strip()


def _metric(base: str, name: str) -> float:
    families = text_string_to_metric_families(httpx.get(f"{base}/metrics", timeout=10).text)
    return sum(s.value for f in families for s in f.samples if s.name == name)
