"""Real local parts for tests: a feed server, an HTTP sink for Apprise json://, an SMTP server."""

from __future__ import annotations

import email
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
FEEDS = Path(__file__).resolve().parent / "feeds"
# The project's shared corpora (peer feeds, seed): beside the clone, or where CI says.
SHARED = Path(os.environ.get("MONITOR_TEST_SHARED") or ROOT.parent / "shared")


def render_feed(name: str, now: datetime | None = None) -> bytes:
    """A golden feed file with `{{hours_ago:N}}` replaced by an RFC 822 date N hours before now."""
    text = (FEEDS / name).read_text(encoding="utf-8")
    now = now or datetime.now(UTC)

    def date(found: re.Match[str]) -> str:
        when = now - timedelta(hours=float(found.group(1)))
        return when.strftime("%a, %d %b %Y %H:%M:%S +0000")

    def iso(found: re.Match[str]) -> str:
        when = now - timedelta(hours=float(found.group(1)))
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")

    text = re.sub(r"\{\{hours_ago:([\d.]+)\}\}", date, text)
    return re.sub(r"\{\{iso_hours_ago:([\d.]+)\}\}", iso, text).encode("utf-8")


Handler = Callable[[BaseHTTPRequestHandler], None]


def answer(status: int, body: bytes, **headers: str) -> Handler:
    """A handler sending `body` with `status`; header names use _ for - (Content_Encoding)."""
    def handle(request: BaseHTTPRequestHandler) -> None:
        request.send_response(status)
        for key, value in headers.items():
            request.send_header(key.replace("_", "-"), value)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)
    return handle


def trickle(interval: float, count: int) -> Handler:
    """A handler that promises a large body and sends one byte every `interval` seconds."""
    def handle(request: BaseHTTPRequestHandler) -> None:
        request.send_response(200)
        request.send_header("Content-Length", "1000000")
        request.end_headers()
        try:
            for _ in range(count):
                request.wfile.write(b"<")
                request.wfile.flush()
                time.sleep(interval)
        except OSError:
            pass
    return handle


def redirect_loop(request: BaseHTTPRequestHandler) -> None:
    """A handler redirecting to itself forever."""
    request.send_response(302)
    request.send_header("Location", request.path)
    request.send_header("Content-Length", "0")
    request.end_headers()


@dataclass
class Route:
    """What the feed server answers on one path."""

    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    handler: Callable[[BaseHTTPRequestHandler], None] | None = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class FeedServer:
    """A real HTTP server on 127.0.0.1 that serves routes tests set and change."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner.requests.append((self.path, dict(self.headers)))
                route = owner.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                if route.handler is not None:
                    route.handler(self)
                    return
                if route.etag and self.headers.get("If-None-Match") == route.etag:
                    self.send_response(304)
                    self.send_header("ETag", route.etag)
                    self.end_headers()
                    return
                self.send_response(route.status)
                for key, value in route.headers.items():
                    self.send_header(key, value)
                if route.etag:
                    self.send_header("ETag", route.etag)
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                self.wfile.write(route.body)

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def serve(self, path: str, body: bytes, **kwargs: Any) -> str:
        """Serve `body` at `path`; returns the full URL."""
        self.routes[path] = Route(body=body, **kwargs)
        return self.base + path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Sink:
    """An HTTP endpoint for Apprise's json:// that records each alert; can be switched off."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.failing = False
        self.delay = 0.0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                payload = self.rfile.read(length)
                time.sleep(owner.delay)
                if owner.failing:
                    self.send_response(503)
                    self.end_headers()
                    return
                owner.received.append(json.loads(payload))
                self.send_response(200)
                self.end_headers()

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server.server_address[1]}/alerts"

    def titles(self) -> list[str]:
        return [str(m.get("title", "")) for m in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer()
    yield server
    server.close()


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink()
    yield server
    server.close()


class Mailbox:
    """Messages an aiosmtpd server on 127.0.0.1 received."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    from aiosmtpd.controller import Controller

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))  # aiosmtpd cannot take port 0: find a free port first
    port = probe.getsockname()[1]
    probe.close()
    mailbox = Mailbox()
    # aiosmtpd's thread logs each connection, sometimes after pytest closed the test's capture.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield mailbox, port
    controller.stop()


def default_config() -> dict[str, Any]:
    """The repo's config.yaml as data."""
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    return loaded


def write_config(tmp_path: Path, feeds: list[dict[str, Any]], notify: list[dict[str, Any]],
                 **overrides: Any) -> Path:
    """The repo's config with local feeds, local targets and a database in `tmp_path`."""
    config = default_config()
    config.update(database=f"sqlite:///{tmp_path / 'monitor.db'}", feeds=feeds, notify=notify)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    path.chmod(0o600)  # as a config holding tokens should be
    return path


class TelegramApi:
    """Stands in for api.telegram.org (the one part that cannot run here; patch it over
    `apprise.plugins.telegram.requests.post`): records the text of each sendMessage and answers
    as Telegram does."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def post(self, url: str, data: Any = None, **_: Any) -> Any:
        from types import SimpleNamespace

        if url.endswith("/sendMessage"):
            self.texts.append(json.loads(data)["text"])
        return SimpleNamespace(status_code=200, content=b'{"ok": true, "result": {}}')


def run_cycle(config: Path, *moments: datetime) -> list[int]:
    """Poll once, then run the outbox at each moment (the clock moved by hand); the messages
    sent at each."""
    import asyncio

    from monitor.pipeline import Runtime, open_config

    async def go() -> list[int]:
        rt = Runtime.from_config(open_config(config))
        try:
            await rt.poll_all()
            return [(await rt.deliver(now=moment)).sent for moment in moments]
        finally:
            await rt.close()
    return asyncio.run(go())
