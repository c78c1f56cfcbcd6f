"""The HTTP endpoint of a running daemon: health, Prometheus metrics, an Atom feed, a page, and
what strangers can send it (hostile feed text, other methods, a forged Host, huge requests)."""

from __future__ import annotations

import html
import os
import shutil
import socket
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as xml_escape

import feedparser
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.daemons import http_daemon
from tests.support.project import render_feed, write_config
from tests.support.servers import FeedServer, Sink

HOSTILE = "<img src=x onerror=\"document.title='pwned'\"> <script>document.title='pwned'</script>"
FEED_NAME = f"RU wire {HOSTILE}"
TITLE = f"Лавров прибыл в Пхеньян {HOSTILE}"
LINK = "https://ru.example.com/politics/lavrov-pyongyang"
ATOM = "{http://www.w3.org/2005/Atom}"
# What the status page is made of: anything else in its DOM came from a stranger's text.
PAGE_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "p", "a", "h2", "table",
             "tbody", "tr", "th", "td", "ul", "li", "small", "b"}
CREDENTIALS = ("s3cretpw", "tok123secret")


def hostile_feed() -> bytes:
    """russian.xml whose matching entry's title, once parsed, is TITLE: markup as plain text
    (escaped twice in the XML, as a feed writes a title that talks about tags)."""
    original = "Лавров прибыл в Пхеньян для переговоров с Чвэ Сон Хи"
    written = xml_escape(html.escape(TITLE, quote=False))
    return render_feed("russian.xml").replace(original.encode(), written.encode())


@pytest.fixture
def daemon_with_http(tmp_path: Path, feed_server: FeedServer, sink: Sink) -> Iterator[str]:
    """A daemon after its first alert: a feed named FEED_NAME whose matching entry is TITLE."""
    feeds = [{"url": feed_server.serve("/ru.xml", hostile_feed()), "name": FEED_NAME}]
    with http_daemon(tmp_path, feeds, sink) as running:
        yield running.base


@dataclass(frozen=True)
class RawAnswer:
    """An HTTP answer as it came over the wire."""

    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


def raw_request(base: str, request: bytes) -> RawAnswer:
    """Send `request` byte for byte on a new connection; read the answer until the server
    closes the connection."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("iso-8859-1").split("\r\n")
    headers = {name.strip().lower(): value.strip()
               for name, _, value in (line.partition(":") for line in lines)}
    return RawAnswer(int(status_line.split()[1]), headers, body)


def test_healthz_metrics_and_atom_feed(daemon_with_http: str) -> None:
    """/healthz says ok, /metrics is Prometheus text counting the polls, /feed.xml is a valid
    Atom feed named by the configured address, its entry the match with exact title and link."""
    base = daemon_with_http
    health = httpx.get(f"{base}/healthz")
    assert (health.status_code, health.text) == (200, "ok\n")
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{base}/metrics")
                                                                   .text)}
    polls = sum(s.value for s in families["monitor_polls"].samples if s.name.endswith("_total"))
    assert polls >= 1
    assert any(s.labels == {"state": "sent"} and s.value == 1
               for s in families["monitor_outbox"].samples)
    body = httpx.get(f"{base}/feed.xml").content
    assert not feedparser.parse(body).bozo
    root = ET.fromstring(body)
    assert root.tag == f"{ATOM}feed"
    assert root.findtext(f"{ATOM}id") == f"{base}/feed.xml"
    assert [(e.findtext(f"{ATOM}title"), [a.get("href") for a in e.findall(f"{ATOM}link")])
            for e in root.iter(f"{ATOM}entry")] == [(TITLE, [LINK])]
    summary = root.findtext(f"{ATOM}entry/{ATOM}summary") or ""
    assert summary.startswith(f"[{FEED_NAME}] russia-dprk: ")
    assert httpx.get(f"{base}/nope").status_code == 404


@dataclass
class Element:
    """One element of a parsed HTML document."""

    tag: str
    attrs: dict[str, str | None]
    text: str = ""


class Dom(HTMLParser):
    """The elements of an HTML document in document order, each with all the text inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[Element] = []
        self.open: list[Element] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, dict(attrs))
        self.elements.append(element)
        if tag not in {"meta", "img", "br", "link", "input", "hr"}:
            self.open.append(element)

    def handle_endtag(self, tag: str) -> None:
        while self.open and self.open.pop().tag != tag:
            pass

    def handle_data(self, data: str) -> None:
        for element in self.open:
            element.text += data

    def all(self, tag: str) -> list[Element]:
        return [e for e in self.elements if e.tag == tag]


def chromium_or_skip() -> str:
    """Chromium's path; the test is skipped without it, unless CI requires it
    (MONITOR_TEST_REQUIRE_CHROMIUM=1): then it fails."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("MONITOR_TEST_REQUIRE_CHROMIUM", "") not in ("", "0"):
        pytest.fail("chromium is not installed, and MONITOR_TEST_REQUIRE_CHROMIUM is set: "
                    "install Debian's chromium (as .ci/run does)", pytrace=False)
    pytest.skip("chromium is not installed (.ci/run installs Debian's chromium)")


def test_status_page_renders_hostile_text_as_text_in_headless_chromium(
        daemon_with_http: str, tmp_path: Path) -> None:
    """In real headless Chromium the status page's DOM holds exactly the page's own elements:
    the hostile feed name and title are text (no <img>, no <script>), shown exactly, the
    entry linked with rel="noopener noreferrer"; and a screenshot is written."""
    chromium = chromium_or_skip()
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'c'}"]
    dump = subprocess.run([*flags, "--dump-dom", f"{daemon_with_http}/"], capture_output=True,
                          text=True, timeout=120, check=False)
    dom = Dom()
    dom.feed(dump.stdout)
    tags = {e.tag for e in dom.elements}
    assert tags == PAGE_TAGS, (sorted(tags ^ PAGE_TAGS), dump.stderr[-300:])
    assert [t.text for t in dom.all("title")] == ["monitor"]
    cells = [td.text for td in dom.all("td")]  # one feed: name, poll, outcome, fails, health, error
    assert (len(cells), cells[0]) == (6, FEED_NAME)
    outside = [a for a in dom.all("a") if str(a.attrs.get("href")).startswith("http")]
    assert [(a.text, a.attrs) for a in outside] == [
        (TITLE, {"href": LINK, "rel": "noopener noreferrer"})]
    assert [s.text.split(" · ")[0] for s in dom.all("small")] == [FEED_NAME]
    served = httpx.get(f"{daemon_with_http}/").text
    assert html.escape(TITLE) in served and html.escape(FEED_NAME) in served
    shot = tmp_path / "status.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1200,900",
                    f"{daemon_with_http}/"], capture_output=True, timeout=120, check=False)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one


def test_chromium_missing_fails_when_ci_requires_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Chromium the browser test is skipped, but fails when
    MONITOR_TEST_REQUIRE_CHROMIUM=1 says Chromium must be there."""
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("MONITOR_TEST_REQUIRE_CHROMIUM", raising=False)
    with pytest.raises(pytest.skip.Exception):
        chromium_or_skip()
    monkeypatch.setenv("MONITOR_TEST_REQUIRE_CHROMIUM", "1")
    with pytest.raises(pytest.fail.Exception, match="MONITOR_TEST_REQUIRE_CHROMIUM is set"):
        chromium_or_skip()


def test_only_get_and_head_are_served(daemon_with_http: str) -> None:
    """Every other method, however spelled, is answered 405 with `Allow: GET, HEAD`."""
    base = daemon_with_http
    for method in ("POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "get", "FOO<x>"):
        for path in ("/", "/healthz", "/feed.xml"):
            answer = raw_request(base, f"{method} {path} HTTP/1.1\r\nHost: x\r\n"
                                       f"Content-Length: 5\r\n\r\nhello".encode())
            assert (answer.status, answer.headers.get("allow"), answer.body) == (
                405, "GET, HEAD", b"method not allowed\n"), (method, path)


def test_head_answers_the_headers_of_get_without_a_body(daemon_with_http: str) -> None:
    """HEAD gets GET's status and Content-Length and not one byte of body."""
    base = daemon_with_http
    for path in ("/healthz", "/nope", "/", "/feed.xml", "/metrics"):
        get = raw_request(base, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = raw_request(base, f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert (head.status, head.body) == (get.status, b""), path
        assert int(head.headers["content-length"]) > 0
        if path in ("/healthz", "/nope"):  # the others change from one second to the next
            assert head.headers["content-length"] == str(len(get.body)) == \
                get.headers["content-length"]


def test_answers_name_no_server_software_and_forbid_sniffing_and_scripts(
        daemon_with_http: str) -> None:
    """No answer, error or not, carries a `Server` header; each says nosniff and a
    Content-Security-Policy that allows no script, only inline styles."""
    base = daemon_with_http
    requests = [f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                for path in ("/", "/feed.xml", "/healthz", "/metrics", "/nope")]
    requests += [b"POST / HTTP/1.1\r\nHost: x\r\n\r\n", b"NONSENSE\r\n\r\n", b"GET /\r\n",
                 b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n"]
    for request in requests:
        answer = raw_request(base, request)
        assert "server" not in answer.headers, answer.headers
        assert answer.headers["x-content-type-options"] == "nosniff"
        policy = dict(d.strip().partition(" ")[::2]
                      for d in answer.headers["content-security-policy"].split(";"))
        assert (policy["default-src"], policy["style-src"]) == ("'none'", "'unsafe-inline'")
        assert "script-src" not in policy


def test_oversized_requests_are_refused_and_the_endpoint_goes_on(daemon_with_http: str) -> None:
    """A 100 KB request line gets 414, 128 KB of headers or 150 headers get 431, and /healthz
    still answers."""
    base = daemon_with_http
    long_line = raw_request(base, b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n")
    assert long_line.status == 414
    big = b"".join(b"X-Big-%d: %s\r\n" % (i, b"a" * 4000) for i in range(32))
    assert raw_request(base, b"GET /healthz HTTP/1.1\r\n" + big + b"\r\n").status == 431
    many = b"".join(b"X-Many-%d: a\r\n" % i for i in range(150))
    assert raw_request(base, b"GET /healthz HTTP/1.1\r\n" + many + b"\r\n").status == 431
    assert httpx.get(f"{base}/healthz", timeout=5).text == "ok\n"


def test_a_forged_host_header_is_not_reflected_in_the_atom_feed(daemon_with_http: str) -> None:
    """/feed.xml names itself and its entries by the configured listen address, whatever Host
    the client sends."""
    base = daemon_with_http
    answer = raw_request(base, b"GET /feed.xml HTTP/1.1\r\n"
                               b"Host: evil.example\"><script>alert(1)</script>\r\n\r\n")
    assert answer.status == 200
    assert b"evil.example" not in answer.body
    root = ET.fromstring(answer.body)
    assert root.findtext(f"{ATOM}id") == f"{base}/feed.xml"
    assert [link.get("href") for link in root.findall(f"{ATOM}link")] == [f"{base}/feed.xml"]
    assert all(str(e.findtext(f"{ATOM}id")).startswith(f"{base}/entries/")
               for e in root.iter(f"{ATOM}entry"))


def test_feed_credentials_never_show_on_any_page(tmp_path: Path, feed_server: FeedServer,
                                                 sink: Sink) -> None:
    """Feeds whose URLs carry a password and a token (one unnamed, one named by its pasted
    URL, one failing) show neither in /, /feed.xml, /metrics or /healthz: URLs are masked."""
    port = feed_server.server.server_address[1]

    def url(path: str) -> str:
        return f"http://user:s3cretpw@127.0.0.1:{port}{path}?token=tok123secret"

    feed_server.serve("/ru.xml?token=tok123secret", render_feed("russian.xml"))
    feed_server.serve("/id.xml?token=tok123secret", render_feed("indonesian.xml"))
    feeds = [{"url": url("/ru.xml")}, {"url": url("/id.xml"), "name": url("/id.xml")},
             {"url": url("/missing.xml")}]
    with http_daemon(tmp_path, feeds, sink, alerts=2) as running:
        pages = {path: httpx.get(f"{running.base}{path}").text
                 for path in ("/", "/feed.xml", "/metrics", "/healthz")}
    for path, text in pages.items():
        assert not [c for c in CREDENTIALS if c in text], path
    assert f"http://***@127.0.0.1:{port}/ru.xml?token=***" in pages["/"]
    sources = [str(e.findtext(f"{ATOM}summary")).split("]")[0]
               for e in ET.fromstring(pages["/feed.xml"]).iter(f"{ATOM}entry")]
    assert sorted(set(sources)) == [f"[http://***@127.0.0.1:{port}/ru.xml?token=***",
                                    f"[http://user:***@127.0.0.1:{port}/id.xml?token=***"]


def test_status_page_links_only_http_urls() -> None:
    """An entry's link becomes an anchor (rel="noopener noreferrer") only when it is an
    http(s) URL; any other link leaves the title as escaped text."""
    from monitor.surfaces.web import link_html

    assert link_html("https://a.example/x?a=1&b=2", "<b>") == (
        '<a href="https://a.example/x?a=1&amp;b=2" rel="noopener noreferrer">&lt;b&gt;</a>')
    for link in ("javascript:alert(1)", "data:text/html,<script>", "//evil.example/", "/x",
                 "", None):
        assert link_html(link, "<b>") == "&lt;b&gt;"


def test_healthz_is_503_when_the_scheduler_is_not_running() -> None:
    """/healthz answers 503 with the reason once the scheduler has stopped."""
    from monitor.surfaces.web import WebState, make_app

    app = make_app(WebState(runtime=None, scheduler_running=lambda: False))
    answers: list[str] = []
    body = b"".join(app({"PATH_INFO": "/healthz"}, lambda status, headers: answers.append(status)))
    assert answers == ["503 Service Unavailable"]
    assert body == b"scheduler not running\n"


@dataclass(frozen=True)
class _View:
    """A read-only view of a daemon for the pages: a config and a store, no watchlists."""

    config: Any
    store: Any


def test_pages_explain_matches_as_recorded_without_matching_again(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """After a cycle, /feed.xml and / explain the match with the terms recorded with the entry,
    from a view that has no watchlists to match with."""
    from monitor.pipeline import open_config
    from monitor.storage.store import Store
    from monitor.surfaces.web import WebState, atom_feed, status_page
    from tests.support.project import run_cycle

    config = write_config(tmp_path, [{"url": feed_server.serve("/ru.xml", hostile_feed()),
                                      "name": "RU"}], [{"url": sink.url}])
    assert run_cycle(config) == []
    loaded = open_config(config)
    store = Store(loaded.database)
    try:
        state = WebState(_View(loaded, store), scheduler_running=lambda: True)
        summary = ET.fromstring(atom_feed(state, "http://127.0.0.1:1")).findtext(
            f"{ATOM}entry/{ATOM}summary") or ""
        page = status_page(state).decode()
    finally:
        store.close()
    explained = "russia-dprk: russia_related (Лавров*), dprk_related (Пхеньян*)"
    assert summary.startswith(f"[RU] {explained}"), summary
    assert html.escape(explained) in page


def test_an_old_match_recorded_silently_is_marked_on_the_page_and_left_out_of_the_feed(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """A matching story too old to alert on a feed's first poll shows on / as "not alerted"
    (with when it was published) and is not in /feed.xml, which lists alerts only."""
    from monitor.pipeline import open_config
    from monitor.storage.store import Store
    from monitor.surfaces.web import WebState, atom_feed, status_page
    from tests.support.project import run_cycle

    config = write_config(tmp_path, [{"url": feed_server.serve("/en.xml",
                                                               render_feed("english.xml")),
                                      "name": "EN"}], [{"url": sink.url}])
    assert run_cycle(config) == []
    loaded = open_config(config)
    store = Store(loaded.database)
    try:
        state = WebState(_View(loaded, store), scheduler_running=lambda: True)
        feed = ET.fromstring(atom_feed(state, "http://127.0.0.1:1"))
        page = status_page(state).decode()
    finally:
        store.close()
    titles = [e.findtext(f"{ATOM}title") or "" for e in feed.iter(f"{ATOM}entry")]
    assert titles == ["Putin and Kim Jong Un sign mutual defence pact in Pyongyang"]
    old = next(li for li in page.split("<li") if "Choe Son Hui" in li)
    assert "not alerted: too old when first seen" in old and "published 20" in old
    assert all("<b>alerted</b>" in li for li in page.split("<li")[1:] if "Choe" not in li)


def _problem(config: Path) -> str | None:
    """/healthz's reason for this config's daemon; the status page must show the same one."""
    from monitor.pipeline import open_config
    from monitor.storage.store import Store
    from monitor.surfaces.web import WebState, health_problem, status_page

    loaded = open_config(config)
    store = Store(loaded.database)
    try:
        state = WebState(_View(loaded, store), scheduler_running=lambda: True)
        problem, page = health_problem(state), status_page(state).decode()
    finally:
        store.close()
    assert ("<b>Not healthy:</b> " + html.escape(problem) in page) if problem else \
        "Not healthy" not in page
    return problem


def test_healthz_fails_when_every_feed_fails_or_the_outbox_is_stuck(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """/healthz's verdict: fine after a good cycle; "every feed is failing" when all configured
    feeds failed their last poll; "outbox stuck" once an alert its target refuses has waited
    longer than health.stuck_after."""
    import sqlite3

    from tests.support.project import run_cycle

    good = feed_server.serve("/ru.xml", render_feed("russian.xml"))
    config = write_config(tmp_path, [{"url": good, "name": "RU"}], [{"url": sink.url}],
                          health={"stuck_after": "1h"})
    sink.failing = True
    run_cycle(config, datetime.now(UTC) + timedelta(seconds=30))
    assert _problem(config) is None  # refused once, but only just now
    with sqlite3.connect(tmp_path / "monitor.db") as db:
        db.execute("update outbox set created_at = datetime('now', '-2 hours')")
    assert (_problem(config) or "").startswith("outbox stuck: an alert refused by its target "
                                               "has waited 2.0 h")
    feed_server.serve("/ru.xml", b"", status=503)
    config = write_config(tmp_path, [{"url": good, "name": "RU"}], [])
    with sqlite3.connect(tmp_path / "monitor.db") as db:
        db.execute("delete from outbox")
    run_cycle(config)
    assert _problem(config) == "every feed is failing (1 feed)"
