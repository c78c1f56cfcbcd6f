"""Several instances on one PostgreSQL database: feeds shared, each story alerted once, a killed
instance's work taken over. Needs MONITOR_TEST_POSTGRES_URL (set by .ci/run)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.conftest import FeedServer, Sink, write_config

SERVER_URL = os.environ.get("MONITOR_TEST_POSTGRES_URL", "")
pytestmark = pytest.mark.skipif(not SERVER_URL, reason="MONITOR_TEST_POSTGRES_URL is not set "
                                "(a PostgreSQL server, e.g. postgresql+psycopg://u@host/db)")
FEEDS, STORIES = 100, 3


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh database on the test server, dropped afterwards."""
    import psycopg

    admin = SERVER_URL.replace("postgresql+psycopg://", "postgresql://")
    name = f"monitor_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    yield SERVER_URL.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE {name} WITH (FORCE)")


def _slow(body: bytes) -> object:
    def handle(request: BaseHTTPRequestHandler) -> None:
        time.sleep(0.1)
        request.send_response(200)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)
    return handle


def _feeds(server: FeedServer) -> list[dict[str, str]]:
    feeds = []
    for feed in range(FEEDS):
        items = "".join(
            f"<item><title>Russia and North Korea sign accord {feed}-{story} on fisheries"
            f"</title><link>https://pg.example/{feed}/{story}</link></item>"
            for story in range(STORIES))
        body = (f'<rss version="2.0"><channel><title>f{feed}</title>{items}</channel></rss>'
                .encode())
        feeds.append({"url": server.serve(f"/{feed}.xml", b"", handler=_slow(body)),
                      "name": f"feed {feed}", "interval": "2s"})
    return feeds


def _config(tmp_path: Path, server: FeedServer, sink: Sink, database: str) -> Path:
    return write_config(tmp_path, _feeds(server), [{"url": sink.url}], database=database,
                        poll={"lease": "3s", "jitter": 0, "parsers": 1},
                        delivery={"interval": "1s"})


def _assert_each_story_once(sink: Sink, window: int) -> None:
    counts = Counter(sink.titles())
    assert len(counts) == FEEDS * STORIES, len(counts)
    assert sum(counts.values()) - len(counts) <= window, counts.most_common(3)


def _monitor(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(config), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("instances", [2, 3])
def test_instances_started_together_alert_each_story_once(
        tmp_path: Path, feed_server: FeedServer, sink: Sink, pg_url: str,
        instances: int) -> None:
    """N `run --once` at the same moment split the feeds and send each story exactly once."""
    config = _config(tmp_path, feed_server, sink, pg_url)
    runs = [_monitor(config, "run", "--once") for _ in range(instances)]
    errors = [run.communicate(timeout=300)[1] for run in runs]
    assert [run.returncode for run in runs] == [0] * instances, errors
    assert not any("Traceback" in e for e in errors)
    _assert_each_story_once(sink, window=0)
    recorded = [sum(int(line.split(" new, ")[0].rsplit(", ", 1)[1])
                    for line in e.splitlines() if " new, " in line) for e in errors]
    assert sum(recorded) == FEEDS * STORIES  # each entry recorded by exactly one instance
    assert sum(n > 0 for n in recorded) >= 2  # and shared (one may start after the rest)


def test_killed_instance_work_is_finished_by_later_runs(
        tmp_path: Path, feed_server: FeedServer, sink: Sink, pg_url: str) -> None:
    """Three `run --once`, one killed a second in; once its leases expire a later run finishes
    its feeds: every story alerted, at most the one in flight twice."""
    config = _config(tmp_path, feed_server, sink, pg_url)
    runs = [_monitor(config, "run", "--once") for _ in range(3)]
    time.sleep(1)
    runs[0].send_signal(signal.SIGKILL)
    for run in runs:
        run.communicate(timeout=300)
    time.sleep(3.5)  # the killed instance's leases expire
    later = _monitor(config, "run", "--once")
    _, err = later.communicate(timeout=300)
    assert later.returncode == 0, err
    _assert_each_story_once(sink, window=2)


def test_daemons_share_feeds_and_survive_losing_one(
        tmp_path: Path, feed_server: FeedServer, sink: Sink, pg_url: str) -> None:
    """Three `monitor run` daemons, one killed a second in: the others take over its feeds and
    alerts; every story arrives, at most the one in flight twice; status lists the instances."""
    config = _config(tmp_path, feed_server, sink, pg_url)
    logs = [(tmp_path / f"daemon{n}.log").open("w") for n in range(3)]
    daemons = [subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(config),
                                 "run"], stdout=subprocess.DEVNULL, stderr=log) for log in logs]
    try:
        time.sleep(1)
        daemons[0].send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 120
        while len(set(sink.titles())) < FEEDS * STORIES and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # a few more polls: nothing may be sent again
        status = subprocess.run([sys.executable, "-m", "monitor", "--config", str(config),
                                 "status"], capture_output=True, text=True, timeout=60,
                                check=False)
        assert status.stdout.count(": alive,") == 2, status.stdout
    finally:
        for daemon in daemons[1:]:
            daemon.send_signal(signal.SIGTERM)
        for daemon in daemons:
            daemon.wait(timeout=60)
        for log in logs:
            log.close()
    assert [d.returncode for d in daemons[1:]] == [0, 0]
    assert not any("Traceback" in (tmp_path / f"daemon{n}.log").read_text() for n in range(3))
    _assert_each_story_once(sink, window=2)


def test_version_1_postgres_database_is_upgraded_in_place(pg_url: str) -> None:
    """A PostgreSQL database of schema v1 gains the v2 columns and keeps its rows."""
    import psycopg

    from monitor.store import Store
    from monitor.tables import SCHEMA_VERSION

    Store(pg_url).close()
    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://"),
                         autocommit=True) as db:
        for table, column in [("outbox", "kind"), ("outbox", "fields"), ("outbox", "held"),
                              ("entries", "revised_at")]:
            db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        db.execute("DROP TABLE messages")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        db.execute("INSERT INTO outbox (target, target_name, watchlists, title, body, status, "
                   "attempts, created_at, next_attempt_at) VALUES ('t', 'n', 'w', 'Old', 'b', "
                   "'PENDING', 0, now(), now())")
    store = Store(pg_url)
    try:
        assert store.schema_version() == SCHEMA_VERSION
        [row] = store.due_deliveries()
        assert (row.title, row.kind, row.fields, row.held) == ("Old", "alert", None, None)
    finally:
        store.close()
