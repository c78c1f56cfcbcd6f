"""The pipeline: the one place that wires the stages, fetch → parse → match → store → deliver.

`Runtime.from_config` opens what a cycle needs, `Runtime.reconfigure` applies a reloaded config,
and `Runtime.run_cycle` polls every feed, checks feed health and delivers what is due. The
daemon's jobs, `monitor run --once`, `match`, `feeds add` and the benchmarks all go through
here, so they cannot drift apart. A poll never raises for a feed's own trouble: it records the
failure, logs one line naming the feed, and returns a `PollReport`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from monitor import __version__
from monitor.config import ENV_FILE, Config, FeedConfig, load_config
from monitor.delivery.message import alert_fields, headline, render_update
from monitor.delivery.notifier import Target, route, targets
from monitor.delivery.outbox import deliver_due
from monitor.errors import FetchError, ParseError, StoreError
from monitor.health import check_health
from monitor.matching.matcher import Watchlists, compile_watchlists, match_entry
from monitor.models import (
    CycleReport,
    DeliveryKind,
    DeliveryReport,
    Draft,
    Entry,
    Failure,
    FetchResult,
    FetchStatus,
    LeaseEnd,
    LeaseRequest,
    Match,
    PollReport,
    PollStatus,
    Seen,
    Unchanged,
)
from monitor.pace import adaptive, boost_carriers, feed_interval, learn_pace, pace_of
from monitor.sources.cadence import Cadence, Pace
from monitor.sources.fetcher import Fetcher
from monitor.sources.increment import split_items
from monitor.sources.parser import ParsedFeed, parse_feed
from monitor.sources.workers import ParserPool
from monitor.storage.coalescer import Coalescer
from monitor.storage.store import Store
from monitor.storage.tables import FeedRow, utcnow
from monitor.support import metrics
from monitor.support.backoff import feed_backoff, retry_at
from monitor.support.instance import HOST, OWNER, process_alive
from monitor.support.logs import counted
from monitor.support.secrets import register_secrets, secrets_of

log = logging.getLogger("monitor")
MAX_SKIPPED_LOGGED = 5  # unreadable entries logged per poll: a hostile feed cannot flood the log
GRACE_SECONDS = 30.0  # a replaced fetcher or parser pool is closed this long after a reload
MAX_FEED_FILE = 50 * 1024**2  # a feed read from a file (`match FILE`)


@dataclass
class Runtime:
    """The running pipeline: the config and what it opened (store, fetcher, parser pool,
    compiled watchlists, targets), and the cycle's steps as methods."""

    config: Config
    store: Store
    fetcher: Fetcher
    parsers: ParserPool
    watchlists: Watchlists
    targets: list[Target]
    # After polling a feed, keep its lease this share of its interval, so other instances
    # sharing the database skip it until then (the daemon sets 0.5; a one-shot run 0).
    hold_fraction: float = 0.0
    # Leases taken and nothing-new polls recorded by many polls at once, one transaction each.
    claims: Coalescer[LeaseRequest, FeedRow | None] = field(init=False)
    unchanged: Coalescer[Unchanged, None] = field(init=False)
    # Polls under way at once: fetching, or waiting for a parser or the database. Twice the
    # fetch concurrency keeps the parsers fed while fetches continue.
    in_flight: asyncio.Semaphore = field(init=False)
    # Each feed's pace as last read from or written to its row (see `pace`).
    paces: dict[str, Pace] = field(default_factory=dict)
    # Each feed's items in its last recorded document: fingerprint → date (see `increment`).
    increments: dict[str, dict[bytes, datetime | None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.claims = Coalescer(self.store.feeds.lease)
        self.unchanged = Coalescer(self.store.feeds.record_unchanged)
        self.in_flight = asyncio.Semaphore(2 * self.config.poll.concurrency)

    @classmethod
    def from_config(cls, config: Config, store: Store | None = None,
                    fetcher: Fetcher | None = None) -> Runtime:
        """Open the database (unless given), register this instance, compile the watchlists
        and start what polling needs."""
        store = store or Store(config.database)
        store.feeds.ensure(config.feeds)
        freed = store.instances.free_dead(HOST, process_alive)
        if freed:
            log.warning("%d alerts claimed by a process that died are due again", freed)
        store.instances.heartbeat(OWNER, HOST, os.getpid(), __version__)
        return cls(config=config, store=store, fetcher=fetcher or Fetcher(config.poll),
                   parsers=_parsers(config), watchlists=compile_watchlists(config),
                   targets=targets(config),
                   paces={row.url: pace_of(row) for row in store.feeds.all()})

    def interval_of(self, feed: FeedConfig) -> Cadence:
        """How often `feed` is polled now, and why (see `pace`)."""
        return feed_interval(feed, self.config, self.paces.get(feed.url, Pace()), utcnow())

    def reconfigure(self, config: Config) -> None:
        """Apply a reloaded config. A new `poll` section gets a new fetcher and parser pool;
        the old ones are closed after a grace period, so polls under way finish with them."""
        self.store.feeds.ensure(config.feeds)
        self.watchlists, self.targets = compile_watchlists(config), targets(config)
        if config.poll != self.config.poll:
            old_fetcher, old_parsers = self.fetcher, self.parsers
            self.fetcher, self.parsers = Fetcher(config.poll), _parsers(config)
            self.in_flight = asyncio.Semaphore(2 * config.poll.concurrency)
            loop = asyncio.get_running_loop()
            loop.call_later(GRACE_SECONDS, lambda: asyncio.ensure_future(old_fetcher.close()))
            loop.call_later(GRACE_SECONDS, old_parsers.close)
        self.config = config

    async def poll(self, feed: FeedConfig, force: bool = False) -> PollReport:
        """Poll one feed (see `poll`)."""
        return await poll(feed, self, force)

    async def poll_all(self, force: bool = False) -> list[PollReport]:
        """Poll every configured feed concurrently (see `poll_all`)."""
        return await poll_all(self, force)

    def check_health(self) -> int:
        """Update the configured feeds' health, queueing notices; how many changed."""
        return check_health(self.store, {f.url for f in self.config.feeds}, self.targets,
                            self.config.health)

    async def deliver(self, now: datetime | None = None) -> DeliveryReport:
        """Send what is due in the outbox (`now`: the clock, for tests)."""
        return await deliver_due(self.store, self.targets, self.config.delivery, now=now)

    async def run_cycle(self, force: bool = True, now: datetime | None = None) -> CycleReport:
        """One whole cycle: every feed polled, feed health checked, due alerts delivered. A
        feed's alerts go out moments after it is recorded, so a slow feed holds back only its
        own (see `_EarlyDelivery`)."""
        early = _EarlyDelivery(self, now)
        polls = await poll_all(self, force, on_queued=early.request)
        changed = await asyncio.to_thread(self.check_health)
        return CycleReport(polls, changed, await early.finish())

    def heartbeat(self) -> None:
        """Tell other instances sharing the database that this one is alive."""
        self.store.instances.heartbeat(OWNER, HOST, os.getpid(), __version__)

    async def close(self) -> None:
        """Close connections, stop parser workers and release the database."""
        await self.fetcher.close()
        self.parsers.close()
        with contextlib.suppress(StoreError):
            self.store.instances.retire(OWNER)
        self.store.close()


def open_config(path: Path | str) -> Config:
    """Load and validate the config; register its secrets for log masking; warn when a file
    holding a token can be read by other users."""
    config = load_config(path)
    secrets = register_config_secrets([n.url for n in config.notify],
                                      [f.url for f in config.feeds], config.database)
    found = os.stat(path)
    if found.st_mode & (stat.S_IRGRP | stat.S_IROTH):
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        if any(secret in text for secret in secrets):
            log.warning("config %s holds a token and is readable by other users (mode %o): "
                        "move the token to %s beside it as NAME=value (mode 600) and write "
                        "${NAME} in its place%s", path, stat.S_IMODE(found.st_mode), ENV_FILE,
                        # chmod is safe advice only where the owner is the one running it.
                        ", or chmod 600 it" if found.st_uid == os.geteuid() != 0 else "")
    return config


def register_config_secrets(notify_urls: Sequence[str], feed_urls: Sequence[str],
                            database: str) -> list[str]:
    """Register the secrets in a config's URLs for masking in every output; returns them."""
    secrets = [s for url in notify_urls for s in secrets_of(url)]
    secrets += [s for url in feed_urls for s in secrets_of(url, guess=False)]
    try:
        password = make_url(database).password if "@" in database else None
    except (ArgumentError, ValueError):  # the store says what is wrong with the URL
        password = None
    if password:
        secrets.append(str(password))
    register_secrets(secrets)
    return secrets


def _parsers(config: Config) -> ParserPool:
    poll_config = config.poll
    return ParserPool(poll_config.parsers, poll_config.parse_timeout, poll_config.parse_memory,
                      idle_after=poll_config.parse_idle)


def _eligible(entry: Entry, first_poll: bool, config: Config, now: datetime) -> bool:
    """Whether a new entry may alert: not older than max age, and on a feed's first poll only
    the entries inside the backfill window (so adding a feed neither floods nor drops news).
    """
    if entry.published is None:  # undated: cannot tell old from new, so it counts as new
        return True
    age = (now - entry.published).total_seconds()
    return age <= config.poll.max_age and (not first_poll or age <= config.poll.backfill)


def _judge(entries: Sequence[Entry], watchlists: Watchlists, targets: Sequence[Target],
           config: Config, *, first_poll: bool, feed_tags: tuple[str, ...]) -> list[Seen]:
    """Match new entries and draft the alerts of those that may alert, one per target their
    tags route to."""
    now, items = datetime.now(UTC), []
    for entry in entries:
        try:
            matches = match_entry(entry, watchlists)
        except Exception as error:  # one entry must not cost its feed's other entries
            log.error("feed %s: entry %r recorded without matching (a bug; please report "
                      "it): %r", entry.feed_name, entry.title[:120], error)
            matches = []
        drafts: list[Draft] = []
        if matches and _eligible(entry, first_poll, config, now):
            facts = alert_fields(entry, matches)
            # Only the facts are kept: the message is rendered for each target when it is
            # sent (with the sources known by then); the headline names it in logs.
            title, fields = headline(facts), facts.to_json()
            tags = {tag for m in matches for tag in m.tags} | set(feed_tags)
            drafts = [Draft(t.id, t.label, title, "", fields) for t in route(targets, tags)]
        items.append(Seen(entry, matches, drafts))
    return items


def _fail(rt: Runtime, feed: FeedConfig, row: FeedRow, failure: Failure, release: LeaseEnd, *,
          status: PollStatus = PollStatus.ERROR) -> PollReport:
    assert row.id is not None
    failures = row.consecutive_failures + 1
    when = retry_at(failures, *feed_backoff(rt.interval_of(feed).seconds))
    if failure.retry_after:
        when = max(when, utcnow() + timedelta(seconds=min(failure.retry_after, 86400)))
    rt.store.feeds.record_failure(row.id, failure, when, release)
    first = "" if failures > 1 else " (started failing)" if row.last_success_at else \
        " (never polled successfully yet)"
    log.warning("feed %s failed%s, %d in a row: %s", feed.title, first, failures, failure.reason)
    return PollReport(feed.title, status, error=failure.reason)


async def poll(feed: FeedConfig, rt: Runtime, force: bool = False) -> PollReport:
    """Fetch, parse, dedupe, match and record one feed; alerts are queued, not sent.

    A database failure records nothing (the transaction rolls back), so the same entries are
    new again at the next poll: nothing is lost.
    """
    try:
        # A feed is claimed only when this instance can poll it now: instances sharing the
        # database split the feeds instead of one taking them all, and no lease runs out
        # while its feed waits its turn.
        async with rt.in_flight:
            row = await rt.claims.submit(LeaseRequest(feed.url, OWNER, rt.config.poll.lease,
                                               not force))
            if row is None or row.id is None:
                return await asyncio.to_thread(_skipped, rt, feed)
            rt.paces[feed.url] = pace_of(row)
            hold = rt.interval_of(feed).seconds * rt.hold_fraction
            release = LeaseEnd(OWNER, utcnow() + timedelta(seconds=hold))
            try:
                return await _poll(feed, rt, row, release)
            except (StoreError, asyncio.CancelledError):
                await asyncio.to_thread(rt.store.feeds.end_lease, row.id, OWNER, 0)
                raise
            except Exception as error:  # a bug or a hostile input we did not foresee
                # Recorded like any failure, so it counts toward the feed's health.
                log.debug("traceback", exc_info=error)
                failed = Failure(f"internal error (a bug; please report it): {error!r}"[:300])
                return await asyncio.to_thread(_fail, rt, feed, row, failed, release)
    except StoreError as error:
        log.error("feed %s: database error, nothing recorded (the next poll retries): %s",
                  feed.title, error)
        return PollReport(feed.title, PollStatus.DATABASE_ERROR, error=str(error))


def _skipped(rt: Runtime, feed: FeedConfig) -> PollReport:
    row = rt.store.feeds.get(feed.url)
    rt.paces[feed.url] = pace_of(row)  # as the instance that polls it learned it
    if row.next_poll_at and row.next_poll_at > utcnow():
        return PollReport(feed.title, PollStatus.BACKING_OFF, error=row.last_error)
    return PollReport(feed.title, PollStatus.LEASED, error=f"polled by {row.lease_owner}")


async def _poll(feed: FeedConfig, rt: Runtime, row: FeedRow, release: LeaseEnd) -> PollReport:
    assert row.id is not None
    fetch = await rt.fetcher.fetch(feed.url, row.etag, row.last_modified)
    metrics.FETCH_SECONDS.observe(fetch.elapsed)
    metrics.POLLS.labels(fetch.status.value).inc()
    if fetch.status is FetchStatus.ERROR:
        failed = Failure(fetch.error or "fetch failed", fetch.http_status, fetch.retry_after)
        return await asyncio.to_thread(_fail, rt, feed, row, failed, release)
    if row.consecutive_failures:
        log.info("feed %s recovered after %d failures", feed.title, row.consecutive_failures)
    body_hash = hashlib.sha256(fetch.body).hexdigest() if fetch.status is FetchStatus.OK else None
    if fetch.status is FetchStatus.NOT_MODIFIED or body_hash == row.body_hash:
        await rt.unchanged.submit(Unchanged(row.id, fetch, row.body_hash, release))
        log.debug("feed %s unchanged", feed.title)
        return PollReport(feed.title, PollStatus.UNCHANGED)
    with metrics.PARSE_SECONDS.time():
        reading = await _read(rt, feed, fetch)
    parsed = reading.parsed
    if parsed.error:
        failed = Failure(parsed.error, fetch.http_status)
        return await asyncio.to_thread(_fail, rt, feed, row, failed, release,
                                       status=PollStatus.PARSE_ERROR)
    for reason in parsed.skipped[:MAX_SKIPPED_LOGGED]:
        log.warning("feed %s: %s", feed.title, reason)
    # Dedupe, match and record in a thread: the event loop keeps fetching meanwhile.
    items, queued, boosted = await asyncio.to_thread(_record, rt, row, fetch, body_hash,
                                                     reading, feed=feed, release=release)
    # Recorded: the next changed document is read from its new items on (see `increment`).
    if reading.known is None:
        rt.increments.pop(feed.url, None)
    else:
        rt.increments[feed.url] = reading.known
    matched = sum(1 for item in items if item.matches)
    metrics.ENTRIES.inc(len(items))
    for match in (m for item in items for m in item.matches):
        metrics.MATCHES.labels(match.watchlist).inc()
    read = "" if reading.whole else f" ({len(parsed.entries)} changed, read alone)"
    log.info("feed %s: %s%s, %d new, %d matched, %s queued", feed.title,
             counted(reading.items, "entry", "entries"), read, len(items), matched,
             counted(queued, "alert"))
    return PollReport(feed.title, PollStatus.OK, new=len(items), matched=matched, queued=queued,
                      boosted=boosted)


@dataclass(frozen=True)
class _Reading:
    """A changed document as parsed: whole, or only its new items."""

    parsed: ParsedFeed
    items: int  # entries the whole document holds
    published: list[datetime]  # their dates, for the feed's pace
    known: dict[bytes, datetime | None] | None  # item fingerprints → dates, once recorded
    whole: bool = True


async def _read(rt: Runtime, feed: FeedConfig, fetch: FetchResult) -> _Reading:
    """Parse the new items alone when the last recorded document of this feed was cut into
    items one for one, else (and whenever that reading is in doubt) the whole document."""
    split = await asyncio.to_thread(split_items, fetch.body)
    known = rt.increments.get(feed.url)
    if split is not None and known is not None:
        smaller, kept = split.without(known)
        parsed = await rt.parsers.parse(smaller, feed.url, feed.name or "", fetch.headers)
        if not parsed.error and len(parsed.entries) == kept:
            new = [p for p in split.fingerprints if p not in known]
            dates = {p: known[p] for p in split.fingerprints if p in known}
            dates.update(zip(new, (e.published for e in parsed.entries), strict=True))
            return _Reading(parsed, len(split.items), [d for d in dates.values() if d], dates,
                            whole=False)
    parsed = await rt.parsers.parse(fetch.body, feed.url, feed.name or "", fetch.headers)
    whole: dict[bytes, datetime | None] | None = None
    if split is not None and not parsed.error and len(parsed.entries) == len(split.items):
        whole = dict(zip(split.fingerprints, (e.published for e in parsed.entries), strict=True))
    return _Reading(parsed, len(parsed.entries),
                    [e.published for e in parsed.entries if e.published], whole)


def _record(rt: Runtime, row: FeedRow, fetch: FetchResult, body_hash: str | None,
            reading: _Reading, *, feed: FeedConfig, release: LeaseEnd
            ) -> tuple[list[Seen], int, tuple[str, ...]]:
    assert row.id is not None
    parsed = reading.parsed
    entries = parsed.entries
    unseen = rt.store.entries.unseen(row.id, entries)
    items = _judge(unseen, rt.watchlists, rt.targets, rt.config,
                   first_poll=row.last_success_at is None, feed_tags=feed.tags)
    queued = rt.store.entries.record_poll(row.id, fetch, body_hash, items, release,
                                          outlet=parsed.title)
    if any(t.updates for t in rt.targets):
        queued += _note_updates(rt.store, rt.targets, row.id, entries)
    now = utcnow()
    if adaptive(feed, rt.config):
        rt.paces[feed.url] = learn_pace(rt.store, rt.config, row, fetch, parsed, now=now,
                                        published=reading.published)
    alerted = sorted({m.watchlist for item in items if item.drafts for m in item.matches})
    boosted = boost_carriers(rt.store, rt.config, alerted, now)
    for url, until in boosted.items():
        rt.paces[url] = replace(rt.paces.get(url, Pace()), boost_until=until)
    return items, queued, tuple(boosted)


def _note_updates(store: Store, targets: Sequence[Target], feed_id: int,
                  entries: Sequence[Entry]) -> int:
    """Queue one "updated" note per alerted entry the feed re-titled, to the targets that got
    its alert and asked for notes; never a second alert."""
    queued = 0
    for revision in store.entries.retitled(feed_id, entries):
        title, body = render_update(revision.entry, revision.old_title)
        drafts = [Draft(t.id, t.label, title, body, kind=DeliveryKind.UPDATE)
                  for t in targets if t.updates and t.id in revision.targets]
        queued += store.entries.record_revision(revision.entry_id, revision.entry.title, drafts)
    return queued


async def read_feed(config: Config, source: str) -> ParsedFeed:
    """The feed at `source` (an http(s) URL, fetched with the configured limits, or a file),
    parsed; for `match` and `feeds add`. FetchError when it cannot be read, ParseError when it
    is not a feed."""
    if source.startswith(("http://", "https://")):
        fetcher = Fetcher(config.poll)
        try:
            result = await fetcher.fetch(source)
        finally:
            await fetcher.close()
        if result.status is not FetchStatus.OK:
            raise FetchError(result.error or "not fetched")
        body, headers = result.body, result.headers
    else:
        try:
            if Path(source).stat().st_size > MAX_FEED_FILE:
                raise FetchError(f"larger than {MAX_FEED_FILE // 1024**2} MB")
            body, headers = Path(source).read_bytes(), {}
        except OSError as error:
            raise FetchError(str(error)) from None
    parsed = parse_feed(body, source, "", headers)
    if parsed.error:
        raise ParseError(parsed.error)
    return parsed


def match_entries(entries: Sequence[Entry], watchlists: Watchlists) -> list[tuple[Entry, Match]]:
    """Each entry with each watchlist it satisfies, in order (nothing is recorded)."""
    return [(entry, match) for entry in entries for match in match_entry(entry, watchlists)]


class _EarlyDelivery:
    """Deliveries during a cycle: a pass shortly after a feed queued alerts (the wait lets the
    reports of the same story from feeds answering at the same moment be named in the alert),
    again while feeds keep queuing, and a last pass at the end. A cycle that ends within the
    wait makes only the last pass."""

    WAIT = 2.0  # seconds

    def __init__(self, rt: Runtime, now: datetime | None):
        self._rt, self._now = rt, now
        self._lock = asyncio.Lock()
        self._next: asyncio.Task[None] | None = None
        self._waiting = False  # the next pass has not started: it may still be called off
        self._reports: list[DeliveryReport] = []
        self._failure: Exception | None = None

    def request(self) -> None:
        """Deliver soon: a feed has just queued alerts."""
        if not self._waiting:
            self._waiting = True
            self._next = asyncio.get_running_loop().create_task(self._pass_soon())

    async def _pass_soon(self) -> None:
        await asyncio.sleep(self.WAIT)
        async with self._lock:
            self._waiting = False
            try:
                await self._pass()
            except Exception as error:  # kept for `finish`: a failed pass fails the cycle
                self._failure = self._failure or error

    async def _pass(self) -> None:
        self._reports.append(await self._rt.deliver(self._now))

    async def finish(self) -> DeliveryReport:
        """Call off a pass not started, wait for one under way, make the last one; the
        cycle's totals. An early pass that failed fails the cycle, as the last one would."""
        if self._next is not None and self._waiting:
            self._next.cancel()
        async with self._lock:
            if self._failure is not None:
                raise self._failure
            await self._pass()
        # Still waiting is what the last pass left; sent and expired add up.
        return DeliveryReport(sum(r.sent for r in self._reports), self._reports[-1].retrying,
                              sum(r.expired for r in self._reports))


async def poll_all(rt: Runtime, force: bool = False,
                   on_queued: Callable[[], None] | None = None) -> list[PollReport]:
    """Poll every configured feed concurrently (the fetcher bounds concurrency); `on_queued`
    is called as soon as a feed has queued alerts."""
    async def polled(feed: FeedConfig) -> PollReport:
        report = await poll(feed, rt, force)
        if report.queued and on_queued is not None:
            on_queued()
        return report

    results = await asyncio.gather(*(polled(f) for f in rt.config.feeds),
                                   return_exceptions=True)
    reports = []
    for feed, result in zip(rt.config.feeds, results, strict=True):
        if not isinstance(result, BaseException):
            reports.append(result)
            continue
        if not isinstance(result, Exception):
            raise result
        log.error("feed %s: internal error (a bug; please report it): %r", feed.title, result)
        log.debug("traceback", exc_info=result)
        reports.append(PollReport(feed.title, PollStatus.ERROR,
                                  error=f"internal error: {result!r}"))
    return reports
