"""The HTTP endpoint under load: slow and idle connections cannot hold up /healthz, and what
they cost the daemon (threads, open files, time) is bounded."""

from __future__ import annotations

import contextlib
import select
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.daemons import RunningDaemon, http_daemon
from tests.support.project import render_feed
from tests.support.servers import FeedServer, Sink

SLOW_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "  # never finished


@pytest.fixture
def daemon(tmp_path: Path, feed_server: FeedServer, sink: Sink) -> Iterator[RunningDaemon]:
    """A daemon serving HTTP, after its first alert."""
    feeds = [{"url": feed_server.serve("/ru.xml", render_feed("russian.xml")), "name": "RU"}]
    with http_daemon(tmp_path, feeds, sink) as running:
        yield running


def _connect(base: str, count: int, stack: contextlib.ExitStack,
             send: bytes = b"") -> list[socket.socket]:
    """`count` connections to the endpoint, each having sent `send`; closed with `stack`."""
    host, port = base.removeprefix("http://").split(":")
    connections = []
    for _ in range(count):
        connection = stack.enter_context(socket.create_connection((host, int(port)), timeout=10))
        connection.sendall(send)
        connections.append(connection)
    return connections


def _threads_and_files(pid: int) -> tuple[int, int]:
    """How many threads and open file descriptors process `pid` has."""
    status = Path(f"/proc/{pid}/status").read_text()
    threads = int(next(line for line in status.splitlines() if line.startswith("Threads:"))
                  .split()[1])
    return threads, len(list(Path(f"/proc/{pid}/fd").iterdir()))


def test_healthz_answers_within_a_second_while_50_slow_clients_hold_connections(
        daemon: RunningDaemon) -> None:
    """With 50 clients each holding a connection in the middle of its request, /healthz and
    /metrics still answer, each request under a 1-second client timeout."""
    with contextlib.ExitStack() as stack:
        _connect(daemon.base, 50, stack, send=SLOW_HEAD)
        health = httpx.get(f"{daemon.base}/healthz", timeout=1.0)
        assert (health.status_code, health.text) == (200, "ok\n")
        assert httpx.get(f"{daemon.base}/metrics", timeout=1.0).status_code == 200


def test_idle_connections_beyond_the_bound_neither_starve_healthz_nor_grow_threads(
        daemon: RunningDaemon) -> None:
    """300 connections that send nothing (over four times the bound): /healthz still answers,
    and the daemon's threads and open files grow by at most the bound, not by 300."""
    from monitor.surfaces import httpserver

    threads, files = _threads_and_files(daemon.pid)
    with contextlib.ExitStack() as stack:
        _connect(daemon.base, 300, stack)
        health = httpx.get(f"{daemon.base}/healthz", timeout=10)
        assert (health.status_code, health.text) == (200, "ok\n")
        threads_now, files_now = _threads_and_files(daemon.pid)
    slack = 8  # the scheduler's and the database's own threads and files come and go
    assert threads_now - threads <= httpserver.MAX_CONNECTIONS + slack
    assert files_now - files <= httpserver.MAX_CONNECTIONS + slack


def test_a_client_trickling_its_request_is_answered_408_and_cut_off(
        daemon: RunningDaemon) -> None:
    """A client sending its request one byte every 0.2 s does not keep its connection: once
    the head's deadline passes, it gets 408 and the server closes the connection."""
    with contextlib.ExitStack() as stack:
        [connection] = _connect(daemon.base, 1, stack)
        answered = False
        for byte in SLOW_HEAD + b"a" * 100:  # 20 s of trickling at most
            connection.sendall(bytes([byte]))
            readable, _, _ = select.select([connection], [], [], 0.2)
            if readable:
                answered = True
                break
        assert answered, "the server waited for a request trickling in for 20 s"
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 408 Request Timeout\r\n")
