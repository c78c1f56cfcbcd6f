"""Notifying: targets, routing by tags, and sending through Apprise with per-target outcomes.

Targets are named in logs and in the database by a label and a hash of their URL, never by the
URL itself: Apprise URLs carry tokens. With no `notify` entry configured, alerts go to the
`console://` target registered here, so they take the same path as any chat or email target.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

from monitor.config import Config, NotifyConfig
from monitor.delivery.message import Style, Template, fit, html_lines
from monitor.delivery.schedule import Policy
from monitor.models import Priority

CONSOLE_URL = "console://"


def url_problem(url: str) -> str | None:
    """Why Apprise cannot use this target URL (None when it can): Apprise's own reason where
    it gives one without quoting the URL, and the closest scheme it knows to an unknown one."""
    apprise = _apprise()
    with apprise.LogCapture(level=logging.WARNING) as said:
        if apprise.Apprise.instantiate(url) is not None:
            return None
    scheme = url.partition("://")[0].lower()
    known = {p for entry in apprise.Apprise().details()["schemas"]
             for p in (*(entry.get("protocols") or ()), *(entry.get("secure_protocols") or ()))}
    if scheme not in known:
        close = difflib.get_close_matches(scheme, sorted(known), n=1)
        return f"Apprise knows no {scheme!r} service" + (f" (did you mean {close[0]}://?)"
                                                          if close else "")
    # Lines quoting the URL (masked by Apprise, but only in part) are left out.
    reasons = [line.rpartition(" - ")[2] for line in said.getvalue().splitlines()
               if "://" not in line]
    return f"Apprise cannot use this {scheme}:// URL: " + (
        reasons[0] if reasons else "a required part is missing or malformed (see the Apprise "
                                   "wiki for its form)")


def _print_alert(body: str, title: str, notify_type: str, *args: Any, **kwargs: Any) -> bool:
    """Apprise target that prints alerts to standard output."""
    sys.stdout.write(f"\n=== {title} ===\n{body}\n" if title else f"\n{body}\n")
    sys.stdout.flush()
    return True


@functools.cache
def _apprise() -> ModuleType:
    """Apprise, imported on first use (it is 0.4 s of start-up that a run with nothing to
    send does not need), with our console:// target registered."""
    import apprise  # noqa: PLC0415
    from apprise.decorators import notify  # noqa: PLC0415

    notify(on="console", name="Console")(_print_alert)  # type: ignore[no-untyped-call]
    return apprise


@dataclass(frozen=True)
class Target:
    """A configured Apprise URL with a safe label, a stable id, its pace and its style."""

    url: str
    label: str
    id: str
    tags: tuple[str, ...] = ()
    policy: Policy = field(default_factory=Policy)
    style: Style = field(default_factory=Style)
    max_length: int | None = None  # the configured cap on a message body, if any
    updates: bool = False
    # After an alert, one note this much later naming the outlets that reported it since.
    sources_after: timedelta | None = None
    timeout: float | None = None  # seconds for one send; None: delivery.timeout


@dataclass(frozen=True)
class SendOutcome:
    """What one target did with one message."""

    ok: bool
    error: str | None = None


def target_id(url: str) -> str:
    """A stable id for a target URL that reveals nothing of it."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


@functools.cache
def limits(url: str) -> tuple[int, int]:
    """(title, body) limits of the Apprise service behind `url` (title 0: it has no title)."""
    plugin = _apprise().Apprise.instantiate(url, suppress_exceptions=True)
    if plugin is None:
        return 250, 32768
    return int(getattr(plugin, "title_maxlen", 250)), int(getattr(plugin, "body_maxlen", 32768))


# Chat services whose Apprise plugin writes the title into the message text, where it is read
# as markup, although some report a title limit (Discord puts it in `content`).
_TITLE_IN_BODY = frozenset(("tgram", "discord", "slack", "matrix", "matrixs", "mmost",
                            "mmosts", "rocket", "rockets", "zulip", "msteams", "ntfy", "ntfys",
                            "signal", "signals", "whatsapp", "revolt", "guilded"))


def title_in_body(url: str) -> bool:
    """Whether the service behind `url` shows the title inside the message, as markup: its
    title must be escaped like the body."""
    scheme = url.partition("://")[0].lower()
    return scheme in _TITLE_IN_BODY or limits(url)[0] == 0


def _target(number: int, notify: NotifyConfig) -> Target:
    zone = ZoneInfo(notify.timezone)
    policy = Policy(mode=notify.mode, digest_every=timedelta(seconds=notify.digest_every),
                    digest_at=notify.digest_at, zone=zone, quiet=notify.quiet_hours,
                    urgent=None if notify.urgent == "none" else Priority(notify.urgent),
                    digest_limit=notify.digest_limit,
                    rate_limit=(notify.rate_limit[0], timedelta(seconds=notify.rate_limit[1]))
                    if notify.rate_limit else None)
    style = Style(format=notify.message_format, zone=zone,
                  template=Template(notify.template.title, notify.template.body))
    return Target(url=notify.url, label=notify.name or f"{notify.url.split('://')[0]} target "
                  f"{number}", id=target_id(notify.url), tags=notify.tags, policy=policy,
                  style=style, max_length=notify.max_length, updates=notify.updates,
                  sources_after=timedelta(seconds=notify.sources_after)
                  if notify.sources_after else None, timeout=notify.timeout)


def targets(config: Config) -> list[Target]:
    """The configured targets, or the console when none is configured."""
    entries = config.notify or (NotifyConfig(url=CONSOLE_URL, name="console"),)
    return [_target(i + 1, n) for i, n in enumerate(entries)]


def route(all_targets: Sequence[Target], tags: Iterable[str]) -> list[Target]:
    """Targets that receive an alert carrying `tags`.

    An untagged target receives everything; an alert without tags goes everywhere; otherwise a
    target receives the alert when they share a tag.
    """
    wanted = set(tags)
    return [t for t in all_targets if not t.tags or not wanted or wanted & set(t.tags)]


def _failure(result: Any) -> str:
    """The most useful reason in an AppriseResult that did not succeed."""
    status = getattr(getattr(result, "status", None), "name", "FAILURE")
    for service in getattr(result, "results", ()):
        if bool(service):
            continue
        logs = [e for e in service.logs() if getattr(e, "level", "") in ("ERROR", "WARNING")]
        for entry in reversed(logs):
            message = str(getattr(entry, "message", "") or "")
            if message:
                return f"{getattr(service.status, 'name', status)}: {message.splitlines()[0]}"
        return str(getattr(service.status, "name", status))
    return str(status)


async def send(target: Target, title: str, body: str, timeout: float,
               body_format: str = "markdown") -> SendOutcome:
    """Send one message to one target, in parts if it is longer than the channel takes; the
    outcome is read from Apprise's per-target result (a failed part fails the message)."""
    apprise = _apprise()
    sender = apprise.Apprise()
    plugin = apprise.Apprise.instantiate(target.url)
    if plugin is None or not sender.add(plugin):
        return SendOutcome(False, "Apprise does not understand this URL")
    # Apprise's plugins stop waiting for a reply after 4 s of their own, whatever the call's
    # timeout: a target answering in 6 s would receive the message, count as failed and get it
    # again on every retry. Its sockets wait as long as the call may.
    plugin.socket_connect_timeout = plugin.socket_read_timeout = timeout
    title_max, body_max = limits(target.url)
    body_max = min(body_max, target.max_length or body_max)
    formats = {"markdown": apprise.NotifyFormat.MARKDOWN, "html": apprise.NotifyFormat.HTML,
               "text": apprise.NotifyFormat.TEXT}
    for part_title, part_body in fit(title, body, title_max, body_max):
        shown = html_lines(part_body) if body_format == "html" else part_body
        # The sockets' limits decide; the whole call only guards against a hang beyond them.
        result = await sender.async_notify(body=shown, title=part_title, timeout=2 * timeout,
                                           body_format=formats[body_format])
        if not bool(result):
            return SendOutcome(False, _failure(result))
    return SendOutcome(True)
