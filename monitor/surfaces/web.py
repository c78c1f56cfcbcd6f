"""The optional HTTP endpoint: /healthz, /metrics, /feed.xml (Atom) and / (a status page).

Off unless `http.listen` is set (loopback by default). A small WSGI app, served by
`monitor.httpserver` (a thread per connection, with bounds on what a connection may cost)
beside the event loop: every page is a short database read. Only GET and HEAD are served
(`405` with `Allow` otherwise); page text is escaped for where it lands, with every registered
secret masked (`monitor.secrets`); /feed.xml names itself by the configured address, never by
a client's Host header.
"""

from __future__ import annotations

import html
import logging
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from monitor.config import Config, format_duration
from monitor.errors import StoreError
from monitor.models import Explanation
from monitor.sources.parser import safe_link
from monitor.storage.entries import match_state
from monitor.storage.store import Store
from monitor.storage.tables import EntryRow, utcnow
from monitor.support import metrics
from monitor.support.logs import counted
from monitor.support.secrets import redact
from monitor.surfaces.httpserver import SECURITY_HEADERS, App, BoundedServer, StartResponse
from monitor.surfaces.status import describe_outcome, format_time, gather_status

log = logging.getLogger("monitor")
ATOM = "http://www.w3.org/2005/Atom"
LATEST = 50
ALLOWED = ("GET", "HEAD")
TEXT = "text/plain; charset=utf-8"


class Readable(Protocol):
    """The read-only view of the running daemon that the pages need (the pipeline's
    `Runtime` is one): its current config and its store."""

    @property
    def config(self) -> Config: ...

    @property
    def store(self) -> Store: ...


@dataclass
class WebState:
    """What the pages read: the running daemon (its config changes on reload) and whether the
    scheduler runs."""

    runtime: Readable
    scheduler_running: Callable[[], bool]


def _latest(state: WebState, alerted_only: bool = False
            ) -> list[tuple[EntryRow, str, list[Explanation]]]:
    """The latest matches (or only those that alerted) with the explanations recorded with
    them (never matched again)."""
    rows = state.runtime.store.entries.matches_since(utcnow() - timedelta(days=30))
    if alerted_only:
        rows = [(row, feed) for row, feed in rows if row.alerted]
    return [(row, feed, Explanation.load(row.explained)) for row, feed in rows[:LATEST]]


def _explain(explanations: list[Explanation]) -> str:
    return "; ".join(e.describe() for e in explanations)


def atom_feed(state: WebState, base: str) -> bytes:
    """The latest alerts as an Atom document, each with its explanation and snippet (matches
    recorded without an alert, such as old stories, are not in it: it is an alert channel).

    `base` is the configured listen address, never the client's Host header. Text from the
    database (titles, links, feed names, snippets) has every registered secret masked.
    """
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    ET.SubElement(feed, f"{{{ATOM}}}title").text = "monitor: latest alerts"
    ET.SubElement(feed, f"{{{ATOM}}}id").text = f"{base}/feed.xml"
    ET.SubElement(feed, f"{{{ATOM}}}link", rel="self", href=f"{base}/feed.xml")
    ET.SubElement(feed, f"{{{ATOM}}}updated").text = utcnow().isoformat()
    author = ET.SubElement(feed, f"{{{ATOM}}}author")
    ET.SubElement(author, f"{{{ATOM}}}name").text = "monitor"
    for row, source, matches in _latest(state, alerted_only=True):
        item = ET.SubElement(feed, f"{{{ATOM}}}entry")
        ET.SubElement(item, f"{{{ATOM}}}title").text = redact(row.title or "(untitled)")
        ET.SubElement(item, f"{{{ATOM}}}id").text = f"{base}/entries/{row.id}"
        ET.SubElement(item, f"{{{ATOM}}}updated").text = row.seen_at.isoformat()
        link = safe_link(row.link)
        if link:
            ET.SubElement(item, f"{{{ATOM}}}link", href=redact(link))
        snippet = matches[0].snippet if matches else row.summary[:240]
        summary = f"[{source}] {_explain(matches) or row.matched}\n\n{snippet}"
        ET.SubElement(item, f"{{{ATOM}}}summary").text = redact(summary)
    return bytes(ET.tostring(feed, encoding="utf-8", xml_declaration=True))


def link_html(link: str | None, text: str) -> str:
    """`text` as HTML: a link (opening no window back to us) when `link` is an http(s) URL,
    plain text otherwise; both escaped, with every registered secret masked."""
    shown = html.escape(redact(text))
    safe = safe_link(link)
    if safe is None:
        return shown
    return f'<a href="{html.escape(redact(safe))}" rel="noopener noreferrer">{shown}</a>'


def _escaped(text: str) -> str:
    return html.escape(redact(text))


def _latest_item(row: EntryRow, source: str, matches: list[Explanation]) -> str:
    """One match on the status page: alerted, or marked as recorded without an alert."""
    match_is = match_state(row)
    published = format_time(row.published) if row.published else "undated"
    return (f"<li class='{match_is.name.lower()}'>{link_html(row.link, row.title)} "
            f"<small>{_escaped(source)} · seen {format_time(row.seen_at)} UTC · published "
            f"{published} · <b>{_escaped(match_is.describe())}</b> · "
            f"{_escaped(_explain(matches))}</small></li>")


def status_page(state: WebState) -> bytes:
    """A small read-only HTML page: feed health and the latest matches."""
    rt = state.runtime
    status = gather_status(rt.config, rt.store)  # names masked, errors redacted
    feeds = "".join(
        (f"<tr class='{_escaped(f.health if f.health != 'ok' or not f.failures else 'error')}'>"
         f"<td>{_escaped(f.name)}</td><td>"
         f"{format_time(f.last_poll)}</td><td>"
         f"{_escaped(describe_outcome(f.outcome))}</td><td>{f.failures}</td><td>{_escaped(f.health)}"
         f"</td><td>{_escaped((f.last_error or '')[:120])}</td></tr>") for f in status.feeds)
    latest = "".join(_latest_item(row, source, matches) for row, source, matches in _latest(state))
    outbox = ", ".join(f"{n} {_escaped(s)}" for s, n in status.outbox.items())
    problem = health_problem(state)
    trouble = f"<p class='problem'><b>Not healthy:</b> {_escaped(problem)}</p>" if problem else ""
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>monitor</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }}
td, th {{ padding: .3em .8em; border-bottom: 1px solid #ddd; }}
tr.failing td {{ background: #fdd; }} tr.stale td, tr.error td {{ background: #ffe9b3; }}
p.problem {{ background: #fdd; padding: .5em; }}
small {{ color: #666; }} li.same_story, li.silent {{ opacity: .6; }}
</style></head><body>
<h1>monitor</h1>
{trouble}<p>{len(status.feeds)} feeds · outbox: {outbox} ·
<a href="feed.xml">Atom feed of alerts</a> · <a href="metrics">metrics</a></p>
<h2>Feeds</h2>
<table><tr><th>feed</th><th>last poll (UTC)</th><th>outcome</th><th>failures</th>
<th>health</th><th>last error</th></tr>{feeds}</table>
<h2>Latest matches</h2><ul>{latest or "<li>none yet</li>"}</ul>
</body></html>"""
    return page.encode()


def _health(state: WebState) -> tuple[str, bytes]:
    problem = health_problem(state)
    if problem:
        return "503 Service Unavailable", f"{redact(problem)}\n".encode()
    return "200 OK", b"ok\n"


def health_problem(state: WebState) -> str | None:
    """Why the daemon cannot do its job, if it cannot: the scheduler stopped, the database
    failing (a full disk, a read-only file, a lost connection: until a write succeeds again),
    every feed failing, or an alert that targets keep refusing waiting past
    `health.stuck_after`."""
    if not state.scheduler_running():
        return "scheduler not running"
    store, config = state.runtime.store, state.runtime.config
    fault = store.database.fault
    if fault is not None:
        return f"database failing since {format_time(fault.since)} UTC: {fault.reason}"
    try:
        store.schema_version()
        configured = {feed.url for feed in config.feeds}
        polled = [row for row in store.feeds.all() if row.url in configured and row.last_poll_at]
        oldest = store.outbox.oldest_refused()
    except StoreError as error:
        return f"database: {error}"
    if polled and len(polled) == len(configured) and all(r.consecutive_failures for r in polled):
        return f"every feed is failing ({counted(len(polled), 'feed')})"
    if oldest is not None:
        waited = (utcnow() - oldest).total_seconds()
        if waited > config.health.stuck_after:
            return f"outbox stuck: an alert refused by its target has waited " \
                   f"{waited / 3600:.1f} h (health.stuck_after: " \
                   f"{format_duration(config.health.stuck_after)})"
    return None


def _page(state: WebState, path: str, base: str) -> tuple[str, bytes, str]:
    """The status, body and content type of a GET of `path`."""
    try:
        if path == "/healthz":
            return (*_health(state), TEXT)
        if path == "/metrics":
            return "200 OK", generate_latest(metrics.REGISTRY), CONTENT_TYPE_LATEST
        if path == "/feed.xml":
            return "200 OK", atom_feed(state, base), "application/atom+xml; charset=utf-8"
        if path == "/":
            return "200 OK", status_page(state), "text/html; charset=utf-8"
    except StoreError as error:
        return "503 Service Unavailable", f"{redact(str(error))}\n".encode(), TEXT
    return "404 Not Found", b"not found\n", TEXT


def make_app(state: WebState, base: str = "http://localhost") -> App:
    """The WSGI application; `base` (scheme, host and port) names the pages in /feed.xml."""
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        extra: list[tuple[str, str]] = []
        if method in ALLOWED:
            status, body, kind = _page(state, environ.get("PATH_INFO", "/"), base)
        else:
            status, body, kind = "405 Method Not Allowed", b"method not allowed\n", TEXT
            extra.append(("Allow", ", ".join(ALLOWED)))
        start_response(status, [("Content-Type", kind), ("Content-Length", str(len(body))),
                                *SECURITY_HEADERS, *extra])
        return [b""] if method == "HEAD" else [body]
    return app


def _bind_address(listen: str) -> tuple[str, int]:
    """The (host, port) to bind for `http.listen` (HOST:PORT, [IPv6]:PORT or :PORT)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def _base(listen: str, port: int) -> str:
    """Scheme, host and port for naming the pages: the configured address, not a Host header."""
    return f"http://{listen.rpartition(':')[0] or '127.0.0.1'}:{port}"


class WebServer:
    """The endpoint's server thread, which hands each connection to a thread of its own."""

    def __init__(self, listen: str, state: WebState):
        self.server = BoundedServer(_bind_address(listen))
        self.server.app = make_app(state, _base(listen, self.server.server_address[1]))
        rt = state.runtime
        metrics.watch_state(lambda: (
            rt.store.outbox.counts(),
            sum(1 for f in rt.store.feeds.all() if f.consecutive_failures)))
        self.thread = threading.Thread(target=self.server.serve_forever, name="monitor-http",
                                       daemon=True)

    def start(self) -> None:
        """Serve in the background."""
        self.thread.start()
        host, port = self.server.server_address[:2]
        log.info("http endpoint on http://%s:%s/ (healthz, metrics, feed.xml)", host, port)

    def stop(self) -> None:
        """Stop serving; answers being written get a moment to finish."""
        self.server.shutdown()
        self.server.close(seconds=2.0)
