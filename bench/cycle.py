"""Poll-cycle benchmark: monitor's cycles against a naive loop and the parse floor, one run.

    python -m bench.cycle [--feeds 1000] [--entries 50] [--latency 0.05] [--json FILE]
    python -m bench.cycle --memory [--cycles 500] [--feeds 100]

A feed server (bench.server, its own process) serves generated ~80 KB feeds with injected
latency. Measured in one run, on a fresh SQLite database:
- cold: every feed new;  warm 304: validators on, nothing changed;
- unchanged: the server ignores validators but the bodies are the same;
- changed: 10 % of the feeds gained entries (validators on);
- baselines: a naive sequential loop (httpx GET then feedparser, one feed at a time; run over a
  sample of the feeds and scaled up, as it is slow by design) and the parse floor (feedparser
  over the same bytes in a pool of one process per core, no network, no database), with
  feedparser's default options and with the lean options monitor uses;
- peak RSS of monitor's process tree (the process and its parser workers).
`--memory` runs N cycles of 100 feeds (10 % changed each time) and reports RSS growth.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import feedparser
import httpx
import yaml

from bench.memory import TreeMemory
from monitor.config import Config, parse_config
from monitor.pipeline import Runtime

ROOT = Path(__file__).resolve().parent.parent
NAIVE_SAMPLE = 200


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_server(feeds: int, entries: int, latency: float) -> tuple[subprocess.Popen[bytes], str]:
    """The benchmark feed server in its own process, and its base URL once it answers."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "bench.server", "--port", str(port),
                               "--feeds", str(feeds), "--entries", str(entries), "--latency",
                               str(latency)], cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.post(f"{base}/control", timeout=1)
            return server, base
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the benchmark feed server did not start")


def control(base: str, etag: bool = True, change: float = 0.0) -> None:
    """Switch validators and change a share of the feeds."""
    httpx.post(f"{base}/control", params={"etag": int(etag), "change": change}, timeout=60)


def bench_config(base: str, feeds: int, folder: Path, concurrency: int = 0) -> Config:
    """The repo's config (its watchlists) over the benchmark feeds and a fresh database."""
    data = yaml.safe_load((ROOT / "config.yaml").read_text("utf-8"))
    if concurrency:
        data["poll"]["concurrency"] = concurrency
    port = base.rsplit(":", 1)[1]
    data.update(database=f"sqlite:///{folder / 'bench.db'}", notify=[],
                feeds=[{"url": f"http://127.0.0.{1 + i % 20}:{port}/feed/{i}.xml",
                        "name": f"bench {i}"} for i in range(feeds)])
    return parse_config(yaml.safe_dump(data, allow_unicode=True), folder / "config.yaml")


async def timed_cycle(rt: Runtime) -> float:
    """Seconds for one cycle: every feed polled, health checked, then the outbox."""
    started = time.perf_counter()
    await rt.run_cycle()
    return time.perf_counter() - started


def naive_loop(urls: list[str]) -> float:
    """Seconds for a sequential fetch-and-parse loop over `urls`."""
    started = time.perf_counter()
    with httpx.Client(timeout=30) as client:
        for url in urls:
            feedparser.parse(io.BytesIO(client.get(url).content))
    return time.perf_counter() - started


def _parse_default(body: bytes) -> int:
    return len(feedparser.parse(io.BytesIO(body)).entries)


def _parse_lean(body: bytes) -> int:
    return len(feedparser.parse(io.BytesIO(body), sanitize_html=False,
                                resolve_relative_uris=False).entries)


def parse_floor(bodies: list[bytes], lean: bool) -> float:
    """Seconds for feedparser alone over `bodies`, one process per core; `lean` with the
    options monitor uses (no HTML sanitising or URI resolving), else feedparser's defaults."""
    parse = _parse_lean if lean else _parse_default
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(parse, bodies[:8]))  # start the workers outside the timing
        started = time.perf_counter()
        list(pool.map(parse, bodies, chunksize=8))
        return time.perf_counter() - started


async def measure_cycles(config: Config) -> tuple[dict[str, float], dict[int, int]]:
    """The four monitor cycles and the peak RSS (kB) of each process of the tree."""
    base = config.feeds[0].url.rsplit("/feed/", 1)[0]  # 127.0.0.1: feed 0's host
    rt = Runtime.from_config(config)
    results = {}
    with TreeMemory(os.getpid()) as memory:
        results["cold"] = await timed_cycle(rt)
        results["warm_304"] = await timed_cycle(rt)
        control(base, etag=False)
        results["unchanged_no_validators"] = await timed_cycle(rt)
        control(base, etag=True, change=0.1)
        results["changed_10pct"] = await timed_cycle(rt)
    await rt.close()
    return results, memory.peaks


def run_benchmark(feeds: int, entries: int, latency: float,
                  concurrency: int = 0) -> dict[str, Any]:
    """Every figure of one benchmark run."""
    server, base = start_server(feeds, entries, latency)
    try:
        with tempfile.TemporaryDirectory() as folder:
            config = bench_config(base, feeds, Path(folder), concurrency)
            cycles, peaks = asyncio.run(measure_cycles(config))
        control(base, etag=False)
        sample = [f.url for f in config.feeds[:min(feeds, NAIVE_SAMPLE)]]
        naive = naive_loop(sample) * feeds / len(sample)
        with httpx.Client() as client:
            bodies = [client.get(f.url).content for f in config.feeds]
        floor = parse_floor(bodies, lean=False)
        lean_floor = parse_floor(bodies, lean=True)
    finally:
        server.kill()
    return {"feeds": feeds, "entries": entries, "latency_s": latency, "cycles_s": cycles,
            "naive_loop_s": naive, "parse_floor_s": floor, "lean_parse_floor_s": lean_floor,
            "peak_rss_mb": {"process": peaks.get(os.getpid(), 0) / 1024,
                            "tree": sum(peaks.values()) / 1024},
            "bytes_per_feed": sum(map(len, bodies)) // len(bodies)}


def report(figures: dict[str, Any]) -> None:
    """Print the figures and their ratios to the baselines and to the cold cycle."""
    cycles, floor, naive = figures["cycles_s"], figures["parse_floor_s"], figures["naive_loop_s"]
    lean, cold = figures["lean_parse_floor_s"], cycles["cold"]
    print(f"{figures['feeds']} feeds of ~{figures['bytes_per_feed'] // 1024} KB, "
          f"{figures['entries']} entries, {figures['latency_s'] * 1000:.0f} ms latency, "
          f"{os.cpu_count()} cores")
    print(f"{'baseline: naive sequential loop':36} {naive:8.2f} s")
    print(f"{'baseline: parse floor (process pool)':36} {floor:8.2f} s   (feedparser defaults)")
    print(f"{'baseline: lean parse floor':36} {lean:8.2f} s   (monitor's feedparser options)")
    for name, seconds in cycles.items():
        print(f"{'monitor ' + name:36} {seconds:8.2f} s   {seconds / floor:5.2f}x floor   "
              f"{seconds / lean:5.2f}x lean floor   {naive / seconds:6.1f}x faster than naive"
              f"   {seconds / cold:6.1%} of cold")
    rss = figures["peak_rss_mb"]
    print(f"peak RSS: {rss['process']:.0f} MB (process), {rss['tree']:.0f} MB (with workers)")


def memory_growth(cycles: int, feeds: int, entries: int) -> dict[str, Any]:
    """RSS of the process tree after cycle 10 and after the last, 10 % of feeds changed each."""
    server, base = start_server(feeds, entries, 0.0)
    try:
        with tempfile.TemporaryDirectory() as folder:
            config = bench_config(base, feeds, Path(folder))

            async def run() -> list[int]:
                rt = Runtime.from_config(config)
                tree, samples = TreeMemory(os.getpid()), []
                for number in range(cycles):
                    control(base, change=0.1)
                    await timed_cycle(rt)
                    if number + 1 in (10, cycles) or (number + 1) % 100 == 0:
                        samples.append(tree.now_kb())
                        print(f"cycle {number + 1}: {samples[-1] / 1024:.0f} MB", flush=True)
                await rt.close()
                return samples

            samples = asyncio.run(run())
    finally:
        server.kill()
    growth = samples[-1] / samples[0] - 1
    print(f"RSS growth from cycle 10 to {cycles}: {growth:+.1%}")
    return {"cycles": cycles, "feeds": feeds, "rss_kb": samples, "growth": growth}


def main() -> None:
    """Command line of the cycle benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--entries", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--memory", action="store_true", help="RSS growth over many cycles")
    parser.add_argument("--cycles", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=0,
                        help="override poll.concurrency of config.yaml")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if args.memory:
        figures = memory_growth(args.cycles, args.feeds if args.feeds != 1000 else 100,
                                args.entries)
    else:
        figures = run_benchmark(args.feeds, args.entries, args.latency, args.concurrency)
        report(figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
