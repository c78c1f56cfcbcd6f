"""Several instances on one PostgreSQL database: feeds shared, each story alerted once, a killed
instance's work taken over. Needs MONITOR_TEST_POSTGRES_URL (set by .ci/run)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TypeVar

import pytest

from tests.support.project import write_config
from tests.support.servers import FeedServer, Sink

SERVER_URL = os.environ.get("MONITOR_TEST_POSTGRES_URL", "")
pytestmark = pytest.mark.skipif(not SERVER_URL, reason="MONITOR_TEST_POSTGRES_URL is not set "
                                "(a PostgreSQL server, e.g. postgresql+psycopg://u@host/db)")
FEEDS, STORIES = 100, 3
T = TypeVar("T")


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


def _until(probe: Callable[[], T | None], what: str, timeout: float = 60) -> T:
    """Poll `probe` until it returns something true, and return that; fail naming `what` after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return found


def _owner(pid: int) -> str:
    """How the instance of process `pid` names itself in the database (host:pid)."""
    return f"{socket.gethostname()}:{pid}"


def _feeds_held(pg_url: str, where: str, *params: object) -> list[str]:
    """The owners of the unexpired feed leases matching `where` (none before the schema)."""
    import psycopg

    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://")) as db:
        try:
            rows = db.execute(f"SELECT lease_owner FROM feeds WHERE lease_until > %s AND {where}",
                              (datetime.now(UTC), *params)).fetchall()
        except psycopg.errors.UndefinedTable:
            return []
    return [str(owner) for owner, in rows]


def _holding_unpolled(pg_url: str) -> str | None:
    """An instance holding a feed it has not polled yet (a first poll under way), if any."""
    return next(iter(_feeds_held(pg_url, "last_poll_at IS NULL")), None)


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
    """Three `run --once`, one killed while it holds feeds it has not polled yet; once its
    leases expire a later run finishes them: every story alerted, at most the one in flight
    twice."""
    config = _config(tmp_path, feed_server, sink, pg_url)
    runs = {_owner(run.pid): run for run in [_monitor(config, "run", "--once")
                                             for _ in range(3)]}
    victim = _until(lambda: _holding_unpolled(pg_url), "a run taking its first feeds")
    runs[victim].send_signal(signal.SIGKILL)
    for run in runs.values():
        run.communicate(timeout=300)
    _until(lambda: victim not in _feeds_held(pg_url, "TRUE"), "the killed run's leases to end")
    later = _monitor(config, "run", "--once")
    _, err = later.communicate(timeout=300)
    assert later.returncode == 0, err
    _assert_each_story_once(sink, window=1)


def test_daemons_share_feeds_and_survive_losing_one(
        tmp_path: Path, feed_server: FeedServer, sink: Sink, pg_url: str) -> None:
    """Three `monitor run` daemons, one killed while it holds feeds it has not polled yet: the
    others take over its feeds and alerts; every story arrives, at most the one in flight
    twice, and a few polls later nothing was sent again; status lists the three instances, the
    killed one holding no lease."""
    config = _config(tmp_path, feed_server, sink, pg_url)
    logs = [(tmp_path / f"daemon{n}.log").open("w") for n in range(3)]
    daemons = [subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(config),
                                 "run"], stdout=subprocess.DEVNULL, stderr=log) for log in logs]
    owners = {_owner(daemon.pid): daemon for daemon in daemons}
    try:
        victim = _until(lambda: _holding_unpolled(pg_url), "a daemon taking its first feeds")
        owners[victim].send_signal(signal.SIGKILL)
        _until(lambda: len(set(sink.titles())) == FEEDS * STORIES, "every story", timeout=120)
        # A few more polls, in which nothing may be sent again: each feed fetched twice more.
        polled = Counter(path for path, _ in feed_server.requests)
        _until(lambda: all(n >= polled[path] + 2 for path, n in
                           Counter(path for path, _ in feed_server.requests).items()),
               "two more polls of every feed")
        status = subprocess.run([sys.executable, "-m", "monitor", "--config", str(config),
                                 "status"], capture_output=True, text=True, timeout=60,
                                check=False)
        listed = sorted(line.split(":", 2)[1] for line in status.stdout.splitlines()
                        if line.startswith("instance "))
        assert listed == sorted(str(daemon.pid) for daemon in daemons), status.stdout
        # Killed, it holds nothing any more: the others took its feeds over.
        assert re.search(rf"instance {victim}: .* holds 0 feed leases$", status.stdout,
                         re.MULTILINE), status.stdout
    finally:
        for daemon in daemons:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
        for daemon in daemons:
            daemon.wait(timeout=60)
        for log in logs:
            log.close()
    survivors = [d for owner, d in owners.items() if owner != victim]
    assert [d.returncode for d in survivors] == [0, 0]
    assert not any("Traceback" in (tmp_path / f"daemon{n}.log").read_text() for n in range(3))
    _assert_each_story_once(sink, window=1)


def test_a_restarted_daemon_gets_its_share_of_the_feeds(
        tmp_path: Path, feed_server: FeedServer, sink: Sink, pg_url: str) -> None:
    """A daemon started while another has been polling for a while takes about half of the
    feeds within a cycle or two (each feed's polls fall at a random phase per instance), not
    the few a common phase would leave it."""
    feeds = [{"url": feed_server.serve(f"/share{n}.xml", b'<rss version="2.0"><channel>'
                                       b"<title>t</title></channel></rss>"), "interval": "3s"}
             for n in range(80)]

    def config(agent: str) -> Path:
        (tmp_path / agent).mkdir()
        return write_config(tmp_path / agent, feeds, [{"url": sink.url}], database=pg_url,
                            poll={"lease": "3s", "jitter": 0, "parsers": 1,
                                  "user_agent": agent})

    def polls_by(agent: str, since: int) -> int:
        return sum(h.get("User-Agent") == agent for _, h in feed_server.requests[since:])

    first = _monitor(config("first"), "run")
    later: subprocess.Popen[str] | None = None
    try:
        _until(lambda: polls_by("first", 0) >= 3 * len(feeds), "three cycles of the first")
        later = _monitor(config("later"), "run")
        _until(lambda: polls_by("later", 0), "the later daemon's first poll")
        start = len(feed_server.requests)
        _until(lambda: len(feed_server.requests) >= start + 2 * len(feeds), "two more cycles")
        window = len(feed_server.requests)
        _until(lambda: len(feed_server.requests) >= window + 2 * len(feeds), "two cycles more")
        shares = {agent: polls_by(agent, window) for agent in ("first", "later")}
        # Random phases: each feed goes either way, so 80 feeds split near 40/40; under 20 is
        # a one-in-a-million draw, while one common phase gave one daemon about 90 %.
        fair = min(shares.values()) >= sum(shares.values()) / 4
    finally:
        logs = []
        for daemon in (first, later):
            if daemon is not None:
                daemon.send_signal(signal.SIGTERM)
                logs.append(daemon.communicate(timeout=60)[1])
    assert fair, (shares, [log[-3000:] for log in logs])


def test_version_1_postgres_database_is_upgraded_in_place(pg_url: str) -> None:
    """A PostgreSQL database of schema v1 gains the v2 columns and keeps its rows."""
    import psycopg

    from monitor.storage.store import Store
    from monitor.storage.tables import SCHEMA_VERSION

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
        [row] = store.outbox.due()
        assert (row.title, row.kind, row.fields, row.held) == ("Old", "alert", None, None)
    finally:
        store.close()
