"""Secrets: nothing a stranger writes reads the environment, and no credential is shown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from monitor.config import load_config, parse_config
from monitor.support.secrets import mask_url, secrets_of
from monitor.surfaces.cli import main
from tests.support.project import render_feed, write_config
from tests.support.servers import FeedServer, Sink

TOKEN = "tg-S3CRET-value"


def _monitor(config: Path, *args: str,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`monitor` run in a subprocess at DEBUG; it must succeed."""
    done = subprocess.run([sys.executable, "-m", "monitor", "--log-level", "DEBUG", "--config",
                           str(config), *args], capture_output=True, text=True, timeout=120,
                          check=False, env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr
    return done


def _run(config: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """`monitor`'s stdout and stderr together."""
    done = _monitor(config, *args, env=env)
    return done.stdout + done.stderr


@pytest.mark.parametrize(("written", "read"), [
    ("price $$5", "price $5"),
    ("$${HOME}", "${HOME}"),
    ("$$$${HOME}", "$${HOME}"),
    ("a $ b", "a $ b"),
    ("${MONITOR_TEST_UNSET:-fallback}", "fallback"),
])
def test_double_dollar_is_a_literal_dollar(written: str, read: str) -> None:
    """`$$` reads as one `$` and is never the start of a `${VAR}` reference."""
    config = parse_config(yaml.safe_dump({"feeds": [{"url": "https://a.example/f",
                                                     "name": written}]}))
    assert config.feeds[0].name == read


OPML = """<?xml version="1.0"?>
<opml version="2.0"><body>
  <outline text="Folder ${TELEGRAM_TOKEN:-x}">
    <outline title="News ${TELEGRAM_TOKEN:-}" xmlUrl="{base}/x.xml?ref=${TELEGRAM_TOKEN:-x}"/>
  </outline>
</body></opml>
"""


def test_imported_opml_text_never_reads_the_environment(
        tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """An OPML's `${VAR}` in a URL, title or folder stays literal text: the token is neither
    sent to the feed's host on the next poll nor shown as the feed's name."""
    monkeypatch.setenv("TELEGRAM_TOKEN", TOKEN)
    feed_server.serve("/x.xml?ref=${TELEGRAM_TOKEN:-x}", render_feed("russian.xml"))
    feed_server.serve("/x.xml?ref=%24%7BTELEGRAM_TOKEN:-x%7D", render_feed("russian.xml"))
    config = write_config(tmp_path, [{"url": feed_server.base + "/other.xml"}], [])
    opml = tmp_path / "feeds.opml"
    opml.write_text(OPML.replace("{base}", feed_server.base), encoding="utf-8")
    assert main(["--config", str(config), "feeds", "import", str(opml)]) == 0
    feed = load_config(config).feeds[1]
    assert feed.url == feed_server.base + "/x.xml?ref=${TELEGRAM_TOKEN:-x}"
    assert feed.name == "News ${TELEGRAM_TOKEN:-}"
    assert feed.tags == ("Folder ${TELEGRAM_TOKEN:-x}",)
    output = _run(config, "run", "--once", env={"TELEGRAM_TOKEN": TOKEN})
    asked = [path for path, _ in feed_server.requests]
    assert any(path.startswith("/x.xml?ref=") for path in asked), asked
    assert not any(TOKEN in path for path in asked)
    assert TOKEN not in output


def test_added_feed_title_never_reads_the_environment(
        tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """`feeds add` names a feed after its own title, written so `${VAR}` in it stays text."""
    monkeypatch.setenv("TELEGRAM_TOKEN", TOKEN)
    body = render_feed("russian.xml").replace(
        b"<title>", b"<title>News ${TELEGRAM_TOKEN:-} ", 1)
    url = feed_server.serve("/titled.xml", body)
    config = write_config(tmp_path, [{"url": feed_server.base + "/other.xml"}], [])
    assert main(["--config", str(config), "feeds", "add", url]) == 0
    name = load_config(config).feeds[1].name
    assert name is not None
    assert name.startswith("News ${TELEGRAM_TOKEN:-} ")
    assert TOKEN not in name


@pytest.mark.parametrize(("url", "shown"), [
    ("http://user:pw@host/f.xml?token=abc&x=1", "http://***@host/f.xml?token=***&x=1"),
    ("https://host/f?key=k&apikey=a1&access_token=t&q=news", "https://host/f?key=***&apikey=***"
     "&access_token=***&q=news"),
    ("https://TOKEN@host/f", "https://***@host/f"),
    ("https://host/f?api_key=1&X-Api-Key=2&client_secret=3&sig=4", "https://host/f?api_key=***"
     "&X-Api-Key=***&client_secret=***&sig=***"),
    ("json://host/p?+Authorization=Bearer%20x&-q=1", "json://host/p?+Authorization=***&-q=1"),
    ("https://news.example/rss?q=Korea&hl=en", "https://news.example/rss?q=Korea&hl=en"),
    ("https://t.example/rss?passkey=PK1&accessToken=AT2&apiToken=x&authkey=y&author=bob",
     "https://t.example/rss?passkey=***&accessToken=***&apiToken=***&authkey=***&author=bob"),
])
def test_mask_url_hides_credentials_and_keeps_the_rest(url: str, shown: str) -> None:
    """Userinfo and credential-like query values are masked whatever their length."""
    assert mask_url(url) == shown


def test_secrets_of_finds_short_header_and_query_credentials() -> None:
    """A short Apprise header secret and a feed's token are secrets, in every spelling."""
    assert "abc12" in secrets_of("json://127.0.0.1:9/?+X-Api-Key=abc12")
    found = secrets_of("http://u:p%40ss@h/f?token=a%2Fb", guess=False)
    assert {"p%40ss", "p@ss", "a/b", "a%2Fb"} <= set(found)
    assert secrets_of("https://news.example/rss/search?q=North+Korea+Russia", guess=False) == []


def test_feed_credentials_appear_nowhere_a_person_reads(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """A feed URL with userinfo and token parameters, and an Apprise header secret, appear in
    no log line (at DEBUG), in `status`, `status --json`, `history --json` or an alert."""
    path = "/f.xml?token=tok-S3cret-1&apikey=k3y-S3cret"
    url = feed_server.serve(path, render_feed("russian.xml"))
    url = url.replace("http://", "http://reader:pw-S3cret@")
    failing = feed_server.base.replace("http://", "http://u:pw2-S3cret@") + "/gone.xml?key=k9"
    target = sink.url + "?+X-Api-Key=hk12"
    config = write_config(tmp_path, [{"url": url}, {"url": failing}], [{"url": target}])
    shown = _run(config, "run", "--once")
    shown += _run(config, "status") + _run(config, "status", "--json")
    shown += _run(config, "history", "--json")
    shown += json.dumps(sink.received)
    assert len(sink.received) == 1
    assert "127.0.0.1" in shown
    for secret in ("pw-S3cret", "tok-S3cret-1", "k3y-S3cret", "pw2-S3cret", "k9", "hk12"):
        assert secret not in shown, secret
    feeds = json.loads(_monitor(config, "status", "--json").stdout)["feeds"]
    assert sorted(f["url"] for f in feeds) == sorted([
        feed_server.base.replace("http://", "http://***@") + "/f.xml?token=***&apikey=***",
        feed_server.base.replace("http://", "http://***@") + "/gone.xml?key=***"])


def test_database_and_exported_feed_list_are_private(tmp_path: Path,
                                                     feed_server: FeedServer) -> None:
    """The SQLite database and `feeds export -o` (even over an existing readable file) are
    readable by their owner alone: both hold the feeds' URLs with their credentials."""
    url = feed_server.serve("/f.xml?token=tok-S3cret", render_feed("russian.xml"))
    config = write_config(tmp_path, [{"url": url}], [])
    exported = tmp_path / "feeds.opml"
    exported.write_text("old", encoding="utf-8")
    exported.chmod(0o644)
    assert main(["--config", str(config), "run", "--once"]) == 0
    assert main(["--config", str(config), "feeds", "export", "-o", str(exported)]) == 0
    assert "tok-S3cret" in exported.read_text(encoding="utf-8")
    for path in (tmp_path / "monitor.db", tmp_path / "monitor.db-wal", exported):
        if path.exists():
            assert path.stat().st_mode & 0o777 == 0o600, path


def test_a_mail_target_without_password_gets_no_token_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`mailto://host:2525?from=a@b&to=c@d` holds no secret: no "chmod 600" advice."""
    config = write_config(tmp_path, [{"url": "https://a.example/f.xml"}],
                          [{"url": "mailto://mail.example.org:2525?from=a@b.example&to=c@d.example"}])
    config.chmod(0o644)
    assert main(["--config", str(config), "check"]) == 0
    assert "readable by other users" not in capsys.readouterr().err
