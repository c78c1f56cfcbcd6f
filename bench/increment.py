"""Reading only what is new: the parse time of a changed feed read whole against its new items
read alone (`monitor.sources.increment`), on one core, in the same run.

    python -m bench.increment [--feeds 200] [--new 5]

Each generated feed holds 50 items of ~1.5 KB (HTML descriptions in several languages); its
changed version has `--new` items more at the top and the oldest dropped, every other item
byte for byte the same, as a real feed's next version is.
"""

from __future__ import annotations

import argparse
import time

from bench.feeds import MATCHING, SENTENCES
from monitor.sources.increment import split_items
from monitor.sources.parser import parse_feed

ITEMS = 50


def _item(feed: int, number: int) -> str:
    words = [SENTENCES[(feed + number + i) % len(SENTENCES)] for i in range(8)]
    if number % 25 == 0:
        words[0] = MATCHING[number % len(MATCHING)]
    html = "".join(f'&lt;p&gt;{w} &lt;a href="https://bench.example/t/{i}"&gt;more&lt;/a&gt;'
                   f"&lt;/p&gt;" for i, w in enumerate(words))
    return (f"<item><title>{words[0][:90]} ({feed}-{number})</title>"
            f"<link>https://bench.example/{feed}/{number}</link><guid>bench-{feed}-{number}"
            f"</guid><pubDate>Mon, 02 Jun 2025 10:00:00 +0000</pubDate>"
            f"<description>{html}</description></item>")


def _document(feed: int, newest: int) -> bytes:
    items = "".join(_item(feed, n) for n in range(newest, newest - ITEMS, -1))
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Bench '
            f"{feed}</title><link>https://bench.example/{feed}</link>{items}</channel></rss>"
            ).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--new", type=int, default=5)
    args = parser.parse_args()
    pairs = [(_document(f, 100), _document(f, 100 + args.new)) for f in range(args.feeds)]
    started = time.perf_counter()
    for _, changed in pairs:
        parse_feed(changed, "https://bench.example/f.xml")
    whole = time.perf_counter() - started
    known = []  # the daemon keeps these from the previous poll
    for before, _ in pairs:
        last = split_items(before)
        assert last is not None
        known.append(set(last.fingerprints))
    started = time.perf_counter()
    read = 0
    for (_, changed), seen in zip(pairs, known, strict=True):
        split = split_items(changed)
        assert split is not None
        smaller, _ = split.without(seen)
        read += len(parse_feed(smaller, "https://bench.example/f.xml").entries)
    alone = time.perf_counter() - started
    size = sum(len(c) for _, c in pairs) / len(pairs) / 1024
    print(f"{args.feeds} changed feeds of {ITEMS} items (~{size:.0f} KB), {args.new} new each")
    print(f"read whole:           {whole:.2f} s ({whole / args.feeds * 1000:.1f} ms a feed)")
    print(f"new items read alone: {alone:.2f} s ({alone / args.feeds * 1000:.1f} ms a feed, "
          f"cutting and fingerprints included; {read} entries)")
    print(f"ratio: new items alone take {alone / whole:.1%} of the whole read "
          f"({whole / alone:.1f}x faster)")


if __name__ == "__main__":
    main()
