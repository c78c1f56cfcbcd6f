"""The command line: match, notify-test, status, and secrets kept out of every output."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.storage.store import Store
from monitor.support.logs import LineFilter
from monitor.support.secrets import register_secrets, secrets_of
from monitor.surfaces.cli import main
from tests.support.project import FEEDS, render_feed, wait_for, write_config
from tests.support.servers import FeedServer, Sink


def test_match_json_prints_one_object_per_match(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`match FILE --json` prints one JSON line per match with watchlist, title, link and terms."""
    config = write_config(tmp_path, [], [])
    feed = tmp_path / "ru.xml"
    feed.write_bytes(render_feed("russian.xml"))
    assert main(["--config", str(config), "match", str(feed), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 1
    assert lines[0]["watchlist"] == "russia-dprk"
    assert lines[0]["title"].startswith("Лавров прибыл в Пхеньян")
    assert lines[0]["link"] == "https://ru.example.com/politics/lavrov-pyongyang"
    assert lines[0]["terms"]
    assert lines[0]["entities"] == {"russia_related": ["Лавров*"], "dprk_related": ["Пхеньян*"]}


def test_match_over_http_and_human_output(tmp_path: Path, feed_server: FeedServer,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`match URL` fetches the feed and explains each match in readable text."""
    config = write_config(tmp_path, [], [])
    url = feed_server.serve("/id.xml", render_feed("indonesian.xml"))
    assert main(["--config", str(config), "match", url]) == 0
    out = capsys.readouterr().out
    assert "[russia-dprk] Rusia meratifikasi" in out
    assert "**" in out
    assert "1 matches in 2 entries" in out


@pytest.mark.parametrize(("source", "message"), [
    ("/nonexistent/feed.xml", "cannot read"),
    (str(FEEDS / "english.xml.expected.json"), "JSON that is not a JSON Feed"),
    ("http://127.0.0.1:9/x.xml", "cannot connect"),
])
def test_match_on_bad_sources_exits_1_with_a_reason(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], source: str, message: str) -> None:
    """A missing file, a non-feed or an unreachable URL is one line on stderr and exit 1."""
    config = write_config(tmp_path, [], [])
    assert main(["--config", str(config), "match", source]) == 1
    assert message in capsys.readouterr().err


def test_notify_test_reports_each_target(tmp_path: Path, sink: Sink,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """notify-test sends to each target and says which worked; a dead one makes it exit 1."""
    config = write_config(tmp_path, [], [{"url": sink.url, "name": "sink"},
                                          {"url": "json://127.0.0.1:9/x", "name": "dead"}])
    assert main(["--config", str(config), "notify-test"]) == 1
    out = capsys.readouterr().out
    assert "sink: OK" in out
    assert "dead: FAILED: FAILURE: A Connection error occurred sending JSON notification to " \
        "127.0.0.1." in out  # Apprise's reason, not only FAILURE
    assert sink.titles() == ["monitor test"]


def test_status_shows_feeds_and_outbox(tmp_path: Path, feed_server: FeedServer, sink: Sink,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """status lists each feed's outcome and counts the outbox by state."""
    feeds = [{"url": feed_server.serve("/ru.xml", render_feed("russian.xml")), "name": "RU"}]
    config = write_config(tmp_path, feeds, [{"url": sink.url}])
    main(["--config", str(config), "run", "--once"])
    capsys.readouterr()
    assert main(["--config", str(config), "status"]) == 0
    out = capsys.readouterr().out
    assert "RU" in out
    assert " ok " in out
    assert "1 sent" in out


def test_tokens_never_reach_the_log(tmp_path: Path, feed_server: FeedServer) -> None:
    """A target whose URL holds a password fails, and no output line contains the password."""
    secret = "hunter2-S3cr3t-T0ken"
    feeds = [{"url": feed_server.serve("/ru.xml", render_feed("russian.xml"))}]
    config = write_config(tmp_path, feeds, [{"url": f"json://bot:{secret}@127.0.0.1:9/h"}])
    done = subprocess.run([sys.executable, "-m", "monitor", "--log-level", "DEBUG", "--config",
                           str(config), "run", "--once"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "failed" in done.stderr
    assert secret not in done.stderr + done.stdout
    status = subprocess.run([sys.executable, "-m", "monitor", "--config", str(config), "status"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert secret not in status.stdout + status.stderr


def test_secret_filter_masks_telegram_style_tokens() -> None:
    """A Telegram bot token in an Apprise URL is masked in any log record that contains it."""
    token = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    register_secrets(secrets_of(f"tgram://{token}/-1001234567"))
    record = logging.LogRecord("apprise", logging.DEBUG, __file__, 1,
                               "POST https://api.telegram.org/bot%s/sendMessage", (token,), None)
    LineFilter().filter(record)
    assert "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw" not in record.getMessage()
    assert "123456789" not in record.getMessage()


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the version and exits 0."""
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.startswith("monitor ")


def test_backtest_shows_what_would_match_now_and_what_no_longer_does(
        tmp_path: Path, feed_server: FeedServer, sink: Sink,
        capsys: pytest.CaptureFixture[str]) -> None:
    """After a watchlist edit, backtest replays stored entries, lists gains and losses, and
    alerts nothing."""
    feeds = [{"url": feed_server.serve("/en.xml", render_feed("english.xml")), "name": "EN"},
             {"url": feed_server.serve("/ru.xml", render_feed("russian.xml")), "name": "RU"}]
    config = write_config(tmp_path, feeds, [{"url": sink.url}])
    assert main(["--config", str(config), "run", "--once"]) == 0
    sent = len(sink.received)
    edited = write_config(tmp_path, feeds, [{"url": sink.url}], entities={
        "noodles": ["naengmyeon"], "donetsk": ["Donetsk", "ДНР"]}, watchlists=[
        {"name": "russia-dprk", "entities": {"x": ["nothing-at-all"]}, "rules": [{"any": ["x"]}]},
        {"name": "donetsk", "rules": [{"any": ["donetsk"]}]}])
    capsys.readouterr()
    assert main(["--config", str(edited), "backtest", "--since", "1h"]) == 0
    out = capsys.readouterr().out
    assert "+ now matches [donetsk] DPR leader Pushilin" in out
    assert "- no longer matches [russia-dprk]" in out
    assert "1 no longer match" not in out  # two stories stopped matching, not one
    assert main(["--config", str(edited), "backtest", "--json", "--watchlist", "donetsk"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["change"] for r in records} == {"new"}
    assert len(records) == 2
    assert len(sink.received) == sent
    with pytest.raises(SystemExit) as usage:
        main(["--config", str(edited), "backtest", "--since", "soon"])
    assert usage.value.code == 2
    assert "invalid duration 'soon'" in capsys.readouterr().err


def test_config_with_a_token_readable_by_others_gets_a_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A config holding a token warns when group/other can read it, and not after chmod 600."""
    config = write_config(tmp_path, [{"url": "http://127.0.0.1:9/f.xml"}],
                          [{"url": "json://bot:Sup3rS3cretT0ken@127.0.0.1:9/x"}])
    config.chmod(0o644)
    assert main(["--config", str(config), "check"]) == 0
    err = capsys.readouterr().err
    assert "readable by other users (mode 644)" in err
    assert "move the token to env beside it as NAME=value (mode 600)" in err
    assert "Sup3rS3cretT0ken" not in err
    config.chmod(0o600)
    assert main(["--config", str(config), "check"]) == 0
    assert "readable" not in capsys.readouterr().err


@pytest.mark.parametrize(("euid", "modes"), [
    (1000, (0o600, None)),   # a person's own setup: private config, nothing else
    (0, (0o644, 0o600)),     # the service's: config readable by its user, tokens in root's env
])
def test_init_writes_the_bundled_config_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        euid: int, modes: tuple[int, int | None]) -> None:
    """`init` writes the bundled default where asked, and never overwrites; as root it also
    writes a root-only `env` file for tokens beside a config the service can read."""
    from tests.support.project import ROOT

    monkeypatch.setattr(os, "geteuid", lambda: euid)
    target = tmp_path / "etc" / "config.yaml"
    assert main(["--config", str(target), "init"]) == 0
    assert target.read_text("utf-8") == (ROOT / "config.yaml").read_text("utf-8")
    env = tmp_path / "etc" / "env"
    assert (target.stat().st_mode & 0o777,
            env.stat().st_mode & 0o777 if env.exists() else None) == modes
    assert main(["--config", str(target), "check"]) == 0
    assert main(["--config", str(target), "init"]) == 1
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize(("environment", "expected"), [
    ({"JOURNAL_STREAM": "8:123"}, "<4>monitor: feed closed failed"),
    ({}, " WARNING monitor: feed closed failed"),
])
def test_log_lines_fit_journald_or_a_terminal(tmp_path: Path, environment: dict[str, str],
                                              expected: str) -> None:
    """Under systemd a line carries its journald priority and no timestamp; else a timestamp."""
    import os

    config = write_config(tmp_path, [{"url": "http://127.0.0.1:9/x", "name": "closed"}], [])
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"} | environment
    done = subprocess.run([sys.executable, "-m", "monitor", "--config", str(config), "run",
                           "--once"], capture_output=True, text=True, env=env, timeout=60,
                          check=False)
    line = next(x for x in done.stderr.splitlines() if "feed closed failed" in x)
    assert expected in line
    assert line.startswith("<4>") is bool(environment)


def test_json_log_format(tmp_path: Path) -> None:
    """--log-format json writes one JSON object a line, naming the feed."""
    config = write_config(tmp_path, [{"url": "http://127.0.0.1:9/x", "name": "closed"}], [])
    done = subprocess.run([sys.executable, "-m", "monitor", "--log-format", "json", "--config",
                           str(config), "run", "--once"], capture_output=True, text=True,
                          timeout=60, check=False)
    records = [json.loads(line) for line in done.stderr.splitlines()]
    assert any(r["level"] == "warning" and "feed closed failed" in r["message"] for r in records)


def test_status_json_and_history(tmp_path: Path, feed_server: FeedServer, sink: Sink,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """status --json reports feeds, outbox, watchlist counts and instances; history lists past
    matches, filtered by watchlist and text."""
    feeds = [{"url": feed_server.serve("/en.xml", render_feed("english.xml")), "name": "EN"},
             {"url": feed_server.serve("/ru.xml", render_feed("russian.xml")), "name": "RU"}]
    config = write_config(tmp_path, feeds, [{"url": sink.url}])
    assert main(["--config", str(config), "run", "--once"]) == 0
    capsys.readouterr()
    assert main(["--config", str(config), "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert {f["name"]: f["outcome"] for f in status["feeds"]} == {"EN": "ok", "RU": "ok"}
    assert status["outbox"]["sent"] == 2
    # three stories matched, one of them too old to alert: matches and alerts counted apart
    assert status["watchlists"]["russia-dprk"] == {"day": 3, "week": 3, "alerted_day": 2,
                                                   "alerted_week": 2}
    assert status["instances"] == []  # the run stopped cleanly
    assert main(["--config", str(config), "history"]) == 0
    out = capsys.readouterr().out
    assert "[russia-dprk] Лавров прибыл в Пхеньян" in out
    old = [line for line in out.splitlines() if "Choe Son Hui" in line]
    assert len(out.splitlines()) == 3  # in a pipe: one record a line
    assert len(old) == 1 and "(not alerted: too old when first seen" in old[0]
    published = (datetime.now(UTC) - timedelta(hours=48)).strftime("%Y-%m-%d")
    assert f"(EN; published {published} " in old[0]  # beside the time it was seen
    assert main(["--config", str(config), "history", "--grep", "лавров", "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(x["feed"], x["state"]) for x in lines] == [("RU", "alerted")]
    assert lines[0]["published"]
    assert main(["--config", str(config), "history", "--watchlist", "other"]) == 1
    assert capsys.readouterr().out == ""  # no watchlist is named so: an error, no output


def test_unknown_watchlist_names_are_errors_naming_the_closest(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`history --watchlist` and `backtest --watchlist` with a name no watchlist has exit 1 and
    name the closest watchlists; a known name with nothing to show exits 0."""
    config = str(write_config(tmp_path, [], []))
    Store(f"sqlite:///{tmp_path / 'monitor.db'}").close()  # as the daemon leaves it
    for command in ("history", "backtest"):
        assert main(["--config", config, command, "--watchlist", "russia-dprc"]) == 1
        assert "no watchlist named 'russia-dprc' (did you mean russia-dprk?)" in \
            capsys.readouterr().err
        assert main(["--config", config, command, "--watchlist", "russia-dprk"]) == 0


def test_match_on_a_web_page_says_it_is_not_a_feed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`match` on an HTML page names the problem (not a feed) and exits 1 instead of reporting
    zero matches."""
    page = tmp_path / "page.html"
    page.write_text("<!doctype html><html><head><title>News</title></head><body><p>Putin and "
                    "Kim Jong Un met in Pyongyang.</p></body></html>", encoding="utf-8")
    config = str(write_config(tmp_path, [], []))
    assert main(["--config", config, "match", str(page)]) == 1
    out, err = capsys.readouterr()
    assert "not a feed" in err and "matches" not in out


def test_output_cut_short_by_its_reader_ends_quietly(tmp_path: Path) -> None:
    """`monitor match FILE --json | head -1`: once the reader is gone the command stops with
    the shell's broken-pipe status (141) and writes nothing to stderr."""
    items = "".join(f"<item><title>Putin and Kim Jong Un meet in Pyongyang ({n})</title>"
                    f"<link>https://news.example/{n}</link></item>" for n in range(3000))
    feed = tmp_path / "many.xml"
    feed.write_text(f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{items}'
                    "</channel></rss>", encoding="utf-8")
    config = str(write_config(tmp_path, [], []))
    command = [sys.executable, "-m", "monitor", "--config", config, "match", str(feed), "--json"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None and process.stderr is not None
        first = process.stdout.readline()
        process.stdout.close()
        errors = process.stderr.read()
        assert process.wait(timeout=120) == 141
    assert first.startswith(b"{") and errors == b""


def test_run_once_log_lines_count_in_words(tmp_path: Path, feed_server: FeedServer,
                                           sink: Sink) -> None:
    """The cycle's log lines say "1 alert queued", not "1 alerts", and a feed failing on its
    very first poll is said never to have been polled successfully (not "started failing")."""
    url = feed_server.serve("/ru.xml", render_feed("russian.xml"))
    feeds = [{"url": url, "name": "RU"}, {"url": f"{feed_server.base}/gone.xml", "name": "Gone"}]
    config = write_config(tmp_path, feeds, [{"url": sink.url}])
    run = subprocess.run([sys.executable, "-m", "monitor", "--config", str(config), "run",
                          "--once"], check=False, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "feed RU: 2 entries, 2 new, 1 matched, 1 alert queued" in run.stderr
    assert "feed Gone failed (never polled successfully yet), 1 in a row" in run.stderr
    assert "cycle done: 2 feeds polled, 1 failed, 2 new entries, 1 alert queued" in run.stderr


@pytest.mark.parametrize(("outcome", "shown"), [
    ("ok", "ok"), ("not_modified", "not modified"), ("error", "error"), (None, "-"),
    ("something_new", "something_new")])
def test_poll_outcomes_are_shown_in_words(outcome: str | None, shown: str) -> None:
    """`status` and the status page show a feed's last outcome in words."""
    from monitor.surfaces.status import describe_outcome

    assert describe_outcome(outcome) == shown


def test_status_says_why_a_target_is_failing(tmp_path: Path, feed_server: FeedServer,
                                             sink: Sink, capsys: pytest.CaptureFixture[str]
                                             ) -> None:
    """While a target refuses its alerts, `status` (text and JSON) shows Apprise's reason for
    the latest failed attempt beside the target's waiting alerts."""
    sink.failing = True
    feeds = [{"url": feed_server.serve("/ru.xml", render_feed("russian.xml"))}]
    config = str(write_config(tmp_path, feeds, [{"url": sink.url, "name": "desk"}]))
    assert main(["--config", config, "run", "--once"]) == 0
    capsys.readouterr()
    assert main(["--config", config, "status"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("target desk"))
    assert "1 waiting; last attempt failed: " in line and "503" in line, line
    assert main(["--config", config, "status", "--json"]) == 0
    (target,) = json.loads(capsys.readouterr().out)["targets"]
    assert "503" in target["last_error"]


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["history"],
                                     ["backtest"]])
def test_read_only_commands_never_create_a_database(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    """`status`, `history` and `backtest` on a config whose database does not exist say where
    they looked and exit 3, leaving no file behind (an empty one would hide the real one)."""
    config = str(write_config(tmp_path, [], []))
    assert main(["--config", config, *command]) == 3
    assert f"no database at {tmp_path / 'monitor.db'}" in capsys.readouterr().err
    assert not (tmp_path / "monitor.db").exists()


def test_status_and_check_name_the_database_they_read(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`check` prints the database path (and whether it exists yet); `status` names the file it
    read, in text and JSON."""
    database = tmp_path / "monitor.db"
    config = str(write_config(tmp_path, [{"url": "https://a.example/f.xml"}], []))
    assert main(["--config", config, "check"]) == 0
    assert f"database: {database} (not created yet" in capsys.readouterr().out
    Store(f"sqlite:///{database}").close()
    assert main(["--config", config, "check"]) == 0
    assert f"database: {database}\n" in capsys.readouterr().out
    assert main(["--config", config, "status"]) == 0
    assert capsys.readouterr().out.startswith(f"database: {database}\n")
    assert main(["--config", config, "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["database"] == str(database)


def test_a_database_in_a_missing_folder_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A mistyped folder in `database` fails `check` (located) and `run --once` instead of
    starting a fresh history there, and creates nothing."""
    missing = tmp_path / "nonexistent" / "dir"
    config = write_config(tmp_path, [{"url": "https://a.example/f.xml"}], [],
                          database=f"sqlite:///{missing / 'monitor.db'}")
    assert main(["--config", str(config), "check"]) == 2
    err = capsys.readouterr().err
    assert f"database: the folder {missing} does not exist" in err
    assert main(["--config", str(config), "run", "--once"]) == 3
    assert f"the folder {missing} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "nonexistent").exists()


@pytest.mark.parametrize("command", ["run", "check", "match", "backtest", "notify-test",
                                     "status", "history", "feeds", "init"])
def test_each_command_explains_itself_in_its_help(
        command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`monitor COMMAND --help` has a description of what the command does, beyond usage."""
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    description = text.split("\n\n")[1]
    assert len(description.split()) >= 12, text
    if command == "run":
        assert all(word in text for word in ("SIGHUP", "/healthz", "http.listen", "SIGTERM"))


def test_status_reports_a_killed_instance_on_this_host_as_gone_at_once(
        tmp_path: Path, feed_server: FeedServer, sink: Sink,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A daemon killed with SIGKILL leaves its heartbeat behind; the next `status` on the same
    host sees that its process is gone and says so, without waiting for the heartbeat to age."""
    feeds = [{"url": feed_server.serve("/ru.xml", render_feed("russian.xml")), "name": "RU"}]
    config = str(write_config(tmp_path, feeds, [{"url": sink.url}]))

    def instances() -> list[dict[str, object]]:
        assert main(["--config", config, "status", "--json"]) == 0
        found: list[dict[str, object]] = json.loads(capsys.readouterr().out)["instances"]
        return found

    daemon = subprocess.Popen([sys.executable, "-m", "monitor", "--config", config, "run"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: len(sink.received) >= 1)
        assert [i["alive"] for i in instances()] == [True]
    finally:
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(timeout=60)
    (gone,) = instances()
    assert gone["alive"] is False and float(str(gone["heartbeat_age_s"])) < 180


def test_status_and_history_read_the_database_while_the_config_is_broken(
        tmp_path: Path, feed_server: FeedServer, sink: Sink,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A broken config does not hide what happened: `status` and `history` warn with the
    config error and still show the database's feeds, outbox and matches (exit 0)."""
    feeds = [{"url": feed_server.serve("/ru.xml", render_feed("russian.xml")), "name": "RU"}]
    token = "Brok3nC0nfigT0ken"
    config = write_config(tmp_path, feeds, [{"url": sink.url}])
    assert main(["--config", str(config), "run", "--once"]) == 0
    capsys.readouterr()
    with sqlite3.connect(tmp_path / "monitor.db") as db:  # a stored error quoting the token
        db.execute("update feeds set last_error = ?", (f"refused bot:{token}@chat",))
    config.write_text(config.read_text("utf-8") + "\nunknown_key: 1\nnotify:\n  - url: "
                      f"json://bot:{token}@127.0.0.1:9/x\n", "utf-8")
    assert main(["--config", str(config), "status", "--json"]) == 0
    out, err = capsys.readouterr()
    assert "unknown_key: unknown key" in err and "showing the database anyway" in err
    assert token not in out + err  # the broken config's secrets are masked all the same
    status = json.loads(out)
    assert [f["name"] for f in status["feeds"]] == ["RU"] and status["outbox"]["sent"] == 1
    assert main(["--config", str(config), "history"]) == 0
    assert "Лавров прибыл в Пхеньян" in capsys.readouterr().out
    assert main(["--config", str(config), "check"]) == 2  # the commands that need it still fail


def test_status_asks_the_daemon_how_it_is(tmp_path: Path, feed_server: FeedServer,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """With `http.listen` set, `status` shows what the daemon's /healthz says (a refused
    database write is known only in its memory), or that nothing answered there."""
    from tests.support.daemons import free_port

    listen = feed_server.base.removeprefix("http://")
    feed_server.serve("/healthz", b"database failing since 2026-12-05 10:00 UTC: disk full\n",
                      status=503)
    config = str(write_config(tmp_path, [], [], http={"listen": listen}))
    Store(f"sqlite:///{tmp_path / 'monitor.db'}").close()
    assert main(["--config", config, "status"]) == 0
    assert (f"daemon at http://{listen}/healthz: NOT HEALTHY: database failing since "
            "2026-12-05 10:00 UTC: disk full") in capsys.readouterr().out
    assert main(["--config", config, "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["daemon"]["healthy"] is False
    feed_server.serve("/healthz", b"ok\n")
    assert main(["--config", config, "status"]) == 0
    assert f"daemon at http://{listen}/healthz: healthy\n" in capsys.readouterr().out
    config = str(write_config(tmp_path, [], [], http={"listen": f"0.0.0.0:{free_port()}"}))
    assert main(["--config", config, "status"]) == 0
    assert "/healthz: not running? no answer (ConnectError" in capsys.readouterr().out


def test_status_prints_a_lying_healthz_reply_as_one_short_plain_line(
        tmp_path: Path, feed_server: FeedServer, capsys: pytest.CaptureFixture[str]) -> None:
    """Whatever answers at `http.listen` cannot flood or drive the terminal: its reply is read
    up to 2 KB and printed without control characters or line breaks."""
    listen = feed_server.base.removeprefix("http://")
    feed_server.serve("/healthz", b"\x1b[2J\x1b]0;pwned\x07fake\nline" + b"A" * 10**6, status=500)
    config = str(write_config(tmp_path, [], [], http={"listen": listen}))
    Store(f"sqlite:///{tmp_path / 'monitor.db'}").close()
    assert main(["--config", config, "status"]) == 0
    out = capsys.readouterr().out
    (line,) = [x for x in out.splitlines() if x.startswith("daemon at")]
    assert "\x1b" not in out and "\x07" not in out
    assert "fake\\nline" in line  # shown escaped, on the one line
    assert len(line) < 2200 and "NOT HEALTHY:" in line
