"""Crashes: kill -9 in the middle of delivering loses no alert and repeats at most one."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

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
