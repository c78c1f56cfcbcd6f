"""The command line: `monitor [--config PATH] COMMAND`.

Exit codes: 0 done (a `run --once` whose feeds partly failed included), 1 a command that did not
achieve its aim (a notify-test target failed, a match source unreadable), 2 bad usage or bad
config, 3 unusable database. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import TypeVar

from rich.console import Console
from rich.progress import track

from monitor import __version__
from monitor.config import (
    ENV_FILE,
    Config,
    FeedConfig,
    default_config_path,
    default_database_url,
    line_of,
    parse_duration,
    require_work,
    salvage,
)
from monitor.delivery.notifier import send, targets, url_problem
from monitor.errors import ConfigError, FetchError, OpmlError, ParseError, StoreError
from monitor.matching.matcher import compile_watchlists, match_entry
from monitor.models import PollStatus
from monitor.pipeline import (
    Runtime,
    match_entries,
    open_config,
    read_feed,
    register_config_secrets,
)
from monitor.sources.feedlist import (
    MAX_NAME,
    FeedLink,
    add_feeds,
    read_opml,
    write_opml,
    write_private,
)
from monitor.storage.database import safe_database_url, sqlite_path
from monitor.storage.store import Store
from monitor.storage.tables import utcnow
from monitor.support.logs import counted, printable, setup_logging
from monitor.support.secrets import redact
from monitor.surfaces.daemon import Daemon
from monitor.surfaces.report import describe_match, match_record
from monitor.surfaces.status import (
    ask_daemon,
    describe_pace,
    find_history,
    gather_status,
    render_history,
    render_status,
    status_json,
)

log = logging.getLogger("monitor")
EXIT_FAILED, EXIT_CONFIG, EXIT_DATABASE = 1, 2, 3
EXIT_PIPE = 128 + signal.SIGPIPE  # what a shell reports for a tool whose reader went away
T = TypeVar("T")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_CONFIG, f"monitor: error: {message} (see monitor --help)\n")


def _since(text: str) -> datetime:
    """`--since 7d` as the moment that long ago (a usage error when it is not a duration)."""
    try:
        return utcnow() - timedelta(seconds=parse_duration(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _arguments() -> argparse.ArgumentParser:
    parser = _Parser(prog="monitor", description="Watch news feeds and alert on watchlist "
                     "matches.")
    parser.add_argument("--version", action="version", version=f"monitor {__version__}")
    parser.add_argument("--config", type=Path, help="config file (default: $MONITOR_CONFIG, "
                        "else ./config.yaml)")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper)
    parser.add_argument("--log-format", default="text", choices=["text", "json"],
                        help="json: one object a line, for log shippers")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = commands.add_parser("run", help="run the daemon (foreground, for systemd)",
                              description="Run the daemon in the foreground: poll each feed on "
                              "its interval, match, record and deliver alerts. With `http.listen` "
                              "set it serves /healthz, /metrics, /feed.xml and a status page. "
                              "SIGHUP (systemctl reload) or saving the config re-reads it (a "
                              "broken edit keeps the last good config); SIGTERM or SIGINT stops "
                              "it after in-flight work. Exit 2: bad config; 3: unusable "
                              "database.")
    run.add_argument("--once", action="store_true", help="poll every feed once, deliver, exit")
    commands.add_parser("check", help="validate the config and exit",
                        description="Validate the config (keys, watchlists, every notify URL "
                        "with Apprise's parser), print what each target will receive and which "
                        "database is used. Exit 2 with `file:line: key: problem` on an error.")
    match = commands.add_parser("match", help="show watchlist matches in one feed document",
                                description="Read one feed (a file or an http(s) URL), match "
                                "its entries against the watchlists and explain each match. "
                                "Nothing is recorded or sent.")
    match.add_argument("source", help="a feed file or an http(s) URL")
    match.add_argument("--json", action="store_true", help="one JSON object a line")
    backtest = commands.add_parser("backtest", help="replay stored entries against the current "
                                   "watchlists, without alerting",
                                   description="Replay the entries stored since --since against "
                                   "the current watchlists: `+` what would match now and did "
                                   "not, `-` what no longer matches. Reads the database only.")
    backtest.add_argument("--since", default="7d", type=_since, help="how far back (default 7d)")
    backtest.add_argument("--watchlist", help="only this watchlist")
    backtest.add_argument("--json", action="store_true", help="one JSON object a line")
    commands.add_parser("notify-test", help="send a test message to every target",
                        description="Send a test message to every notify target and print "
                        "each outcome with the reason of a failure. Exit 1 if one failed.")
    status = commands.add_parser("status", help="show feed health, the outbox, watchlists and "
                                 "instances", description="Show the database's view: each "
                                 "feed's last poll and health, the outbox and each target's "
                                 "waiting alerts, matches and alerts per watchlist, and the "
                                 "instances. Reads the database only; never creates one.")
    status.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    history = commands.add_parser("history", help="list past matches",
                                  description="List past matches, newest first, with when each "
                                  "was seen and published and whether it alerted. Reads the "
                                  "database only.")
    history.add_argument("--watchlist", help="only this watchlist")
    history.add_argument("--since", default="7d", type=_since, help="how far back (default 7d)")
    history.add_argument("--grep", help="only matches whose title or summary holds this text")
    history.add_argument("--json", action="store_true", help="one JSON object a line")
    feeds = commands.add_parser("feeds", help="import, export or add feeds",
                                description="Change the feeds section of the config file "
                                "(the rest of the file is kept as written), or export it as "
                                "OPML.")
    feed_commands = feeds.add_subparsers(dest="feeds_command", required=True,
                                         parser_class=_Parser)
    opml_in = feed_commands.add_parser("import", help="add the feeds of an OPML file to the "
                                       "config (comments and order kept)")
    opml_in.add_argument("file", type=Path)
    opml_out = feed_commands.add_parser("export", help="write the feeds as OPML")
    opml_out.add_argument("-o", "--output", type=Path, help="a file instead of standard output")
    add = feed_commands.add_parser("add", help="check that URL is a feed, then add it")
    add.add_argument("url")
    add.add_argument("--name", help="the name shown in logs and alerts (default: its title)")
    commands.add_parser("init", help="write the starter config (the bundled default) if there "
                        "is none", description="Write the bundled default config to --config "
                        "(never over an existing file): mode 600 for a person; run as root, "
                        "mode 644 and a root-only `env` file beside it for tokens, as the "
                        "systemd service needs.")
    return parser


def _config_path(args: argparse.Namespace) -> Path:
    if args.config:
        path: Path = args.config
    elif not os.environ.get("MONITOR_CONFIG") and os.environ.get("CONFIGURATION_DIRECTORY"):
        path = Path(os.environ["CONFIGURATION_DIRECTORY"].split(":")[0]) / "config.yaml"
    else:
        path = default_config_path()
    return path


_ENV_TEMPLATE = """\
# Secrets for the config beside this file: NAME=value, one a line, used there as ${NAME}.
# Root's alone (mode 600): systemd reads it and hands the values to the service
# (EnvironmentFile=); `sudo monitor …` commands read it themselves.
# TELEGRAM_BOT_TOKEN=123456:ABC-DEF
"""


def _init(path: Path) -> int:
    """Write the bundled default config to `path`, never over an existing file. Run as root
    (the service's set-up) the config is readable by the service's user (it holds no secrets)
    and a root-only `env` file beside it is made for the tokens."""
    if path.exists():
        print(f"monitor: {path} already exists; not overwritten", file=sys.stderr)
        return EXIT_FAILED
    default = resources.files("monitor").joinpath("default-config.yaml").read_text("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    for_service = os.geteuid() == 0
    _write_new(path, default, 0o644 if for_service else 0o600)
    env = path.parent / ENV_FILE
    if for_service and not env.exists():
        _write_new(env, _ENV_TEMPLATE, 0o600)
        print(f"wrote {path} (readable by the service; keep tokens out of it) and {env} "
              "(root's alone: put tokens there as NAME=value and write ${NAME} in the config)")
    else:
        print(f"wrote {path}")
    print(f"next: add your Apprise targets under `notify`, then `monitor --config {path} check`")
    return 0


def _write_new(path: Path, text: str, mode: int) -> None:
    """Create `path` with `text` and exactly `mode` (whatever the umask)."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "w") as out:
        os.fchmod(out.fileno(), mode)
        out.write(text)


async def _run(config: Config, path: Path, once: bool) -> int:
    require_work(config)
    rt = Runtime.from_config(config)
    if not once:
        return await Daemon(rt, path).run()
    try:
        cycle = await rt.run_cycle()
    finally:
        await rt.close()
    reports, delivered = cycle.polls, cycle.delivery
    log.info("cycle done: %s polled, %d failed, %s, %s queued; %d sent, %d to retry, "
             "%d expired", counted(len(reports), "feed"), len(cycle.failed),
             counted(sum(r.new for r in reports), "new entry", "new entries"),
             counted(sum(r.queued for r in reports), "alert"), delivered.sent,
             delivered.retrying, delivered.expired)
    broken = next((r for r in reports if r.status is PollStatus.DATABASE_ERROR), None)
    if broken:
        print(f"monitor: database error: {redact(broken.error or '')}", file=sys.stderr)
        return EXIT_DATABASE
    return 0


def _check(config: Config) -> int:
    require_work(config)
    for index, notify in enumerate(config.notify):
        problem = url_problem(notify.url)
        if problem:  # the daemon would retry it for days
            loc = ("notify", index, "url")
            raise ConfigError(config.path, problem, key=f"notify[{index}].url",
                              line=line_of(config.path, loc))
    compiled = compile_watchlists(config)
    print(f"{config.path}: OK — {len(config.feeds)} feeds, {len(config.notify)} notify targets, "
          f"{len(config.watchlists)} watchlists, {len(compiled.terms) + len(compiled.regex_terms)}"
          " aliases")
    print(f"database: {_describe_database(config)}")
    for target, notify in zip(targets(config), config.notify, strict=False):
        print(f"target {target.label}: {describe_pace(notify)}; {notify.message_format}"
              + (f", tags {', '.join(target.tags)}" if target.tags else ""))
    return 0


def _describe_database(config: Config) -> str:
    """Which database the config leads to and whether it exists; a SQLite file in a folder
    that does not exist is a config error unless it is the unit's state directory (systemd
    creates that when the service starts)."""
    path = sqlite_path(config.database)
    if path is None:
        return f"{safe_database_url(config.database)} (a database server)"
    if path.exists():
        return f"{path}"
    if not path.parent.is_dir() and config.database != default_database_url(Path(config.path)):
        raise ConfigError(config.path, f"the folder {path.parent} does not exist (create it, "
                          "or fix the path)", key="database",
                          line=line_of(config.path, ("database",)))
    return f"{path} (not created yet: the daemon creates it on its first run)"


def _with_progress(items: list[T], description: str) -> Iterable[T]:
    """`items`, with a progress bar on a terminal when there are many; quiet in pipes."""
    console = Console(stderr=True)
    if console.is_terminal and len(items) > 50:
        return track(items, description=description, console=console, transient=True)
    return items


def _match(config: Config, source: str, as_json: bool) -> int:
    try:
        parsed = asyncio.run(read_feed(config, source))
    except FetchError as error:
        print(f"monitor: cannot read {source}: {error}", file=sys.stderr)
        return EXIT_FAILED
    except ParseError as error:
        print(f"monitor: {source}: {error}", file=sys.stderr)
        return EXIT_FAILED
    found = match_entries(parsed.entries, compile_watchlists(config))
    for entry, match in found:
        print(json.dumps(match_record(entry, match), ensure_ascii=False) if as_json
              else describe_match(entry, match))
    if not as_json:
        print(f"{len(found)} matches in {len(parsed.entries)} entries")
    return 0


def _backtest(config: Config, start: datetime, only: str | None, as_json: bool) -> int:
    """Replay stored entries against the current watchlists; nothing is alerted."""
    if only is not None and _unknown_watchlist(only, [w.name for w in config.watchlists]):
        return EXIT_FAILED
    store = Store(config.database, create=False)
    try:
        stored = store.entries.since(start)
    finally:
        store.close()
    compiled = compile_watchlists(config)
    counts = {"new": 0, "kept": 0, "lost": 0}
    for entry, before in _with_progress(stored, "replaying"):
        now = [m for m in match_entry(entry, compiled) if only in (None, m.watchlist)]
        lost = [w for w in before if only in (None, w) and w not in {m.watchlist for m in now}]
        for match in now:
            change = "kept" if match.watchlist in before else "new"
            counts[change] += 1
            if as_json:
                print(json.dumps({"change": change, **match_record(entry, match)},
                                 ensure_ascii=False))
            elif change == "new":
                print(describe_match(entry, match, mark="+ now matches "))
        for name in lost:
            counts["lost"] += 1
            if as_json:
                print(json.dumps({"change": "lost", "watchlist": name, "title": entry.title,
                                  "link": entry.link}, ensure_ascii=False))
            else:
                print(printable(f"- no longer matches [{name}] {entry.title}") + "\n"
                      + printable(f"  {entry.link or ''}") + "\n")
    if not as_json:
        print(f"{len(stored)} entries seen since {start:%Y-%m-%d %H:%M} UTC: "
              f"{counts['new'] + counts['kept']} match now ({counts['new']} new), "
              f"{counts['lost']} no longer match")
    return 0


async def _notify_test(config: Config) -> int:
    failures = 0
    for target in targets(config):
        outcome = await send(target, "monitor test", "This is a test alert from **monitor**.",
                             target.timeout or config.delivery.timeout)
        print(f"{target.label}: {'OK' if outcome.ok else 'FAILED: ' + (outcome.error or '')}")
        failures += not outcome.ok
    return EXIT_FAILED if failures else 0


def _status(config: Config, as_json: bool) -> int:
    store = Store(config.database, create=False)
    try:
        status = gather_status(config, store)
    finally:
        store.close()
    if config.http.listen:
        status = replace(status, daemon=ask_daemon(config.http.listen))
    if as_json:
        print(status_json(status))
    else:
        # In a pipe rich would assume 80 columns and fold every row: give it room.
        render_status(status, Console(width=None if sys.stdout.isatty() else 200))
    return 0


def _unknown_watchlist(name: str, known: list[str]) -> bool:
    """Say so (with the closest names) and return True when `name` is not a watchlist."""
    if name in known:
        return False
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5) or known[:3]
    print(f"monitor: no watchlist named {printable(name)!r}"
          + (f" (did you mean {', '.join(close)}?)" if close else ""), file=sys.stderr)
    return True


def _history(config: Config, args: argparse.Namespace) -> int:
    store = Store(config.database, create=False)
    try:
        items = find_history(store, args.since, args.watchlist, args.grep)
    finally:
        store.close()
    # A watchlist since removed from the config still has its history.
    if args.watchlist and not items and _unknown_watchlist(
            args.watchlist, [w.name for w in config.watchlists]):
        return EXIT_FAILED
    render_history(items, Console(), args.json)
    return 0


def _feeds(config: Config, path: Path, args: argparse.Namespace) -> int:
    if args.feeds_command == "export":
        text = write_opml(config)
        if args.output:
            write_private(args.output, text)
        else:
            sys.stdout.write(text)
        return 0
    if args.feeds_command == "import":
        try:
            links = read_opml(args.file.read_bytes())
        except (OSError, OpmlError) as error:
            print(f"monitor: cannot import {args.file}: {error}", file=sys.stderr)
            return EXIT_FAILED
    else:
        links = asyncio.run(_checked_feed(config, args.url, args.name))
        if not links:
            return EXIT_FAILED
    added, skipped = add_feeds(path, _with_progress(links, "importing"))
    print(f"{path}: {len(added)} feeds added, {len(skipped)} already there")
    return 0


async def _checked_feed(config: Config, url: str, name: str | None) -> list[FeedLink]:
    try:
        FeedConfig(url=url)
    except ValueError:
        print(f"monitor: {url} is not an http(s) URL", file=sys.stderr)
        return []
    try:
        parsed = await read_feed(config, url)
    except FetchError as error:
        print(f"monitor: cannot fetch {url}: {error}", file=sys.stderr)
        return []
    except ParseError as error:
        print(f"monitor: {url}: {error}", file=sys.stderr)
        return []
    return [FeedLink(url, (name or parsed.title)[:MAX_NAME] or None)]


_COMMANDS: dict[str, Callable[[Config, Path, argparse.Namespace], int]] = {
    "feeds": _feeds,
    "check": lambda config, path, args: _check(config),
    "run": lambda config, path, args: asyncio.run(_run(config, path, args.once)),
    "match": lambda config, path, args: _match(config, args.source, args.json),
    "backtest": lambda config, path, args: _backtest(config, args.since, args.watchlist,
                                                      args.json),
    "notify-test": lambda config, path, args: asyncio.run(_notify_test(config)),
    "status": lambda config, path, args: _status(config, args.json),
    "history": lambda config, path, args: _history(config, args),
}


# Commands that only read the database: with a broken config they warn and go on.
_READERS = ("status", "history")


def _dispatch(args: argparse.Namespace) -> int:
    path = _config_path(args)
    if args.command == "init":
        return _init(path)
    try:
        config = open_config(path)
    except ConfigError as error:
        if args.command not in _READERS or not path.exists():
            raise
        print(f"monitor: config error: {error} (showing the database anyway: every feed it "
              "knows, no targets)", file=sys.stderr)
        found = salvage(path)  # its secrets are masked as those of a good config
        register_config_secrets(found.notify_urls, found.feed_urls, found.database)
        config = Config(database=found.database, path=str(path))
    return _COMMANDS[args.command](config, path, args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `monitor` command."""
    args = _arguments().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        return _dispatch(args)
    except ConfigError as error:
        print(f"monitor: config error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreError as error:
        print(f"monitor: database error: {error}", file=sys.stderr)
        return EXIT_DATABASE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `monitor history | head`: the reader has all it wanted
        # Python would complain again when it flushes stdout at exit: point it nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE
    except Exception as error:  # the last line of defence: one line, not a traceback
        log.debug("traceback", exc_info=error)
        print(f"monitor: internal error: {error!r} (run with --log-level DEBUG for details)",
              file=sys.stderr)
        return EXIT_FAILED
