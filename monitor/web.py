"""The optional HTTP endpoint: /healthz, /metrics, /feed.xml (Atom) and / (a status page).

Off unless `http.listen` is set (loopback by default). A small WSGI app from the standard
library, served from one thread beside the event loop: every page is a short database read.
"""

from __future__ import annotations

import html
import logging
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from monitor import metrics
from monitor.matcher import match_entry
from monitor.models import Match
from monitor.status import format_time, gather_status
from monitor.store import StoreError, entry_of
from monitor.tables import EntryRow, utcnow

log = logging.getLogger("monitor")
ATOM = "http://www.w3.org/2005/Atom"
LATEST = 50
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


@dataclass
class WebState:
    """What the pages read: the runtime (swapped on reload) and whether the scheduler runs."""

    runtime: Any
    scheduler_running: Callable[[], bool]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)


def _latest(state: WebState) -> list[tuple[EntryRow, str, list[Match]]]:
    rt = state.runtime
    found = []
    for row, feed in rt.store.matches_since(utcnow() - timedelta(days=30))[:LATEST]:
        found.append((row, feed, match_entry(entry_of(row, "", feed), rt.watchlists)))
    return found


def _explain(matches: list[Match]) -> str:
    return "; ".join(f"{m.watchlist}: " + ", ".join(
        f"{entity} ({', '.join(aliases)})" for entity, aliases in m.terms_by_entity().items())
        for m in matches)


def atom_feed(state: WebState, base: str) -> bytes:
    """The latest matches as an Atom document, each with its explanation and snippet."""
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    ET.SubElement(feed, f"{{{ATOM}}}title").text = "monitor: latest matches"
    ET.SubElement(feed, f"{{{ATOM}}}id").text = f"{base}/feed.xml"
    ET.SubElement(feed, f"{{{ATOM}}}link", rel="self", href=f"{base}/feed.xml")
    ET.SubElement(feed, f"{{{ATOM}}}updated").text = utcnow().isoformat()
    author = ET.SubElement(feed, f"{{{ATOM}}}author")
    ET.SubElement(author, f"{{{ATOM}}}name").text = "monitor"
    for row, source, matches in _latest(state):
        item = ET.SubElement(feed, f"{{{ATOM}}}entry")
        ET.SubElement(item, f"{{{ATOM}}}title").text = row.title or "(untitled)"
        ET.SubElement(item, f"{{{ATOM}}}id").text = f"{base}/entries/{row.id}"
        ET.SubElement(item, f"{{{ATOM}}}updated").text = row.seen_at.isoformat()
        if row.link:
            ET.SubElement(item, f"{{{ATOM}}}link", href=row.link)
        snippet = matches[0].highlighted_snippet("") if matches else row.summary[:240]
        summary = f"[{source}] {_explain(matches) or row.matched}\n\n{snippet}"
        ET.SubElement(item, f"{{{ATOM}}}summary").text = summary
    return bytes(ET.tostring(feed, encoding="utf-8", xml_declaration=True))


def status_page(state: WebState) -> bytes:
    """A small read-only HTML page: feed health and the latest matches."""
    rt = state.runtime
    status = gather_status(rt.config, rt.store)
    feeds = "".join(
        (f"<tr class='{html.escape(f.health if f.health != 'ok' or not f.failures else 'error')}'>"
         f"<td>{html.escape(f.name)}</td><td>"
         f"{format_time(f.last_poll)}</td><td>"
         f"{html.escape(f.outcome or '-')}</td><td>{f.failures}</td><td>{html.escape(f.health)}"
         f"</td><td>{html.escape((f.last_error or '')[:120])}</td></tr>") for f in status.feeds)
    latest = "".join(
        f"<li><a href='{html.escape(row.link or '#')}'>{html.escape(row.title)}</a> "
        f"<small>{html.escape(source)} · {row.seen_at:%Y-%m-%d %H:%M} UTC · "
        f"{html.escape(_explain(matches))}</small></li>" for row, source, matches in _latest(state))
    outbox = ", ".join(f"{n} {html.escape(s)}" for s, n in status.outbox.items())
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>monitor</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }}
td, th {{ padding: .3em .8em; border-bottom: 1px solid #ddd; }}
tr.failing td {{ background: #fdd; }} tr.stale td, tr.error td {{ background: #ffe9b3; }}
small {{ color: #666; }}
</style></head><body>
<h1>monitor</h1>
<p>{len(status.feeds)} feeds · outbox: {outbox} · <a href="feed.xml">Atom feed of matches</a>
· <a href="metrics">metrics</a></p>
<h2>Feeds</h2>
<table><tr><th>feed</th><th>last poll (UTC)</th><th>outcome</th><th>failures</th>
<th>health</th><th>last error</th></tr>{feeds}</table>
<h2>Latest matches</h2><ul>{latest or "<li>none yet</li>"}</ul>
</body></html>"""
    return page.encode()


def _health(state: WebState) -> tuple[str, bytes]:
    if not state.scheduler_running():
        return "503 Service Unavailable", b"scheduler not running\n"
    try:
        state.runtime.store.schema_version()
    except StoreError as error:
        return "503 Service Unavailable", f"database: {error}\n".encode()
    return "200 OK", b"ok\n"


def make_app(state: WebState) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The WSGI application."""
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        base = f"http://{environ.get('HTTP_HOST', 'localhost')}"
        status, kind = "200 OK", "text/html; charset=utf-8"
        try:
            if path == "/healthz":
                status, body = _health(state)
                kind = "text/plain; charset=utf-8"
            elif path == "/metrics":
                body, kind = generate_latest(metrics.REGISTRY), CONTENT_TYPE_LATEST
            elif path == "/feed.xml":
                body, kind = atom_feed(state, base), "application/atom+xml; charset=utf-8"
            elif path == "/":
                body = status_page(state)
            else:
                status, body, kind = "404 Not Found", b"not found\n", "text/plain"
        except StoreError as error:
            status, body, kind = "503 Service Unavailable", f"{error}\n".encode(), "text/plain"
        start_response(status, [("Content-Type", kind), ("Content-Length", str(len(body)))])
        return [body]
    return app


class WebServer:
    """The endpoint's server thread."""

    def __init__(self, listen: str, state: WebState):
        host, _, port = listen.rpartition(":")
        self.server: WSGIServer = make_server(host.strip("[]") or "127.0.0.1", int(port),
                                              make_app(state), handler_class=_QuietHandler)
        rt = state.runtime
        metrics.watch_state(lambda: (rt.store.outbox_counts(),
                                     sum(1 for f in rt.store.feeds() if f.consecutive_failures)))
        self.thread = threading.Thread(target=self.server.serve_forever, name="monitor-http",
                                       daemon=True)

    def start(self) -> None:
        """Serve in the background."""
        self.thread.start()
        host, port = self.server.server_address[:2]
        log.info("http endpoint on http://%s:%s/ (healthz, metrics, feed.xml)", host, port)

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
