"""Crashes and a full disk: no alert lost, at most the one in flight repeated, no corruption."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import FeedServer, Sink, write_config

ITEMS = 60


def _sixty_stories() -> bytes:
    items = "".join(
        f"<item><title>Russia and North Korea sign agreement number {i} on trade</title>"
        f"<link>https://crash.example/story/{i}</link><guid>story-{i}</guid></item>"
        for i in range(ITEMS))
    return (f'<?xml version="1.0"?><rss version="2.0"><channel><title>crash</title>{items}'
            f"</channel></rss>").encode()


def test_kill_9_during_delivery_then_a_normal_run_loses_nothing(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """SIGKILL while 60 alerts are being sent, then `run --once`: all 60 arrive, ≤ 2 twice."""
    feeds = [{"url": feed_server.serve("/crash.xml", _sixty_stories())}]
    config = write_config(tmp_path, feeds, [{"url": sink.url}])
    command = [sys.executable, "-m", "monitor", "--config", str(config), "run", "--once"]
    sink.delay = 0.05
    victim = subprocess.Popen(command, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(sink.received) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    delivered_before = len(sink.received)
    assert 0 < delivered_before < ITEMS
    sink.delay = 0
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    counts = Counter(sink.titles())
    assert len(counts) == ITEMS
    assert sum(counts.values()) - ITEMS <= 2


def test_kill_9_at_random_instants_loses_nothing(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """Three runs killed at random instants (polling, recording or sending), then a normal run:
    every alert arrives, and only the few in flight at a kill arrive twice."""
    import random

    feeds = [{"url": feed_server.serve("/crash.xml", _sixty_stories())}]
    config = write_config(tmp_path, feeds, [{"url": sink.url}])
    command = [sys.executable, "-m", "monitor", "--config", str(config), "run", "--once"]
    sink.delay = 0.02
    rng = random.Random(1)
    for _ in range(3):
        victim = subprocess.Popen(command, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.5))
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    counts = Counter(sink.titles())
    assert len(counts) == ITEMS
    assert sum(counts.values()) - ITEMS <= 3


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
