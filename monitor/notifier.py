"""Notifying: alert text, routing by tags, and sending through Apprise with per-target outcomes.

Targets are named in logs and in the database by a label and a hash of their URL, never by the
URL itself: Apprise URLs carry tokens. With no `notify` entry configured, alerts go to the
`console://` target registered here, so they take the same path as any chat or email target.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import apprise
from apprise.decorators import notify as apprise_plugin

from monitor.config import Config, NotifyConfig
from monitor.models import Entry, Match

CONSOLE_URL = "console://"
_HOSTLIKE = re.compile(r"^([a-z0-9-]+\.)+[a-z]{2,}$|^\d{1,3}(\.\d{1,3}){3}$|^localhost$", re.I)
_PASSWORD_MIN = 3


@apprise_plugin(on="console", name="Console")  # type: ignore[untyped-decorator,no-untyped-call]
def _print_alert(body: str, title: str, notify_type: str, *args: Any, **kwargs: Any) -> bool:
    """Apprise target that prints alerts to standard output."""
    sys.stdout.write(f"\n=== {title} ===\n{body}\n" if title else f"\n{body}\n")
    sys.stdout.flush()
    return True


@dataclass(frozen=True)
class Target:
    """A configured Apprise URL with a safe label and a stable id."""

    url: str
    label: str
    id: str
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class SendOutcome:
    """What one target did with one message."""

    ok: bool
    error: str | None = None


def target_id(url: str) -> str:
    """A stable id for a target URL that reveals nothing of it."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def targets(config: Config) -> list[Target]:
    """The configured targets, or the console when none is configured."""
    entries = config.notify or (NotifyConfig(url=CONSOLE_URL, name="console"),)
    return [Target(url=n.url, label=n.name or f"{n.url.split('://')[0]} target {i + 1}",
                   id=target_id(n.url), tags=n.tags) for i, n in enumerate(entries)]


def route(all_targets: Sequence[Target], tags: Iterable[str]) -> list[Target]:
    """Targets that receive an alert carrying `tags`.

    An untagged target receives everything; an alert without tags goes everywhere; otherwise a
    target receives the alert when they share a tag.
    """
    wanted = set(tags)
    return [t for t in all_targets if not t.tags or not wanted or wanted & set(t.tags)]


def secrets_of(url: str) -> list[str]:
    """Parts of an Apprise URL that may be tokens or passwords (for log redaction).

    The password of `user:password@` always counts; other parts count when they look like
    tokens (8+ characters with a digit, or 16+), so host names and plain paths stay readable.
    """
    rest = url.split("://", 1)[-1]
    found = set()
    authority = rest.split("/", 1)[0]
    if "@" in authority:
        password = authority.rsplit("@", 1)[0].partition(":")[2]
        if len(password) >= _PASSWORD_MIN:
            found.add(password)
    for piece in re.split(r"[/@?&=:,;#]", rest):
        has_digit = any(c.isdigit() for c in piece)
        looks_like_token = len(piece) >= 16 or (len(piece) >= 8 and has_digit)
        if looks_like_token and not _HOSTLIKE.match(piece):
            found.add(piece)
    return sorted(found, key=len, reverse=True)


def render_alert(entry: Entry, matches: Sequence[Match]) -> tuple[str, str]:
    """Title and markdown body of the alert for one entry."""
    names = ", ".join(m.watchlist for m in matches)
    title = f"[{names}] {entry.title or '(untitled)'}"
    when = entry.published.strftime("%Y-%m-%d %H:%M UTC") if entry.published else "no date"
    lines = [f"**{entry.title or '(untitled)'}**", f"{entry.feed_name} · {when}"]
    if entry.language:
        lines[-1] += f" · {entry.language}"
    for match in matches:
        found = "; ".join(f"{entity}: {', '.join(aliases)}"
                          for entity, aliases in match.terms_by_entity().items())
        fields = sorted({hit.field for hit in match.hits})
        lines.append(f"Matched {match.watchlist} — {found} (in {', '.join(fields)})")
    lines.append("")
    lines.append("> " + matches[0].highlighted_snippet().replace("\n", " "))
    if entry.link:
        lines += ["", entry.link]
    return title, "\n".join(lines)


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


async def send(target: Target, title: str, body: str, timeout: float) -> SendOutcome:
    """Send one message to one target; the outcome is read from Apprise's per-target result."""
    sender = apprise.Apprise()
    if not sender.add(target.url):
        return SendOutcome(False, "Apprise does not understand this URL")
    result = await sender.async_notify(body=body, title=title, timeout=timeout,
                                       body_format=apprise.NotifyFormat.MARKDOWN)
    if bool(result):
        return SendOutcome(True)
    return SendOutcome(False, _failure(result))
