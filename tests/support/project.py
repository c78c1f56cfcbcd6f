"""The project as tests see it: paths, golden feeds, configs written for a test, one cycle
run by hand, and waiting for an observable state."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
TESTS = ROOT / "tests"
FEEDS = TESTS / "feeds"
DATA = TESTS / "data"
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


def wait_for(condition: Callable[[], bool], seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def corpus_as_feed(rows: list[dict[str, Any]]) -> bytes:
    """Labelled corpus items as one RSS document, each item's link carrying its id."""
    from xml.sax.saxutils import escape

    items = "".join(
        f"<item><title>{escape(r['title'])}</title><link>https://corpus.example/{r['id']}</link>"
        f"<guid>{r['id']}</guid><description>{escape(r['summary'])}</description></item>"
        for r in rows)
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>corpus'
            f"</title>{items}</channel></rss>").encode()
