"""Freshness: how long a story waits between its publication and its alert.

    python -m bench.freshness [--minutes 15] [--feeds 60] [--seed 5] [--json FILE]

Two loopback feed sites publish the same stories on the same schedule, each read by its own
`monitor run` (the repo's config, a fresh SQLite database, a `json://` sink): one with the
default `poll.interval: auto`, one with a fixed 5-minute schedule, side by side in the same run.
The schedules are realistic: ten busy feeds publish every three minutes or so, fifteen every
twenty minutes, the rest a few items a day, each with a history of past items at its own pace
(what a real feed holds on the first poll). Every other item of every other feed is a story
about Russia and North Korea (the watchlist's); the rest are unrelated headlines.

After `--minutes` publishing stops and each daemon gets a short drain. The run prints, per
daemon, the median and 95th-percentile publish→alert latency over the stories published during
the run (a story never alerted counts with the time it has waited, a lower bound, marked `≥`)
and the number of feed requests, then the auto/fixed ratios. Loopback only.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
HISTORY = 30  # items a feed document holds
DRAIN = 90.0  # seconds the daemons get after publishing stops
STORY = re.compile(r"accord No\. (\d+-\d+)")


def _schedules(feeds: int, minutes: float, seed: int) -> list[list[float]]:
    """Each feed's publication times, in seconds from the start (negative: its history)."""
    rng = random.Random(seed)
    schedules = []
    for feed in range(feeds):
        mean = 180.0 if feed < 10 else 1200.0 if feed < 25 else 8 * 3600.0
        times, at = [], minutes * 60
        while at > -mean * HISTORY:
            at -= rng.expovariate(1 / mean)
            times.append(at)
        schedules.append(sorted(times))
    return schedules


class Site:
    """One feed site: serves each feed's items published so far; records requests and the
    alerts its sink received."""

    def __init__(self, schedules: list[list[float]], start: float, wall: datetime):
        self.schedules, self.start, self.wall = schedules, start, wall
        self.stop_at: float | None = None
        self.requests = 0
        self.alerts: dict[str, float] = {}  # story → seconds from start when it arrived
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def now(self) -> float:
        return min(time.monotonic() - self.start, self.stop_at or float("inf"))

    @staticmethod
    def story(feed: int, n: int) -> str | None:
        """Item `n` of `feed` as a watchlist story's id, or None for an unrelated headline."""
        return f"{feed}-{n}" if feed % 2 == 0 and n % 2 == 0 else None

    def body(self, feed: int) -> bytes:
        now = self.now()
        published = [(n, t) for n, t in enumerate(self.schedules[feed]) if t <= now][-HISTORY:]
        items = []
        for n, at in reversed(published):
            story = self.story(feed, n)
            title = (f"Russia and North Korea sign fisheries accord No. {story}" if story
                     else f"Weather and markets roundup No. {feed}-{n}: rain in Paris")
            date = format_datetime(self.wall + timedelta(seconds=at))
            items.append(f"<item><title>{title}</title><link>https://fresh.example/{feed}/{n}"
                         f"</link><guid>fresh-{feed}-{n}</guid><pubDate>{date}</pubDate></item>")
        return (f'<rss version="2.0"><channel><title>Outlet {feed}</title>{"".join(items)}'
                "</channel></rss>").encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                with site.lock:
                    site.requests += 1
                body = site.body(int(self.path.strip("/").removesuffix(".xml")))
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                arrived = time.monotonic() - site.start
                for story in _stories(str(payload.get("title", "")) + " " +
                                      str(payload.get("message", ""))):
                    with site.lock:
                        site.alerts.setdefault(story, arrived)
                self.send_response(200)
                self.end_headers()
        return Handler

    def latencies(self, minutes: float, end: float) -> list[tuple[float, bool]]:
        """(seconds waited, alerted) for each story published during the run."""
        found = []
        for feed, times in enumerate(self.schedules):
            for n, at in enumerate(times):
                story = self.story(feed, n)
                if story and 0 <= at <= minutes * 60:
                    arrived = self.alerts.get(story)
                    found.append((arrived - at, True) if arrived is not None
                                 else (end - at, False))
        return found


def _stories(text: str) -> list[str]:
    return STORY.findall(text)


def _config(folder: Path, site: Site, feeds: int, fixed: bool) -> Path:
    data = yaml.safe_load((ROOT / "config.yaml").read_text("utf-8"))
    data.update(database=f"sqlite:///{folder / 'fresh.db'}",
                feeds=[{"url": f"{site.base}/{i}.xml", "name": f"Outlet {i}"}
                       for i in range(feeds)],
                notify=[{"url": f"json://{site.base.removeprefix('http://')}/sink"}])
    if fixed:
        data["poll"] = {**data["poll"], "interval": "5m"}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    return path


def _summary(latencies: list[tuple[float, bool]], requests: int) -> dict[str, Any]:
    waits = sorted(w for w, _ in latencies)
    censored = {w for w, alerted in latencies if not alerted}
    if not waits:
        return {"stories": 0, "requests": requests}
    p95 = waits[min(len(waits) - 1, int(0.95 * len(waits)))]
    median = statistics.median(waits)
    return {"stories": len(waits), "alerted": len(waits) - len(censored), "median_s": median,
            "p95_s": p95, "p95_lower_bound": p95 in censored, "requests": requests}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=15)
    parser.add_argument("--feeds", type=int, default=60)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    schedules = _schedules(args.feeds, args.minutes, args.seed)
    start, wall = time.monotonic(), datetime.now(UTC)
    sites = {"auto": Site(schedules, start, wall), "fixed 5m": Site(schedules, start, wall)}
    with tempfile.TemporaryDirectory() as temp:
        daemons = {}
        for name, site in sites.items():
            folder = Path(temp, name.replace(" ", "-"))
            folder.mkdir()
            config = _config(folder, site, args.feeds, fixed=name != "auto")
            daemons[name] = subprocess.Popen(
                [sys.executable, "-m", "monitor", "--config", str(config), "run"],
                stdout=subprocess.DEVNULL, stderr=(folder / "daemon.log").open("w"))
        print(f"publishing for {args.minutes:g} min on {args.feeds} feeds per site…", flush=True)
        time.sleep(args.minutes * 60)
        for site in sites.values():
            site.stop_at = args.minutes * 60
        time.sleep(DRAIN)
        end = time.monotonic() - start
        for daemon in daemons.values():
            daemon.send_signal(signal.SIGTERM)
        for daemon in daemons.values():
            daemon.wait(timeout=120)
    figures = {name: _summary(site.latencies(args.minutes, end), site.requests)
               for name, site in sites.items()}
    for name, row in figures.items():
        if not row["stories"]:
            print(f"{name}: no story published during the run (raise --minutes)")
            continue
        bound = "≥" if row["p95_lower_bound"] else ""
        print(f"{name:>9}: {row['alerted']}/{row['stories']} stories alerted, median "
              f"{row['median_s']:.0f} s, p95 {bound}{row['p95_s']:.0f} s, "
              f"{row['requests']} feed requests")
    auto, fixed = figures["auto"], figures["fixed 5m"]
    if auto.get("stories") and fixed.get("stories"):
        print(f"auto / fixed 5m: median ×{auto['median_s'] / fixed['median_s']:.2f}, "
              f"p95 ×{auto['p95_s'] / fixed['p95_s']:.2f}, "
              f"requests ×{auto['requests'] / fixed['requests']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
