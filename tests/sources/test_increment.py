"""Reading only what is new: a changed document cut into head, items and tail reads, item for
item, exactly as the whole does; every doubtful document is read whole."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from monitor.sources.increment import split_items
from monitor.sources.parser import parse_feed
from tests.support.project import FEEDS, SHARED, write_config
from tests.support.servers import FeedServer, Sink

PEERS = SHARED / "peer-feeds" / "feedparser-tests"
URL = "https://a.example/feed.xml"


def _documents() -> list[Path]:
    golden = [p for p in FEEDS.iterdir() if not p.name.endswith(".json")]
    peers = [p for p in PEERS.rglob("*") if p.is_file() and p.name != "LICENSE"] \
        if PEERS.is_dir() else []
    return golden + peers


def test_the_new_items_alone_read_as_in_the_whole_document() -> None:
    """On every golden feed and every one of feedparser's 2,106 test feeds that is cut into
    items one for one, the document holding only its first item, or only its last, gives
    exactly that entry of the whole document's parse; the others are read whole."""
    documents = _documents()
    assert PEERS.is_dir() or pytest.skip("no peer feeds: ../shared is not beside this clone "
                                         "and MONITOR_TEST_SHARED is not set")
    cut = differ = 0
    for path in documents:
        body = path.read_bytes()
        split = split_items(body)
        if split is None:
            continue
        whole = parse_feed(body, URL, "n").entries
        if len(whole) != len(split.items):
            continue  # the pipeline reads such a feed whole every time
        cut += 1
        prints = split.fingerprints
        for known, expected in ((prints[1:], whole[:1]), (prints[:-1], whole[-1:]),
                                (prints, [])):
            smaller, kept = split.without(set(known))
            got = parse_feed(smaller, URL, "n").entries
            differ += got != expected or kept != len(expected)
    assert cut > 1000 and differ == 0, (cut, differ)


@pytest.mark.parametrize(("body", "why"), [
    (b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY e "x">]><rss><channel><item><title>&e;'
     b"</title></item></channel></rss>", "entities"),
    (b'<rss><channel xml:base="https://b.example/"><item><link>x</link></item></channel></rss>',
     "xml:base"),
    (b"<rss><channel><!-- <item> --><item><title>a</title></item></channel></rss>",
     "an item tag in a comment"),
    (b"<rss><channel><item><description><![CDATA[</item>]]></description></item></channel>"
     b"</rss>", "an item tag in CDATA"),
    (b"<rss><channel><item><item></item></item></channel></rss>", "nested"),
    (b"<rss><channel><item/><item></item></channel></rss>", "self-closing"),
    (b"<rss><channel><item></item><title>x</title><item></item></channel></rss>",
     "text between items"),
    (b"<feed><entry></entry><item></item></feed>", "items and entries mixed"),
    (b"<rss><channel><item><title>a</title></channel></rss>", "unclosed"),
    ("<rss><channel><item></item></channel></rss>".encode("utf-16"), "UTF-16"),
    (b"<rss><channel><title>no items</title></channel></rss>", "no items"),
])
def test_doubtful_documents_are_read_whole(body: bytes, why: str) -> None:
    """Each case: a document whose cut could read differently is not cut."""
    assert split_items(body) is None, why


def _feed(titles: list[str], built: str) -> bytes:
    items = "".join(f"<item><title>{t}</title><link>https://inc.example/{t[-3:]}</link>"
                    f"<guid>inc-{t[-3:]}</guid></item>" for t in titles)
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Inc'
            f"</title><lastBuildDate>{built}</lastBuildDate>{items}</channel></rss>").encode()


def test_a_changed_feed_is_read_from_its_new_items_and_alerts_them(
        tmp_path: Path, feed_server: FeedServer, sink: Sink,
        caplog: pytest.LogCaptureFixture) -> None:
    """After a first poll read whole, a document with one new item (and a new build date) is
    read from that item alone and alerts it; one whose build date alone changed reads no item;
    the stories already seen stay silent."""
    import asyncio

    from monitor.pipeline import Runtime, open_config

    old = [f"Weather in Oslo No. {n:03}" for n in range(20)]
    fresh = ["Russia and North Korea sign accord No. 900", *old]
    url = feed_server.serve("/inc.xml", _feed(old, "Sat, 05 Dec 2026 10:00:00 GMT"))
    config = write_config(tmp_path, [{"url": url, "name": "inc"}], [{"url": sink.url}])
    caplog.set_level(logging.INFO, logger="monitor")
    logged = []

    async def polls() -> None:
        rt = Runtime.from_config(open_config(config))  # one daemon: it remembers the items
        try:
            for body in (_feed(old, "Sat, 05 Dec 2026 10:00:00 GMT"),
                         _feed(fresh, "Sat, 05 Dec 2026 11:00:00 GMT"),
                         _feed(fresh, "Sat, 05 Dec 2026 12:00:00 GMT")):
                feed_server.serve("/inc.xml", body)
                caplog.clear()
                await rt.run_cycle()
                logged.append(next(r.getMessage() for r in caplog.records
                                   if r.getMessage().startswith("feed inc:")))
        finally:
            await rt.close()

    asyncio.run(polls())
    assert logged[0].startswith("feed inc: 20 entries, 20 new")
    assert logged[1].startswith("feed inc: 21 entries (1 changed, read alone), 1 new, 1 matched")
    assert logged[2].startswith("feed inc: 21 entries (0 changed, read alone), 0 new")
    assert sink.titles() == ["[russia-dprk] Russia and North Korea sign accord No. 900"]
