"""Soak run: the daemon for N minutes against loopback feeds and a chat target, with faults.

    python -m bench.soak [--minutes 5] [--feeds 100] [--every 30] [--json FILE]

A feed server (threads in this process) gives each of `--feeds` feeds one new item every
`--every` seconds: every third item is a story about Russia and North Korea (some carried by two
feeds under outlet suffixes, which must alert once), the others are unrelated headlines that
must not alert. A `json://` sink records what arrives. `monitor run` (a subprocess, the repo's
watchlists, a fresh SQLite database, feeds polled every 10 s) meets, at fixed shares of the run:
the target down (503), then slow (6 s per answer, under a 10 s delivery timeout), five feeds
failing in five ways (500, garbage, a hang, a redirect loop, a 50 MB body), two kill -9s each
followed by a restart, a reload with a broken config and one with the good config back.

At the end new items stop, the daemon gets a minute to drain its outbox, and the run prints
lost stories (published, matching, never alerted), duplicates (a story alerted more than once),
false alerts (an unrelated headline alerted), and the daemon's RSS over time (its process tree:
daemon and parser workers). Loopback only; bounded by `--minutes` plus the drain.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from bench.memory import descendants, status_kb

ROOT = Path(__file__).resolve().parent.parent
STORY = re.compile(r"accord No\. (\d+-\d+)")
FAULTS = ("500", "garbage", "hang", "loop", "huge")


class World:
    """The feeds' items as they are published, and what the sink received."""

    def __init__(self, feeds: int, every: float):
        self.feeds, self.every, self.start = feeds, every, time.monotonic()
        self.stopped_at: float | None = None
        self.broken: set[int] = set()  # feeds currently failing (index → its fault)
        self.target_mode = "ok"  # ok, down, slow
        self.received: list[str] = []
        self.lock = threading.Lock()

    def items(self, feed: int) -> list[tuple[str, str]]:
        """(item id, title) of the last 30 items this feed has published, newest first."""
        now = (self.stopped_at or time.monotonic()) - self.start
        count = int(now / self.every) + 1
        return [(f"{n}-{feed}", self.title(n, feed))
                for n in reversed(range(max(0, count - 30), count))]

    @staticmethod
    def title(n: int, feed: int) -> str:
        """Item `n` of `feed`: every third a story, every sixth one that the feed's pair
        (feeds 2k and 2k+1) carries too, under the same headline; the rest unrelated."""
        if n % 3:
            return f"Weather and markets roundup No. {n}-{feed}: rain expected in Paris"
        story = f"{n}-{feed - feed % 2}" if n % 6 == 0 else f"{n}-{feed}"
        return f"Russia and North Korea sign fisheries accord No. {story}"

    def expected(self) -> set[str]:
        """Stories published by feeds that never failed, up to when new items stopped."""
        return {m.group(1) for f in range(len(FAULTS), self.feeds)
                for _, title in self.items(f) if (m := STORY.search(title))}


def _feed_body(world: World, feed: int) -> bytes:
    items = "".join(f"<item><title>{title}</title><link>https://soak.example/{item}</link>"
                    f"<guid>soak-{item}</guid></item>" for item, title in world.items(feed))
    return (f'<rss version="2.0"><channel><title>Outlet {feed}</title>{items}</channel></rss>'
            ).encode()


def _handler(world: World) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            feed = int(self.path.strip("/").removesuffix(".xml"))
            fault = FAULTS[feed] if feed in world.broken else None
            body = b"\x00garbage" if fault == "garbage" else _feed_body(world, feed)
            if fault == "hang":
                time.sleep(40)
            if fault == "loop":
                self.send_response(302)
                self.send_header("Location", self.path)
                self.end_headers()
                return
            self.send_response(500 if fault == "500" else 200)
            size = 50 * 1024**2 if fault == "huge" else len(body)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            with contextlib.suppress(OSError):  # the client stopped reading
                self.wfile.write(body if fault != "huge" else b"<" * size)

        def do_POST(self) -> None:
            payload = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if world.target_mode == "down":
                self.send_response(503)
                self.end_headers()
                return
            if world.target_mode == "slow":
                time.sleep(6)
            with world.lock:
                world.received.append(str(json.loads(payload).get("message", "")))
            self.send_response(200)
            self.end_headers()
    return Handler


def _config(folder: Path, base: str, feeds: int, broken: bool = False) -> str:
    data = yaml.safe_load((ROOT / "config.yaml").read_text("utf-8"))
    data.update(database=f"sqlite:///{folder / 'soak.db'}",
                feeds=[{"url": f"{base}/{i}.xml", "name": f"Outlet {i}", "interval": "10s"}
                       for i in range(feeds)],
                notify=[{"url": f"json://{base.removeprefix('http://')}/sink"}])
    data["delivery"] = {**data.get("delivery", {}), "timeout": "10s", "interval": "5s",
                        "retry_base": "10s", "retry_max": "30s"}
    data["poll"] = {**data.get("poll", {}), "timeout": "15s"}
    if broken:
        data["feeds"][0]["interval"] = "soon"
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def _rss_mb(pid: int) -> float:
    return sum(status_kb(p, "VmRSS") for p in [pid, *descendants(pid)]) / 1024


class Soak:
    """One soak run: the world, the feed and target server, the daemon and its config."""

    def __init__(self, feeds: int, every: float):
        self.world, self.feeds = World(feeds, every), feeds
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.world))
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.folder = Path(tempfile.mkdtemp(prefix="monitor-soak-"))
        self.config = self.folder / "config.yaml"
        self.config.write_text(_config(self.folder, self.base, feeds), "utf-8")
        self.log = (self.folder / "daemon.log").open("ab")
        self.daemon = self.start()

    def start(self) -> subprocess.Popen[bytes]:
        """`monitor run` on the soak's config."""
        return subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(self.config),
                                 "run"], stdout=subprocess.DEVNULL, stderr=self.log, cwd=ROOT)

    def act(self, event: str) -> None:
        """Apply one fault of the plan."""
        if event.startswith("target "):
            self.world.target_mode = event.removeprefix("target ")
        elif event == "feeds break":
            self.world.broken = set(range(len(FAULTS)))
        elif event == "feeds heal":
            self.world.broken = set()
        elif event == "kill -9":
            self.daemon.send_signal(signal.SIGKILL)
            self.daemon.wait()
            self.daemon = self.start()
        elif event in ("broken reload", "good reload"):
            self.config.write_text(_config(self.folder, self.base, self.feeds,
                                           broken=event == "broken reload"), "utf-8")
            os.kill(self.daemon.pid, signal.SIGHUP)

    def run(self, minutes: float) -> dict[str, Any]:
        """The faults at their shares of the run, then the drain; the counts and RSS."""
        rss, events, length = [], [], minutes * 60
        plan = [(0.10, "target down"), (0.20, "target slow"), (0.30, "target ok"),
                (0.35, "feeds break"), (0.45, "kill -9"), (0.55, "broken reload"),
                (0.60, "good reload"), (0.65, "feeds heal"), (0.75, "kill -9")]
        begun = time.monotonic()
        while (elapsed := time.monotonic() - begun) < length:
            while plan and elapsed >= plan[0][0] * length:
                event = plan.pop(0)[1]
                events.append(f"{elapsed:.0f}s {event}")
                self.act(event)
            rss.append((round(elapsed), round(_rss_mb(self.daemon.pid), 1)))
            time.sleep(5)
        world = self.world
        world.stopped_at = time.monotonic()
        expected, drain = world.expected(), time.monotonic() + 60
        while time.monotonic() < drain and not expected <= _alerted(world):
            time.sleep(2)
        self.daemon.send_signal(signal.SIGTERM)
        self.daemon.wait(timeout=60)
        self.server.shutdown()
        counts = Counter(m.group(1) for text in world.received if (m := STORY.search(text)))
        return {"minutes": minutes, "feeds": self.feeds, "alerts": len(world.received),
                "expected_stories": len(expected), "lost": len(expected - set(counts)),
                "duplicates": sum(1 for n in counts.values() if n > 1),
                "false_alerts": sum(1 for text in world.received if "Weather" in text),
                "rss_mb": rss, "events": events, "log": str(self.folder / "daemon.log")}


def _alerted(world: World) -> set[str]:
    with world.lock:
        return {m.group(1) for text in world.received if (m := STORY.search(text))}


def main() -> None:
    """Entry point of `python -m bench.soak`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--feeds", type=int, default=100)
    parser.add_argument("--every", type=float, default=30.0, help="seconds between new items")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    result = Soak(args.feeds, args.every).run(args.minutes)
    for line in result["events"]:
        print(f"event   {line}")
    print("rss     " + ", ".join(f"{t}s {mb} MB" for t, mb in result["rss_mb"][::6]))
    print(f"result  {result['alerts']} alerts; {result['expected_stories']} stories expected: "
          f"{result['lost']} lost, {result['duplicates']} duplicated, "
          f"{result['false_alerts']} false alerts  (daemon log: {result['log']})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1), "utf-8")


if __name__ == "__main__":
    main()
