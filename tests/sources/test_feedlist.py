"""OPML import and export, and `feeds add`: the config file keeps its comments and stays valid."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

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


def test_import_changes_only_the_feeds_list(config_copy: Path, tmp_path: Path) -> None:
    """Importing one feed into the bundled config adds its lines right after the last feed,
    in that list's indentation: every other byte of the file stays as it was."""
    before = config_copy.read_text("utf-8")
    opml = tmp_path / "one.opml"
    opml.write_bytes(b'<opml version="2.0"><body><outline text="News"><outline text="Example" '
                     b'xmlUrl="https://example.org/feed.xml"/></outline></body></opml>')
    assert main(["--config", str(config_copy), "feeds", "import", str(opml)]) == 0
    after = config_copy.read_text("utf-8").splitlines(keepends=True)
    old = before.splitlines(keepends=True)
    at = next(i for i, (a, b) in enumerate(zip(old, after, strict=False)) if a != b)
    assert after[at:at + 3] == ["  - url: https://example.org/feed.xml\n", "    name: Example\n",
                                "    tags: [News]\n"]
    assert after[:at] + after[at + 3:] == old


MINIMAL_WATCHLIST = ("watchlists:\n  - name: w\n    entities: {a: [alpha]}\n"
                     "    rules: [{any: [a]}]\n")
EDGE_NAMES = ["Plain name", "Name: with colon # and hash", "It's \"quoted\"", "$HOME ${X}",
              "null", "123", "- dash", "[bracket]", "line\u2028separator", "tab\there",
              "北朝鮮ニュース"]


@pytest.mark.parametrize("config_text", [
    "feeds: []\n", "feeds:\n", "", "# only a comment\n",
    "feeds: [{url: 'https://a.example/x'}]\n",
    "feeds:\n- url: https://b.example/y   # c\n  name: B\n\n# next\nnotify: []\n",
    "feeds:\n    -   url: https://b.example/y\n        interval: 1h\n",
])
def test_added_feeds_read_back_exactly_whatever_the_lists_shape(
        tmp_path: Path, config_text: str) -> None:
    """Feeds with awkward names, tags and intervals, added to empty, missing, flow-style and
    oddly indented `feeds` lists, read back as exactly those values, after the feeds there."""
    from monitor.sources.feedlist import FeedLink, add_feeds

    path = tmp_path / "config.yaml"
    path.write_text(config_text + MINIMAL_WATCHLIST, "utf-8")
    before = [f["url"] for f in (yaml.safe_load(path.read_text("utf-8")) or {}).get("feeds")
              or []]
    links = [FeedLink(f"https://n.example/{i}?a=1&b=$x", name, (name, "Asia/Seoul"), "2h")
             for i, name in enumerate(EDGE_NAMES)]
    added, _ = add_feeds(path, links)
    assert added == links
    feeds = load_config(path).feeds
    assert [f.url for f in feeds[:len(before)]] == before
    assert [(f.url, f.name, f.tags, f.interval) for f in feeds[len(before):]] == [
        (link.url, link.name, link.tags, 7200.0) for link in links]


def test_export_then_import_keeps_tags_and_intervals(config_copy: Path, tmp_path: Path) -> None:
    """`feeds export` writes each feed's tags (`category`) and interval; importing that file
    into a config without feeds gives back the same feeds."""
    config_copy.write_text(config_copy.read_text("utf-8").replace(
        "    url: https://www.nknews.org/feed/\n",
        "    url: https://www.nknews.org/feed/\n    tags: [korea, specialist]\n"), "utf-8")
    exported = tmp_path / "out.opml"
    assert main(["--config", str(config_copy), "feeds", "export", "-o", str(exported)]) == 0
    fresh = tmp_path / "fresh.yaml"
    fresh.write_text("feeds: []\n" + MINIMAL_WATCHLIST, "utf-8")
    assert main(["--config", str(fresh), "feeds", "import", str(exported)]) == 0
    original, copied = load_config(config_copy).feeds, load_config(fresh).feeds
    assert [(f.url, f.title, f.tags, f.interval) for f in copied] == \
        [(f.url, f.title, f.tags, f.interval) for f in original]
    assert any(f.interval for f in copied) and any(f.tags for f in copied)


@pytest.mark.parametrize(("attributes", "tags", "interval"), [
    ('category="/News/World, Asia,,"', ("World", "Asia"), None),
    ('interval="1s"', (), None),          # faster than any feed may be polled: dropped
    ('interval="forever"', (), None),     # not a duration: dropped
    ('interval="90m"', (), "90m"),
    ('category="' + ",".join(f"t{i}" for i in range(50)) + '"',
     tuple(f"t{i}" for i in range(20)), None),
])
def test_opml_category_and_interval_are_read_with_care(attributes: str, tags: tuple[str, ...],
                                                       interval: str | None) -> None:
    """OPML 2.0 categories become tags (the last part of each path, at most 20); an interval
    is kept only when it is a duration a feed may have."""
    data = (f'<opml version="2.0"><body><outline text="F" xmlUrl="https://a.example/f" '
            f'{attributes}/></body></opml>').encode()
    (link,) = read_opml(data)
    assert (link.tags, link.interval) == (tags, interval)
