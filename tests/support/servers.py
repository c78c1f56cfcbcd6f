"""Real local parts for tests: a feed server, an HTTP sink for Apprise json://, a mailbox for
aiosmtpd, and a stand-in for the Telegram API (the one part that cannot run here)."""

from __future__ import annotations

import email
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

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


def held(release: threading.Event, body: bytes) -> Handler:
    """A handler that accepts the request and answers nothing until `release` is set (or a
    minute passes), then sends `body`."""
    def handle(request: BaseHTTPRequestHandler) -> None:
        release.wait(60)
        answer(200, body)(request)
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
        self.authorizations: list[str] = []  # each request's Authorization header, if any
        self.failing = False
        self.delay = 0.0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                payload = self.rfile.read(length)
                owner.authorizations.append(self.headers.get("Authorization") or "")
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


class Mailbox:
    """Messages an aiosmtpd server on 127.0.0.1 received."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


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
