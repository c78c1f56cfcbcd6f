"""Fixtures shared by every test: a local feed server, an HTTP sink for Apprise json://, and
an SMTP server (aiosmtpd) with its mailbox. Helpers are in tests/support."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest

from tests.support.servers import FeedServer, Mailbox, Sink


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
