"""Logging: one line per event, fitted to a terminal or to journald, with secrets masked.

Apprise URLs carry tokens, and Apprise itself logs some of them (a Telegram bot token at DEBUG):
every record passes `SecretFilter`, which masks each registered secret wherever it appears.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable

MASK = "***"
_secrets: set[str] = set()


def register_secrets(secrets: Iterable[str]) -> None:
    """Add strings that must never appear in a log line."""
    _secrets.update(s for s in secrets if s)


def redact(text: str) -> str:
    """`text` with every registered secret masked."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class SecretFilter(logging.Filter):
    """Masks registered secrets in the final message of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            message = record.getMessage()
            cleaned = redact(message)
            if cleaned != message:
                record.msg, record.args = cleaned, None
        return True


def setup_logging(level: str = "INFO") -> None:
    """Log to stderr; under systemd (JOURNAL_STREAM set) without our own timestamp."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.addFilter(SecretFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx and APScheduler say at INFO what we already report once per event; Apprise's
    # failure messages are already part of our own delivery line.
    for noisy in ("httpx", "httpcore", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    logging.getLogger("apprise").setLevel(
        logging.DEBUG if root.level <= logging.DEBUG else logging.CRITICAL)
