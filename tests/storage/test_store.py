"""The store: schema version, idempotent recording, and clear errors for unusable databases."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from monitor.config import FeedConfig
from monitor.errors import StoreError
from monitor.models import Draft, Entry, FetchResult, FetchStatus, Hit, LeaseRequest, Match, Seen
from monitor.storage.store import Store
from monitor.storage.tables import SCHEMA_VERSION
from monitor.surfaces.cli import main
from tests.support.project import write_config

MATCH = Match("w", (), "normal", (Hit("a", "alpha", "alpha", "title", 0, 5),), "alpha", "title")
OK = FetchResult(url="https://a.example/f", status=FetchStatus.OK, http_status=200)


def _store(tmp_path: Path) -> tuple[Store, int]:
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    store.feeds.ensure([FeedConfig(url="https://a.example/f")])
    feed_id = store.feeds.get("https://a.example/f").id
    assert feed_id is not None
    return store, feed_id


def _seen(guid: str, link: str | None = None) -> Seen:
    entry = Entry("https://a.example/f", "F", guid, link, f"alpha story {guid}")
    return Seen(entry, [MATCH], [Draft("t1", "target", "title", "body")])


def test_schema_version_is_recorded(tmp_path: Path) -> None:
    """A new database records the current schema version."""
    store, _ = _store(tmp_path)
    assert store.schema_version() == SCHEMA_VERSION


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A database written by a newer monitor is refused with a clear message."""
    store, _ = _store(tmp_path)
    store.close()
    with sqlite3.connect(tmp_path / "m.db") as db:
        db.execute("update meta set value = '999' where key = 'schema_version'")
    with pytest.raises(StoreError, match="newer than this monitor"):
        Store(f"sqlite:///{tmp_path / 'm.db'}")


def test_recording_the_same_entries_twice_queues_once(tmp_path: Path) -> None:
    """A second writer recording entries already recorded queues nothing and raises nothing."""
    first, feed_id = _store(tmp_path)
    second = Store(f"sqlite:///{tmp_path / 'm.db'}")
    items = [_seen("g1"), _seen("g2")]
    assert first.entries.record_poll(feed_id, OK, "h", items) == 2
    assert second.entries.record_poll(feed_id, OK, "h", items) == 0
    assert first.outbox.counts()["pending"] == 2


def test_same_link_under_new_guid_is_not_a_new_story(tmp_path: Path) -> None:
    """A re-GUIDed entry with the same link is recorded but not alerted again."""
    store, feed_id = _store(tmp_path)
    assert store.entries.record_poll(feed_id, OK, "h", [_seen("g1", "https://a.example/x")]) == 1
    again = _seen("g2", "http://www.a.example/x")
    assert store.entries.record_poll(feed_id, OK, "h2", [again]) == 0
    assert len(store.entries.unseen(feed_id, [_seen("g2").entry, _seen("g3").entry])) == 1


@pytest.mark.parametrize("database", ["sqlite:////proc/forbidden/m.db", "nosuchdriver://x/y",
                                      "postgresql+nosuchdriver://u:pw@127.0.0.1/x"])
def test_unusable_database_exits_3_with_one_line(
        tmp_path: Path, database: str, capsys: pytest.CaptureFixture[str]) -> None:
    """An unwritable path or unknown driver is a database error (exit 3), password hidden."""
    config = write_config(tmp_path, [{"url": "http://127.0.0.1:9/f.xml"}], [],
                          database=database)
    assert main(["--config", str(config), "run", "--once"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("monitor: database error:")
    assert ":pw@" not in err
    assert len(err.strip().splitlines()) == 1


def test_story_recorded_silently_elsewhere_does_not_alert_later(tmp_path: Path) -> None:
    """A link first recorded without an alert (old on a feed's first poll) stays a known story:
    the same link under another GUID later queues nothing."""
    store, feed_id = _store(tmp_path)
    silent = Seen(_seen("g1", "https://a.example/old").entry, [MATCH], [])
    assert store.entries.record_poll(feed_id, OK, "h", [silent]) == 0
    assert store.entries.record_poll(feed_id, OK, "h2", [_seen("g2", "https://a.example/old")]) == 0
    assert store.outbox.counts()["pending"] == 0


def test_claiming_many_feeds_at_once_respects_other_instances_and_backoff(
        tmp_path: Path) -> None:
    """One transaction claims the free feeds, leaves those another instance holds or that are
    backing off, and answers in the order asked."""
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    urls = [f"https://a.example/{n}" for n in range(4)]
    store.feeds.ensure([FeedConfig(url=url) for url in urls])
    assert store.feeds.lease_one(urls[1], "other:1", 60) is not None
    with sqlite3.connect(tmp_path / "m.db") as db:
        db.execute("update feeds set next_poll_at = datetime('now', '+1 hour') where url = ?",
                   (urls[2],))
    rows = store.feeds.lease([LeaseRequest(url, "me:2", 60) for url in reversed(urls)])
    assert [row.url if row else None for row in rows] == [urls[3], None, None, urls[0]]
    forced = store.feeds.lease([LeaseRequest(urls[2], "me:2", 60, respect_backoff=False)])
    assert forced[0] is not None and forced[0].lease_owner == "me:2"


def test_nothing_new_polls_recorded_together_keep_or_update_validators(
        tmp_path: Path) -> None:
    """In one statement for many feeds: a 304 keeps the validators and hash, a same-body 200
    stores its new ones, failures are cleared, and only this instance's lease ends."""
    from datetime import timedelta

    from monitor.models import LeaseEnd, Unchanged
    from monitor.storage.tables import utcnow

    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    urls = ["https://a.example/304", "https://a.example/same", "https://a.example/other"]
    store.feeds.ensure([FeedConfig(url=url) for url in urls])
    ids = [store.feeds.get(url).id for url in urls]
    assert None not in ids
    first = FetchResult(url=urls[0], status=FetchStatus.OK, http_status=200, etag='"e1"',
                        last_modified="Mon, 01 Jan 2024 00:00:00 GMT")
    store.entries.record_poll(ids[0], first, "h1", [])
    store.feeds.lease_one(urls[0], "me:1", 60)
    store.feeds.lease_one(urls[2], "other:2", 60)
    with sqlite3.connect(tmp_path / "m.db") as db:
        db.execute("update feeds set consecutive_failures = 3, last_error = 'x'")
    until = utcnow() + timedelta(minutes=5)
    not_modified = FetchResult(url=urls[0], status=FetchStatus.NOT_MODIFIED, http_status=304)
    same = FetchResult(url=urls[1], status=FetchStatus.OK, http_status=200, etag='"e2"')
    store.feeds.record_unchanged([Unchanged(ids[0], not_modified, "h1", LeaseEnd("me:1", until)),
                            Unchanged(ids[1], same, "h2", LeaseEnd("me:1", until)),
                            Unchanged(ids[2], not_modified, None, LeaseEnd("me:1", until))])
    rows = {row.url: row for row in store.feeds.all()}
    kept, updated, other = rows[urls[0]], rows[urls[1]], rows[urls[2]]
    assert (kept.etag, kept.body_hash, kept.http_status) == ('"e1"', "h1", 304)
    assert kept.last_modified == "Mon, 01 Jan 2024 00:00:00 GMT"
    assert (updated.etag, updated.body_hash, updated.last_status) == ('"e2"', "h2", "ok")
    assert all(r.consecutive_failures == 0 and r.last_error is None for r in rows.values())
    assert kept.lease_until is not None and abs((kept.lease_until - until).total_seconds()) < 1
    assert other.lease_owner == "other:2" and other.lease_until != until


def test_version_2_database_gains_outlets_and_loses_credentials_in_names(
        tmp_path: Path) -> None:
    """Upgrading a v2 database adds `feeds.outlet` and masks the credentials in the feed
    names older versions wrote (a feed's URL was its name), also of feeds no longer
    configured."""
    url = "https://reader:pw-S3cret@a.example/f?passkey=PK-S3cret"
    Store(f"sqlite:///{tmp_path / 'm.db'}").close()
    with sqlite3.connect(tmp_path / "m.db") as db:
        db.execute("alter table feeds drop column outlet")
        db.execute("update meta set value = '2' where key = 'schema_version'")
        db.execute("insert into feeds (url, name, entries_seen, consecutive_failures, health)"
                   " values (?, ?, 0, 0, 'ok')", (url, url))
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        assert store.schema_version() == SCHEMA_VERSION
        [row] = store.feeds.all()
    finally:
        store.close()
    assert row.name == "https://***@a.example/f?passkey=***"
    assert row.outlet is None
