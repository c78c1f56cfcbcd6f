"""The HTTP endpoint's server: a thread per connection, and bounds on what a stranger's
connection can cost.

- at most `MAX_CONNECTIONS` connections (each a thread and a file descriptor); when all are
  taken, a new one closes the oldest connection still sending its request, or, when none is,
  gets `503` at once: a flood of idle connections cannot starve a health check;
- a request head (line and headers) must arrive whole within `HEAD_SECONDS` and
  `HEAD_BYTES` (`408`, `414` or `431` otherwise), however slowly it trickles in;
- writing an answer may take `IO_SECONDS`; a body sent with a request is read (at most
  `BODY_BYTES`) and thrown away: no page takes one.
No answer names the server's software; every answer carries `SECURITY_HEADERS`. The pages
themselves are `monitor.web`'s WSGI application.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from socketserver import ThreadingMixIn
from typing import IO, TYPE_CHECKING, Any, cast
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

if TYPE_CHECKING:
    from _typeshed import OptExcInfo, WriteableBuffer

log = logging.getLogger("monitor")
StartResponse = Callable[[str, list[tuple[str, str]]], Any]
App = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
MAX_CONNECTIONS = 64  # handler threads and accepted sockets at once
HEAD_SECONDS = 5.0  # for the whole request line and headers, however they trickle in
HEAD_BYTES = 64 * 1024  # request line and headers together
LINE_BYTES = 8 * 1024  # the request line (method, path, version)
BODY_BYTES = 64 * 1024  # a request body read (and dropped) so closing does not reset
IO_SECONDS = 10.0  # writing an answer
LINGER_SECONDS = 1.0  # reading what a refused client still sends, before closing
LINGER_BYTES = 256 * 1024
# Every answer: no sniffing a type, no scripts, frames, forms, plugins or fetches; inline
# styles only (the status page's own <style>).
SECURITY_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; "
                                "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    ("Referrer-Policy", "no-referrer"),
]
BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\n"
        b"X-Content-Type-Options: nosniff\r\n\r\nbusy\n")


class _TooLarge(Exception):
    """A request (head, or the body being dropped) is larger than it may be."""


class _Budget(io.RawIOBase):
    """A connection's incoming bytes under a deadline and a byte budget, however they trickle.

    A socket timeout bounds each wait for a byte; this bounds their sum, so a client sending
    one byte a second cannot keep its connection (and thread) forever.
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock
        self.deadline, self.left = 0.0, 0
        self.rearm(HEAD_SECONDS, HEAD_BYTES)

    def rearm(self, seconds: float, limit: int) -> None:
        """Allow `limit` more bytes within `seconds` from now."""
        self.deadline, self.left = time.monotonic() + seconds, limit

    def readable(self) -> bool:
        """A connection can be read."""
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        """Receive at most what the budget still allows, within what time is left."""
        if self.left <= 0:
            raise _TooLarge
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request too slow")
        self.sock.settimeout(remaining)
        view = memoryview(buffer)
        received = self.sock.recv_into(view, min(view.nbytes, self.left))
        self.left -= received
        return received


class _Answer(ServerHandler):
    """wsgiref's response writer, naming no server software and logging through `monitor`."""

    server_software = ""  # no `Server:` header
    environ: dict[str, Any]
    request_handler: _Handler

    def log_exception(self, exc_info: OptExcInfo) -> None:
        """A page failed: one log line (secrets masked by the log filter), not stderr."""
        log.error("http: %s failed", self.environ.get("PATH_INFO"), exc_info=exc_info)


class _Handler(WSGIRequestHandler):
    """One connection: one request whose head is read under a budget, then the app."""

    server: BoundedServer
    default_request_version = "HTTP/1.0"  # no bare HTTP/0.9 answers: each has its headers

    def setup(self) -> None:
        """Read through a `_Budget`; write straight to the socket."""
        super().setup()
        self.requestline, self.request_version, self.command = "", "HTTP/1.0", ""
        self.rfile.close()
        self.budget = _Budget(self.connection)
        self.rfile = io.BufferedReader(self.budget)

    def handle(self) -> None:
        """Read the head (answering 408, 414 or 431 when it is too slow or too large), then
        drop a small body and run the app, unless the server closed the connection meanwhile."""
        try:
            ready = self._read_head()
        except TimeoutError:
            ready = self._refuse(HTTPStatus.REQUEST_TIMEOUT)
        if not ready or not self.server.begin(self.request):
            return
        self._drop_body()
        self.connection.settimeout(IO_SECONDS)
        answer = _Answer(self.rfile, cast(IO[bytes], self.wfile), sys.stderr,
                         self.get_environ(), multithread=True)
        answer.request_handler = self
        answer.run(self.server.app)

    def _read_head(self) -> bool:
        """The request line and headers, parsed; False once refused or closed."""
        try:
            self.raw_requestline = self.rfile.readline(LINE_BYTES + 1)
        except _TooLarge:
            return self._refuse(HTTPStatus.REQUEST_URI_TOO_LONG)
        if len(self.raw_requestline) > LINE_BYTES:
            return self._refuse(HTTPStatus.REQUEST_URI_TOO_LONG)
        if not self.raw_requestline:
            return False
        try:
            parsed = self.parse_request()
        except _TooLarge:
            return self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Headers too large")
        if not parsed:  # parse_request answered 400, 431 or 505
            self._linger()
        return parsed

    def _refuse(self, status: HTTPStatus, message: str | None = None) -> bool:
        """Answer `status` (an HTML error page) and close; False, for `handle`."""
        self.connection.settimeout(LINGER_SECONDS)
        try:
            self.send_error(status, message)
        except OSError:
            return False
        self._linger()
        return False

    def _linger(self) -> None:
        """Half-close, then read (briefly, a little) what the client still sends: closing
        with unread bytes would reset the connection before the client reads the answer."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.budget.rearm(LINGER_SECONDS, LINGER_BYTES)
            while self.rfile.read1(16384):
                pass
        except (OSError, _TooLarge):
            pass

    def _drop_body(self) -> None:
        """Read and drop a declared body of up to `BODY_BYTES` (no page takes one)."""
        with contextlib.suppress(ValueError, OSError, _TooLarge):
            length = int(self.headers.get("Content-Length") or 0)
            if 0 < length <= BODY_BYTES:
                self.budget.rearm(HEAD_SECONDS, BODY_BYTES)
                self.rfile.read(length)

    def send_header(self, keyword: str, value: str) -> None:
        """Send a header, except `Server` (no version banner)."""
        if keyword.lower() != "server":
            super().send_header(keyword, value)

    def end_headers(self) -> None:
        """End the headers of an error answer (send_error), with the security headers."""
        for name, value in SECURITY_HEADERS:
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Requests and errors as DEBUG log lines."""
        log.debug("http: " + format, *args)


class BoundedServer(ThreadingMixIn, WSGIServer):
    """A thread per connection, at most `MAX_CONNECTIONS` at once (see the module docstring)."""

    daemon_threads = True
    block_on_close = False  # `close` waits (briefly) for its own connections
    request_queue_size = 1024  # a burst of connections waits here, not in SYN retries
    app: App  # set by the owner before it serves

    def __init__(self, address: tuple[str, int]) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.changed = threading.Condition()
        self.open: set[socket.socket] = set()
        self.waiting: dict[socket.socket, None] = {}  # still sending their head, oldest first
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve a new connection in a thread of its own, if there is room for it."""
        if not self._admit(request):
            self._busy(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._forget(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve one connection; then make its room free."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._forget(request)

    def _admit(self, request: socket.socket) -> bool:
        """Room for `request`: free, or made by closing the oldest connection still sending
        its head; False when every connection is busy answering."""
        with self.changed:
            if len(self.open) >= MAX_CONNECTIONS:
                if not self.waiting:
                    return False
                oldest = next(iter(self.waiting))
                del self.waiting[oldest]
                _hang_up(oldest)
                if not self.changed.wait_for(lambda: len(self.open) < MAX_CONNECTIONS,
                                             timeout=LINGER_SECONDS):
                    return False
            self.open.add(request)
            self.waiting[request] = None
            return True

    def begin(self, request: socket.socket) -> bool:
        """`request` has sent its head: it may no longer be closed to make room. False when
        it was closed already."""
        with self.changed:
            if request not in self.waiting:
                return False
            del self.waiting[request]
            return True

    def _forget(self, request: socket.socket) -> None:
        with self.changed:
            self.open.discard(request)
            self.waiting.pop(request, None)
            self.changed.notify_all()

    def _busy(self, request: socket.socket) -> None:
        """Answer 503 without a thread (the answer fits an empty socket buffer) and close."""
        try:
            request.setblocking(False)
            request.send(BUSY)
        except OSError:
            pass
        self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection failed (reset, timed out): a DEBUG line, not a traceback on stderr."""
        log.debug("http: connection from %s: %r", client_address[0], sys.exc_info()[1])

    def close(self, seconds: float) -> None:
        """Stop listening, close connections still sending their head, and wait up to
        `seconds` for the answers being written."""
        self.server_close()
        with self.changed:
            for request in self.waiting:
                _hang_up(request)
            self.changed.wait_for(lambda: not self.open, timeout=seconds)


def _hang_up(request: socket.socket) -> None:
    """Wake the thread reading `request` with an end of file (its own thread closes it)."""
    with contextlib.suppress(OSError):
        request.shutdown(socket.SHUT_RDWR)
