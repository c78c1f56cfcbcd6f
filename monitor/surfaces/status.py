"""Status and history: what `monitor status` and `monitor history` show, as tables or JSON.

Feed names, URLs and errors come from strangers or hold credentials: URLs are shown with their
credentials masked, errors with every registered secret masked, and on the terminal every
string is plain text (never rich markup) on one line.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

import httpx
from rich.console import Console
from rich.table import Table
from rich.text import Text

from monitor.config import Config, NotifyConfig, format_duration
from monitor.delivery.notifier import targets
from monitor.models import MatchState
from monitor.pace import feed_interval, pace_of
from monitor.sources.cadence import Cadence, describe_seconds
from monitor.storage.database import safe_database_url, sqlite_path
from monitor.storage.entries import match_state
from monitor.storage.store import Store
from monitor.storage.tables import utcnow
from monitor.support.instance import HOST, process_alive
from monitor.support.logs import counted, printable
from monitor.support.secrets import mask_url, redact

ALIVE_SECONDS = 180  # three missed heartbeats
HEALTH_REPLY_LIMIT = 2048  # bytes of /healthz read: our daemon's reason is one short line


@dataclass(frozen=True)
class FeedStatus:
    """One feed's health as `status` shows it."""

    name: str
    url: str
    last_poll: datetime | None
    outcome: str | None
    http_status: int | None
    failures: int
    last_new_entry: datetime | None
    entries_seen: int
    health: str
    last_error: str | None
    polled_by: str | None
    every: float | None = None  # seconds between polls now (None: not in the config)
    every_why: str = ""


@dataclass(frozen=True)
class InstanceStatus:
    """One monitor process using the database."""

    id: str
    alive: bool
    heartbeat_age_s: float
    started_at: datetime
    leases: int


@dataclass(frozen=True)
class TargetStatus:
    """One notify target: its pace, and the alerts it has waiting."""

    name: str
    pace: str
    pending: int
    held: int
    next_release: datetime | None  # when the first held alert goes out
    last_error: str | None = None  # why the latest attempt at a waiting alert failed


@dataclass(frozen=True)
class WatchlistCounts:
    """A watchlist's matches and, of those, alerts, over the last day and week."""

    day: int = 0
    week: int = 0
    alerted_day: int = 0
    alerted_week: int = 0


@dataclass(frozen=True)
class DaemonHealth:
    """What the daemon serving `http.listen` says at /healthz: `healthy` is None when
    nothing answered there."""

    url: str
    healthy: bool | None
    reason: str


@dataclass(frozen=True)
class Status:
    """Everything `monitor status` reports."""

    feeds: list[FeedStatus]
    outbox: dict[str, int]
    watchlists: dict[str, WatchlistCounts]
    instances: list[InstanceStatus]
    targets: list[TargetStatus] = field(default_factory=list)
    database: str = ""  # the file or the server (password masked) this was read from
    daemon: DaemonHealth | None = None  # None without `http.listen`


def describe_pace(notify: NotifyConfig) -> str:
    """A target's pace in a few words, e.g. "digest every 1h; quiet 22:00-07:00 Asia/Seoul"."""
    parts = [f"digest every {format_duration(notify.digest_every)} from {notify.digest_at:%H:%M} "
             f"{notify.timezone}" if notify.mode == "digest" else "immediate"]
    if notify.rate_limit:
        parts.append(f"at most {notify.rate_limit[0]} per {format_duration(notify.rate_limit[1])}")
    if notify.quiet_hours:
        start, end = notify.quiet_hours
        bypass = "" if notify.urgent == "none" else f" ({notify.urgent} priority goes through)"
        parts.append(f"quiet {start:%H:%M}-{end:%H:%M} {notify.timezone}{bypass}")
    return "; ".join(parts)


def _targets(config: Config, store: Store) -> list[TargetStatus]:
    waiting = store.outbox.waiting_by_target()
    errors = store.outbox.last_errors()
    result = []
    for target, notify in zip(targets(config), config.notify or (None,), strict=True):
        pending, held, release = waiting.get(target.id, (0, 0, None))
        error = errors.get(target.id)
        result.append(TargetStatus(target.label, describe_pace(notify) if notify else
                                   "immediate", pending, held, release,
                                   redact(error) if error else None))
    return result


@dataclass(frozen=True)
class HistoryItem:
    """A past match."""

    seen_at: datetime
    watchlists: list[str]
    title: str
    link: str | None
    feed: str
    alerted: bool
    state: MatchState
    published: datetime | None  # as the feed dated it


_OUTCOMES = {"ok": "ok", "not_modified": "not modified", "error": "error"}


def describe_outcome(outcome: str | None) -> str:
    """A feed's last poll outcome in words ("not modified", not "not_modified")."""
    return _OUTCOMES.get(outcome or "", outcome or "-")


def gather_status(config: Config, store: Store) -> Status:
    """Read the state of every configured feed, the outbox, watchlists and instances."""
    now = utcnow()
    configured = {f.url for f in config.feeds}
    # A config without feeds (or one too broken to read) shows every feed the database knows.
    rows = [r for r in store.feeds.all() if not configured or r.url in configured]
    held = {r.url: r.lease_owner for r in rows if r.lease_until and r.lease_until > now}
    paces = {f.url: feed_interval(f, config, pace_of(r), now)
             for f in config.feeds for r in rows if r.url == f.url}
    feeds = [FeedStatus(redact(r.name), mask_url(r.url), r.last_poll_at, r.last_status,
                        r.http_status, r.consecutive_failures, r.last_new_entry_at,
                        r.entries_seen, r.health, redact(r.last_error) if r.last_error else None,
                        held.get(r.url), *_every(paces.get(r.url))) for r in rows]
    counts = {w.name: WatchlistCounts() for w in config.watchlists}
    for entry, _ in store.entries.matches_since(now - timedelta(days=7)):
        today, alerted = entry.seen_at >= now - timedelta(days=1), entry.alerted
        for name in json.loads(entry.matched):
            was = counts.get(name, WatchlistCounts())
            counts[name] = WatchlistCounts(was.day + today, was.week + 1,
                                           was.alerted_day + (today and alerted),
                                           was.alerted_week + alerted)
    instances = []
    for row in store.instances.all():
        age = (now - row.heartbeat_at).total_seconds()
        # On this host a process that is gone is known at once; elsewhere only by its silence.
        alive = age <= ALIVE_SECONDS and (row.host != HOST or process_alive(row.pid))
        if age <= 7 * 86400:
            instances.append(InstanceStatus(row.id, alive, age, row.started_at,
                                            sum(owner == row.id for owner in held.values())))
    return Status(feeds, store.outbox.counts(), counts, instances, _targets(config, store),
                  str(sqlite_path(store.url) or safe_database_url(store.url)))


def ask_daemon(listen: str) -> DaemonHealth:
    """Ask the daemon listening at `listen` (HOST:PORT) how it is: it alone knows what it met
    in memory, such as a database that refuses writes while reads still work."""
    host, _, port = listen.rpartition(":")
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "[::]": "[::1]"}.get(host, host)  # noqa: S104
    url = f"http://{host}:{port}/healthz"
    try:
        with httpx.stream("GET", url, timeout=3) as reply:
            body = next(reply.iter_bytes(HEALTH_REPLY_LIMIT), b"")  # the first 2 KB alone
    except httpx.HTTPError as error:
        return DaemonHealth(url, None, f"no answer ({type(error).__name__}: {error})")
    reason = redact(body.decode("utf-8", "replace").strip())
    return DaemonHealth(url, reply.status_code == 200, reason)


def _every(cadence: Cadence | None) -> tuple[float | None, str]:
    return (cadence.seconds, cadence.reason) if cadence else (None, "")


def format_time(value: datetime | None) -> str:
    """A UTC time to the minute, or "never"."""
    return value.strftime("%Y-%m-%d %H:%M") if value else "never"


def status_json(status: Status) -> str:
    """The status as one JSON document."""
    return json.dumps(asdict(status), default=lambda v: v.isoformat(), ensure_ascii=False,
                      indent=1)


def render_status(status: Status, console: Console) -> None:
    """The status as tables."""
    _plain(console, f"database: {status.database}")
    if status.daemon:
        health = status.daemon
        verdict = {True: "healthy", False: "NOT HEALTHY:", None: "not running?"}[health.healthy]
        _plain(console, f"daemon at {health.url}: {verdict} "
                        f"{'' if health.healthy else health.reason}".rstrip())
    table = Table(title="feeds (times in UTC)")
    for column in ("feed", "last poll", "outcome", "HTTP", "fails", "last new entry", "seen",
                   "health", "every", "why", "last error"):
        table.add_column(column, overflow="fold")
    for feed in status.feeds:
        style = "red" if feed.health == "failing" else "yellow" if feed.failures else ""
        cells = (feed.name, format_time(feed.last_poll), describe_outcome(feed.outcome),
                 str(feed.http_status or "-"), str(feed.failures),
                 format_time(feed.last_new_entry), str(feed.entries_seen), feed.health,
                 describe_seconds(feed.every) if feed.every else "-", feed.every_why,
                 (feed.last_error or "")[:80])
        table.add_row(*(Text(printable(cell)) for cell in cells), style=style)
    console.print(table)
    _plain(console, "outbox: " + ", ".join(f"{n} {state}" for state, n in status.outbox.items()))
    for target in status.targets:
        waiting = f"{target.pending} waiting"
        if target.held:
            waiting += (f", {target.held} held until {format_time(target.next_release)} UTC")
        failing = f"; last attempt failed: {target.last_error}" if target.last_error else ""
        _plain(console, f"target {target.name}: {target.pace}; {waiting}{failing}")
    for name, window in status.watchlists.items():
        _plain(console, f"watchlist {name}: {counted(window.alerted_day, 'alert')} of "
                      f"{counted(window.day, 'match', 'matches')} in the last day, "
                      f"{counted(window.alerted_week, 'alert')} of "
                      f"{counted(window.week, 'match', 'matches')} in the last week")
    for instance in status.instances:
        _plain(console, f"instance {instance.id}: {'alive' if instance.alive else 'gone'}, last "
                      f"heartbeat {instance.heartbeat_age_s:.0f}s ago, started "
                      f"{format_time(instance.started_at)} UTC, "
                      f"holds {counted(instance.leases, 'feed lease')}")


def _plain(console: Console, line: str) -> None:
    """Print `line` as text: no markup, no highlighting, no control characters, and no line
    breaks added (a terminal wraps it; a pipe gets it whole)."""
    console.print(printable(line), markup=False, highlight=False, soft_wrap=True)


def find_history(store: Store, since: datetime, watchlist: str | None,
                 grep: str | None) -> list[HistoryItem]:
    """Past matches since `since`, newest first, optionally of one watchlist or with a text."""
    items = []
    needle = (grep or "").casefold()
    for entry, feed in store.entries.matches_since(since):
        names = list(json.loads(entry.matched))
        if watchlist and watchlist not in names:
            continue
        if needle and needle not in f"{entry.title}\n{entry.summary}".casefold():
            continue
        items.append(HistoryItem(entry.seen_at, names, entry.title, entry.link, redact(feed),
                                 entry.alerted, match_state(entry), entry.published))
    return items


def render_history(items: list[HistoryItem], console: Console, as_json: bool) -> None:
    """Past matches as readable lines (two a match on a terminal, one in a pipe) or one JSON
    object a line. Times are UTC: when monitor saw it, and when the feed says it was
    published."""
    for item in items:
        if as_json:
            print(json.dumps(asdict(item), default=lambda v: v.isoformat(), ensure_ascii=False))
        else:
            alerted = "" if item.alerted else f" ({item.state.describe()})"
            published = format_time(item.published) if item.published else "undated"
            head = f"{format_time(item.seen_at)}  [{', '.join(item.watchlists)}] " \
                   f"{item.title}{alerted}"
            tail = f"{item.link or '(no link)'}  ({item.feed}; published {published})"
            if console.is_terminal:
                _plain(console, head)
                _plain(console, "    " + tail)
            else:  # one record a line, for grep and sort
                _plain(console, f"{head}  {tail}")
