"""OPML import and export, and `feeds add`: the config file keeps its comments and stays valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import load_config
from monitor.errors import OpmlError
from monitor.sources.feedlist import read_opml
from monitor.surfaces.cli import main
from tests.support.project import ROOT, render_feed
from tests.support.servers import FeedServer


def _opml(count: int) -> bytes:
    outlines = "".join(
        f'<outline text="Feed {i}" title="Feed {i}" type="rss" '
        f'xmlUrl="https://news{i % 7}.example.org/feed/{i}.xml"/>' for i in range(count))
    return (f'<?xml version="1.0"?><opml version="2.0"><head><title>reader</title></head><body>'
            f'<outline text="World">{outlines}</outline>'
            f'<outline text="Not a feed" htmlUrl="https://x.example"/></body></opml>').encode()


@pytest.fixture
def config_copy(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text((ROOT / "config.yaml").read_text("utf-8"), "utf-8")
    path.chmod(0o600)
    return path


def test_import_of_200_feeds_then_export_round_trips_and_keeps_comments(
        config_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """200 OPML feeds are added after the existing ones (a second import adds none), the
    file keeps every comment, and export gives back every URL."""
    before = config_copy.read_text("utf-8")
    opml = tmp_path / "reader.opml"
    opml.write_bytes(_opml(200))
    assert main(["--config", str(config_copy), "feeds", "import", str(opml)]) == 0
    assert "200 feeds added, 0 already there" in capsys.readouterr().out
    assert main(["--config", str(config_copy), "feeds", "import", str(opml)]) == 0
    assert "0 feeds added, 200 already there" in capsys.readouterr().out
    after = config_copy.read_text("utf-8")
    comments = [line.strip() for line in before.splitlines() if line.strip().startswith("#")]
    assert all(comment in after for comment in comments)
    assert after.startswith(before.split("\nfeeds:")[0])  # everything before `feeds` untouched
    config = load_config(config_copy)
    assert len(config.feeds) == 14 + 200
    assert config.feeds[20].tags == ("World",)
    assert main(["--config", str(config_copy), "feeds", "export", "-o",
                 str(tmp_path / "out.opml")]) == 0
    exported = {link.url for link in read_opml((tmp_path / "out.opml").read_bytes())}
    assert exported == {f.url for f in config.feeds}


@pytest.mark.parametrize(("data", "reason"), [
    (b'<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY a "b">]><opml><body/></opml>', "DTD"),
    (b"<opml><body>", "not valid XML"),
    (b"<rss><channel/></rss>", "not an OPML document"),
])
def test_hostile_or_broken_opml_is_refused(data: bytes, reason: str) -> None:
    """OPML with a DTD, broken XML, or another document is refused with a reason."""
    with pytest.raises(OpmlError, match=reason):
        read_opml(data)


def test_feeds_add_checks_the_url_is_a_feed(config_copy: Path, feed_server: FeedServer,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """`feeds add` adds a real feed under its title, and refuses an HTML page."""
    good = feed_server.serve("/ru.xml", render_feed("russian.xml"))
    page = feed_server.serve("/page", b"<!doctype html><html><body>hi</body></html>")
    assert main(["--config", str(config_copy), "feeds", "add", page]) == 1
    assert "/page: not a feed: an HTML page" in capsys.readouterr().err
    assert main(["--config", str(config_copy), "feeds", "add", good]) == 0
    feed = load_config(config_copy).feeds[-1]
    assert (feed.url, feed.name) == (good, "Новости")
    assert config_copy.stat().st_mode & 0o777 == 0o600


def test_import_shows_progress_on_a_terminal_and_not_in_a_pipe(
        config_copy: Path, tmp_path: Path) -> None:
    """A long import draws a progress bar on a terminal (stderr a pty), nothing in a pipe."""
    import os
    import subprocess
    import sys

    opml = tmp_path / "reader.opml"
    opml.write_bytes(_opml(300))
    command = [sys.executable, "-m", "monitor", "--config", str(config_copy), "feeds",
               "import", str(opml)]
    master, slave = os.openpty()
    done = subprocess.run(command, stderr=slave, stdout=subprocess.PIPE, timeout=60, check=False)
    os.close(slave)
    drawn = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        drawn += chunk
    os.close(master)
    assert done.returncode == 0
    assert b"importing" in drawn
    config_copy.write_text((ROOT / "config.yaml").read_text("utf-8"), "utf-8")
    piped = subprocess.run(command, capture_output=True, timeout=60, check=False)
    assert b"importing" not in piped.stderr
