"""Config: the bundled file is valid, and each broken config gets a clear, located error."""

from __future__ import annotations

import subprocess
import sys
from datetime import time
from pathlib import Path

import pytest

from monitor.config import (
    default_database_url,
    load_config,
    parse_config,
    parse_duration,
    parse_size,
)
from monitor.errors import ConfigError
from monitor.surfaces.cli import main
from tests.support.project import ROOT

MINIMAL = """\
feeds:
  - url: https://example.org/feed.xml
watchlists:
  - name: w
    entities: {a: [alpha], b: [beta]}
    rules:
      - all: [a, b]
"""

# (config text, expected line, expected key path, words the message must contain)
BROKEN = [
    ("feeds: [\n  - url: x\n", 2, "", ["invalid YAML"]),
    ("- just\n- a list\n", 1, "", ["top level must be a mapping"]),
    ("feedz: []\n", 1, "feedz", ["unknown key", "did you mean `feeds`"]),
    ("poll:\n  intervall: 5m\n", 2, "poll.intervall", ["did you mean `interval`"]),
    ("poll:\n  interval: soon\n", 2, "poll.interval", ["invalid duration 'soon'"]),
    ("poll:\n  interval: 1s\n", 2, "poll.interval", ["should be auto or at least 10s"]),
    ("poll:\n  min_interval: 2h\n", 2, "poll", ["min_interval (2h) is longer than max_interval"]),
    ("poll:\n  max_body: lots\n", 2, "poll.max_body", ["invalid size"]),
    ("feeds:\n  - name: no url\n", 2, "feeds[0].url", ["required key is missing"]),
    ("feeds:\n  - url: file:///etc/passwd\n", 2, "feeds[0].url", ["http:// or https://"]),
    ("feeds:\n  - url: https://a.example/x\n  - url: https://a.example/x\n", 1, "",
     ["duplicate https://a.example/x"]),
    ("notify:\n  - url: not-a-url\n", 2, "notify[0].url", ["scheme://"]),
    ("notify:\n  - url: json://${MONITOR_TEST_UNSET_VAR}/x\n", None, "notify[0].url",
     ["MONITOR_TEST_UNSET_VAR is not set"]),
    ("watchlists:\n  - name: w\n    rules: []\n", 3, "watchlists[0].rules", ["at least 1"]),
    ("watchlists:\n  - name: w\n    rules:\n      - within: 3\n", 4, "watchlists[0].rules[0]",
     ["needs `all` or `any`"]),
    ("entities: {russia: [Russia]}\nwatchlists:\n  - name: w\n    rules:\n"
     "      - all: [rusia]\n", 5, "watchlists[0].rules[0].all[0]",
     ["unknown entity 'rusia'", "did you mean 'russia'"]),
    ("entities:\n  bad: ['/(unclosed/']\nwatchlists:\n  - name: w\n    rules:\n"
     "      - all: [bad]\n", 2, "entities.bad[0]", ["'/(unclosed/'", "regular expression"]),
    ("entities:\n  empty: ['*']\nwatchlists:\n  - name: w\n    rules:\n      - all: [empty]\n",
     2, "entities.empty[0]", ["empty"]),
    ("entities:\n  none: []\nwatchlists:\n  - name: w\n    rules:\n      - all: [none]\n",
     2, "entities.none", ["no aliases"]),
    ("watchlists:\n  - name: w\n    priority: urgent\n    entities: {a: [x]}\n    rules:\n"
     "      - any: [a]\n", 3, "watchlists[0].priority", ["'low', 'normal' or 'high'"]),
    # Pacing and message keys of a target.
    ("notify:\n  - url: json://h/x\n    mode: weekly\n", 3, "notify[0].mode",
     ["'immediate' or 'digest'"]),
    ("notify:\n  - url: json://h/x\n    mdoe: digest\n", 3, "notify[0].mdoe",
     ["did you mean `mode`"]),
    ("notify:\n  - url: json://h/x\n    digest_every: 10s\n", 3, "notify[0].digest_every",
     ["greater than or equal to 60"]),
    ("notify:\n  - url: json://h/x\n    rate_limit: lots\n", 3, "notify[0].rate_limit",
     ["invalid rate 'lots'", "10/h"]),
    ("notify:\n  - url: json://h/x\n    rate_limit: 0/h\n", 3, "notify[0].rate_limit",
     ["at least 1"]),
    ("notify:\n  - url: json://h/x\n    quiet_hours: '22:00'\n", 3, "notify[0].quiet_hours",
     ["HH:MM-HH:MM"]),
    ("notify:\n  - url: json://h/x\n    quiet_hours: 25:00-07:00\n", 3,
     "notify[0].quiet_hours", ["invalid time '25:00'"]),
    ("notify:\n  - url: json://h/x\n    quiet_hours: 07:00-07:00\n", 3,
     "notify[0].quiet_hours", ["cannot start and end at the same time"]),
    ("notify:\n  - url: json://h/x\n    timezone: Mars/Olympus\n", 3, "notify[0].timezone",
     ["unknown time zone 'Mars/Olympus'"]),
    ("notify:\n  - url: json://h/x\n    timezone: ../../etc/passwd\n", 3,
     "notify[0].timezone", ["unknown time zone"]),
    ("notify:\n  - url: json://h/x\n    format: pdf\n", 3, "notify[0].format",
     ["'markdown', 'html' or 'text'"]),
    ("notify:\n  - url: json://h/x\n    max_length: 10\n", 3, "notify[0].max_length",
     ["greater than or equal to 200"]),
    ("notify:\n  - url: json://h/x\n    template:\n      title: '{{ titel }}'\n", 4,
     "notify[0].template.title", ["'titel' is undefined"]),
    ("notify:\n  - url: json://h/x\n    mode: digest\n    digest_every: 7d\n", 4,
     "notify[0].digest_every", ["holds alerts up to 168 h", "delivery.expire_after (72 h)"]),
    ("delivery:\n  expire_after: 8h\nnotify:\n  - url: json://h/x\n"
     "    quiet_hours: 22:00-07:00\n", 5, "notify[0].quiet_hours",
     ["holds alerts up to 9 h", "raise delivery.expire_after"]),
    # YAML mistakes are shown where they were made, not where the parser noticed them.
    ("feeds:\n  - url: https://a.example/f\n    name: [unclosed\nwatchlists: []\n", 3, "",
     ["invalid YAML", "flow sequence that starts on this line", "noticed on line 4"]),
    ("feeds:\n  - url: https://a.example/f\n    name: 'unclosed\nwatchlists: []\n", 3, "",
     ["invalid YAML", "quoted scalar that starts on this line"]),
    ("feeds:\n  - url: https://a.example/f\n - url: https://b.example/f\n", 3, "",
     ["invalid YAML"]),
    # A value of the wrong type gets the key's own explanation; one mistake is one problem.
    ("http:\n  listen: 8703\n", 2, "http.listen", ["expected HOST:PORT", "(got 8703)"]),
    ("watchlists:\n  - name: w\n    entities: {a: [x]}\n    rules:\n      - any: [a]\n"
     "        within: sentance\n", 6, "watchlists[0].rules[0].within",
     ["expected `sentence` or a number of words", "did you mean `sentence`?"]),
]


@pytest.mark.parametrize(("text", "line", "key", "words"), BROKEN)
def test_broken_config_names_file_line_key_and_problem(
        text: str, line: int | None, key: str, words: list[str]) -> None:
    """Each broken config raises ConfigError naming the file, line, key path and the problem."""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "conf.yaml")
    error = caught.value
    assert error.path == "conf.yaml"
    assert error.key == key
    assert error.line == line
    for word in words:
        assert word in str(error), str(error)
    assert "more problem" not in str(error)


def test_bundled_config_is_valid_and_has_feeds_in_several_languages() -> None:
    """The repo's config.yaml loads, has real feeds, and the russia-dprk watchlist."""
    config = load_config(ROOT / "config.yaml")
    assert len(config.feeds) >= 5
    assert all(f.url.startswith("https://") for f in config.feeds)
    assert [w.name for w in config.watchlists] == ["russia-dprk"]
    assert config.database.startswith("sqlite:///")


def test_env_interpolation_fills_values_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """`${VAR}` takes the environment's value and `${VAR:-x}` falls back to x."""
    monkeypatch.setenv("MONITOR_TEST_TOKEN", "s3cr3t-token-123")
    text = MINIMAL + "notify:\n  - url: tgram://${MONITOR_TEST_TOKEN}/${MONITOR_TEST_CHAT:-42}\n"
    config = parse_config(text, "conf.yaml")
    assert config.notify[0].url == "tgram://s3cr3t-token-123/42"


def test_durations_and_sizes_accept_units() -> None:
    """Durations and sizes read the units a person would write."""
    assert parse_duration("90s") == 90
    assert parse_duration("15m") == 900
    assert parse_duration("1.5h") == 5400
    assert parse_duration(7) == 7
    assert parse_size("10MB") == 10_000_000
    assert parse_size("1MiB") == 1_048_576
    with pytest.raises(ValueError, match=r"negative|invalid"):
        parse_duration("-5m")


def test_relative_sqlite_path_is_relative_to_the_config(tmp_path: Path) -> None:
    """`sqlite:///x.db` in a config file means a file beside that config."""
    path = tmp_path / "c.yaml"
    path.write_text("database: sqlite:///state/x.db\n" + MINIMAL)
    assert load_config(path).database == f"sqlite:///{tmp_path / 'state' / 'x.db'}"


def test_default_database_goes_to_systemd_state_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no `database` key, the SQLite file goes to $STATE_DIRECTORY when systemd sets it."""
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    path = tmp_path / "c.yaml"
    path.write_text(MINIMAL)
    assert load_config(path).database == f"sqlite:///{tmp_path / 'state' / 'monitor.db'}"


@pytest.mark.parametrize(("config_path", "state", "expected"), [
    ("/etc/monitor/config.yaml", "", "/var/lib/monitor/monitor.db"),      # an admin at a shell
    ("/etc/monitor/config.yaml", "/var/lib/monitor", "/var/lib/monitor/monitor.db"),  # the unit
    ("/etc/news/config.yaml", "", "/var/lib/news/monitor.db"),             # a renamed unit
    ("/home/ana/monitor/config.yaml", "", "/home/ana/monitor/monitor.db"),  # a user's own
])
def test_admin_commands_and_the_unit_find_the_same_default_database(
        monkeypatch: pytest.MonkeyPatch, config_path: str, state: str, expected: str) -> None:
    """With no `database` key, a config in /etc/NAME/ means /var/lib/NAME/monitor.db with or
    without systemd's $STATE_DIRECTORY, as the unit's Configuration/StateDirectory pair does."""
    monkeypatch.setenv("STATE_DIRECTORY", state)
    assert default_database_url(Path(config_path)) == f"sqlite:///{expected}"


def test_variables_come_from_the_environment_credentials_or_the_env_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`${NAME}` is read from the environment first, then `$CREDENTIALS_DIRECTORY/NAME`, then
    the `env` file beside the config (comments, blanks and quotes as systemd reads them)."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "FROM_CREDENTIAL").write_text("cred-value\n")
    (tmp_path / "env").write_text("# a comment\n\nFROM_FILE = 'file value'\n"
                                  "FROM_CREDENTIAL=shadowed\n; also a comment\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    monkeypatch.setenv("FROM_ENV", "env-value")
    path = tmp_path / "c.yaml"
    path.write_text(MINIMAL.replace("https://example.org/feed.xml",
                                    "https://example.org/${FROM_ENV}/${FROM_CREDENTIAL}"
                                    "/${FROM_FILE}"))
    assert load_config(path).feeds[0].url == \
        "https://example.org/env-value/cred-value/file value"
    (tmp_path / "env").unlink()  # an env file that cannot be read (as the service's user
    (tmp_path / "env").mkdir()   # cannot read root's) is no error while nothing is missing
    assert parse_config(path.read_text().replace("${FROM_FILE}", "x"), path).feeds


def test_check_command_on_good_and_broken_configs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`monitor check` exits 0 on a good config and 2 with a one-line located error otherwise."""
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(MINIMAL)
    bad.write_text(MINIMAL.replace("  - url:", "  - ur1:"))
    assert main(["--config", str(good), "check"]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["--config", str(bad), "check"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: feeds[0].ur1: unknown key (did you mean `url`?)" in err
    assert main(["--config", str(tmp_path / "missing.yaml"), "check"]) == 2
    assert "file not found" in capsys.readouterr().err


@pytest.mark.parametrize(("url", "message"), [
    ("jsn://127.0.0.1:9/hook", "Apprise knows no 'jsn' service (did you mean json://?)"),
    ("tgram://only-a-token", "Apprise cannot use this tgram:// URL: a required part"),
    ("mailto://u:p@127.0.0.1:9?to=a@example.org",
     "Apprise cannot use this mailto:// URL: Invalid ~From~ email specified"),
])
def test_check_refuses_notify_urls_apprise_cannot_use(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str, message: str) -> None:
    """`check` runs every target URL through Apprise's own parser and points at the bad one."""
    path = tmp_path / "c.yaml"
    path.write_text(MINIMAL + f"notify:\n  - url: json://127.0.0.1:9/ok\n  - url: {url}\n")
    assert main(["--config", str(path), "check"]) == 2
    assert f"{path}:10: notify[1].url: {message}" in capsys.readouterr().err
    path.write_text(MINIMAL + "notify:\n  - url: json://127.0.0.1:9/ok\n")
    assert main(["--config", str(path), "check"]) == 0


LAUGHS = b"a: &a [x,x,x,x,x,x,x,x,x]\n" + b"".join(
    b"%c: &%c [" % (c, c) + b",".join([b"*%c" % (c - 1)] * 9) + b"]\n" for c in range(98, 106))


@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage", b"a: [", b"x" * 2_000_000 + b": 1",
                                     b"&a [" * 10, b"a: &x [*x]", LAUGHS])
def test_hostile_config_bytes_give_a_clean_error_in_a_subprocess(tmp_path: Path,
                                                                 content: bytes) -> None:
    """Binary, truncated, huge and self-referencing YAML all exit 2 with one line, no traceback."""
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    done = subprocess.run([sys.executable, "-m", "monitor", "--config", str(path), "check"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("monitor: config error:")
    assert len(done.stderr.strip().splitlines()) == 1


def test_bad_command_line_exits_2_with_usage_hint(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown command or option is a usage error (exit 2), not a traceback."""
    with pytest.raises(SystemExit) as caught:
        main(["frobnicate"])
    assert caught.value.code == 2
    assert "see monitor --help" in capsys.readouterr().err


def test_unquoted_times_in_yaml_are_read_as_clock_times() -> None:
    """YAML 1.1 reads 08:00 as the number 480; it still means 08:00 local time."""
    config = parse_config("notify:\n  - url: json://h/x\n    digest_at: 08:00\n"
                          "    quiet_hours: 22:30-06:45\n    rate_limit: 5/30m\n")
    target = config.notify[0]
    assert target.digest_at == time(8, 0)
    assert target.quiet_hours == (time(22, 30), time(6, 45))
    assert target.rate_limit == (5, 1800.0)
