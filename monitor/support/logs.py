"""Logging: one line per event, fitted to a terminal or to journald, with secrets masked.

Apprise URLs carry tokens, and Apprise itself logs some of them (a Telegram bot token at DEBUG):
every record passes `LineFilter`, which masks each registered secret wherever it appears. Log
lines quote text from strangers (feed titles, server errors): the same filter escapes line
breaks and other control characters, so no feed can forge a line or drive the terminal.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import UTC, datetime

from monitor.support.secrets import redact

# C0/C1 controls (line breaks, ESC, CSI), Unicode line and paragraph separators, and bidi
# overrides, which could reorder what a reader sees.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def counted(number: int, noun: str, plural: str | None = None) -> str:
    """"1 alert", "2 alerts", "0 alerts"."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def printable(text: str) -> str:
    """`text` as one inert line: controls and line breaks shown as escapes (`\\n`, `\\x1b`)."""
    return _UNPRINTABLE.sub(lambda found: found.group().encode("unicode_escape").decode(), text)


class LineFilter(logging.Filter):
    """Makes every record one line with secrets masked (its traceback, if any, follows)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = printable(redact(message))
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


# journald reads a "<N>" prefix on each stderr line as the syslog priority of that line.
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    """Lines for journald: its own timestamp, our level as a syslog priority prefix."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITY.get(record.levelno, 6)
        return f"<{priority}>{record.name}: {record.getMessage()}"


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name,
            "message": record.getMessage()}, ensure_ascii=False)


def setup_logging(level: str = "INFO", style: str = "text") -> None:
    """Log to stderr: `json`, or text; under systemd (JOURNAL_STREAM set) text becomes journald
    lines (no duplicate timestamp, levels as journald priorities)."""
    handler = logging.StreamHandler(sys.stderr)
    if style == "json":
        handler.setFormatter(JsonFormatter())
    elif os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.addFilter(LineFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx and APScheduler say at INFO what we already report once per event.
    for noisy in ("httpx", "httpcore", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # Apprise's warnings must still be made: its per-service results capture them, and they
    # are the reason our own delivery line gives. They reach our log only at DEBUG.
    apprise = logging.getLogger("apprise")
    debug = root.level <= logging.DEBUG
    apprise.setLevel(logging.DEBUG if debug else logging.WARNING)
    apprise.propagate = debug
    if not any(isinstance(h, logging.NullHandler) for h in apprise.handlers):
        apprise.addHandler(logging.NullHandler())  # not Python's last-resort stderr handler
