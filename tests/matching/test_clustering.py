"""Story clustering: one alert per story across outlets, naming the outlets; distinct stories
stay distinct."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from monitor.matching.clustering import same_story
from monitor.surfaces.cli import main
from tests.support.project import write_config
from tests.support.servers import FeedServer, Sink

TITLES = [
    "Putin and Kim Jong Un sign mutual defence pact in Pyongyang",
    "Putin, Kim sign defence pact in Pyongyang - Wire",
    "Putin and Kim sign mutual defence pact in Pyongyang | World Desk",
    "Putin and Kim Jong Un sign defence pact in Pyongyang — Daily",
    "PUTIN AND KIM JONG UN SIGN MUTUAL DEFENCE PACT IN PYONGYANG",
    "Putin, Kim Jong Un sign mutual defence pact in Pyongyang: report",
    "Putin and Kim Jong Un sign a mutual defence pact in Pyongyang",
    "Putin & Kim Jong Un sign mutual defence pact in Pyongyang",
    "Putin and Kim Jong-un sign mutual defence pact in Pyongyang",
    "Putin and Kim Jong Un sign mutual defense pact in Pyongyang",
    "In Pyongyang, Putin and Kim Jong Un sign mutual defence pact",
    "Putin and Kim Jong Un sign mutual defence pact in Pyongyang (update)",
]


@pytest.mark.parametrize(("first", "second", "same"), [
    (TITLES[0], TITLES[10], True),
    (TITLES[0], TITLES[9], True),  # defence / defense
    ("북한·러시아, 군사협력 강화 합의 - 연합뉴스", "북한·러시아 군사협력 강화 합의", True),
    ("Putin and Kim sign defence pact in Pyongyang",
     "Putin hosts Kim Jong Un in Vladivostok for talks on arms", False),
    ("Russia and North Korea sign agreement on rail transport",
     "Russia and North Korea sign agreement on fisheries", False),
    ("Russia and North Korea expand trade ties", "Russia and North Korea expand military ties",
     False),
    ("Putin meets Kim Jong Un in Pyongyang", "Putin meets Kim Jong Un in Vladivostok", False),
    ("Russia and North Korea sign accord 12 on fisheries",
     "Russia and North Korea sign accord 13 on fisheries", False),  # numbers differ
])
def test_same_story_by_headline(first: str, second: str, same: bool) -> None:
    """Alike headlines (outlet suffixes, case, punctuation aside) are one story; headlines with
    other facts or other numbers are not."""
    assert same_story(first, "", second, "") is same


def test_same_wire_copy_is_one_story_despite_different_headlines() -> None:
    """Two outlets running the same wire copy under their own headlines report one story."""
    copy = ("Russian President Vladimir Putin and North Korean leader Kim Jong Un signed a "
            "treaty on Wednesday obliging each side to help the other if attacked.")
    assert same_story("Historic pact signed", copy, "Moscow and Pyongyang seal alliance",
                      copy + " Officials said.")


def _feed(index: int, title: str, link: str) -> bytes:
    return (f'<rss version="2.0"><channel><title>Outlet {index}</title><item><title>{title}'
            f"</title><link>{link}</link><guid>o{index}-1</guid>"
            f"<description>{title}.</description></item></channel></rss>").encode()


def _outlets_named_once(tmp_path: Path, feeds: list[dict[str, str]], sink: Sink) -> int:
    """Run once; assert two alerts (the pact story and the other one) and return how many of
    Outlet 0…11 the pact alert names."""
    config = write_config(tmp_path, feeds, [{"url": sink.url}])
    assert main(["--config", str(config), "run", "--once"]) == 0
    assert len(sink.received) == 2, sink.titles()
    pact = next(m for m in sink.received if "pact" in m["title"])
    return sum(f"Outlet {i}" in pact["message"] for i in range(12))


def test_twelve_outlets_one_story_give_one_alert_naming_them(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """Twelve feeds carry one story (varied titles, tracking-parameter links) and one carries
    another: two alerts, the first naming the other eleven outlets."""
    feeds = []
    for index, title in enumerate(TITLES):
        link = f"https://news.example.com/pact?utm_source=feed{index}&fbclid=x{index}"
        feeds.append({"url": feed_server.serve(f"/o{index}.xml", _feed(index, title, link)),
                      "name": f"Outlet {index}"})
    other = _feed(99, "Lavrov meets Choe Son Hui in Moscow on tourism links",
                  "https://other.example.org/lavrov")
    feeds.append({"url": feed_server.serve("/other.xml", other), "name": "Other outlet"})
    assert _outlets_named_once(tmp_path, feeds, sink) >= 10


WIRE = ("Russian President Vladimir Putin and North Korean leader Kim Jong Un signed a mutual "
        "defence pact in Pyongyang on Wednesday, obliging each side to help the other if "
        "attacked, state media in both countries said.")


def _burst_feed(index: int, entries: list[tuple[str, str, str]]) -> bytes:
    items = "".join(f"<item><title>{title}</title><link>{link}</link>"
                    f"<guid>o{index}-{n}</guid><description>{text}</description></item>"
                    for n, (title, link, text) in enumerate(entries))
    return (f'<rss version="2.0"><channel><title>Outlet {index}</title>{items}'
            "</channel></rss>").encode()


def test_burst_of_forty_entries_from_twelve_feeds_is_one_alert(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """40 entries about one story from 12 feeds (varied titles, one wire copy, one link under
    many tracking parameters, some on the outlets' own URLs) give one alert naming at least
    ten of the outlets; an unrelated story in the same feeds gives its own."""
    feeds = []
    count = 0
    for index in range(12):
        entries = []
        for copy in range(4 if index < 4 else 3):  # 4 × 4 + 8 × 3 = 40
            title = TITLES[(index + copy) % len(TITLES)]
            link = (f"https://news.example.com/pact?utm_source=o{index}&utm_medium={copy}"
                    if copy % 2 == 0 else f"https://outlet{index}.example/world/{copy}")
            entries.append((title, link, WIRE))
            count += 1
        if index == 5:
            entries.append(("Lavrov meets Choe Son Hui in Moscow on tourism links",
                            "https://other.example.org/lavrov", "Talks on tourism links."))
        feeds.append({"url": feed_server.serve(f"/b{index}.xml", _burst_feed(index, entries)),
                      "name": f"Outlet {index}"})
    assert count == 40
    assert _outlets_named_once(tmp_path, feeds, sink) >= 10


def test_alike_stories_a_week_apart_stay_two(tmp_path: Path, feed_server: FeedServer,
                                             sink: Sink) -> None:
    """A story like one alerted a week ago (other link) is a new story and alerts again."""
    feeds = [{"url": feed_server.serve("/a.xml", _feed(1, TITLES[0], "https://a.example/1")),
              "name": "A"}]
    config = write_config(tmp_path, feeds, [{"url": sink.url}])
    assert main(["--config", str(config), "run", "--once"]) == 0
    with sqlite3.connect(tmp_path / "monitor.db") as db:
        db.execute("update stories set created_at = datetime(created_at, '-7 days')")
    feed_server.serve("/a.xml", _feed(1, TITLES[0], "https://a.example/1")
                      .replace(b"</channel>", b"<item><title>" + TITLES[2].encode() +
                               b"</title><link>https://a.example/2</link></item></channel>"))
    assert main(["--config", str(config), "run", "--once"]) == 0
    assert len(sink.received) == 2


WIRE_VARIANTS = [
    "North Korea sends 10,000 troops to Russia, US says",
    "UPDATE 1-North Korea sends 10,000 troops to Russia, US says",
    "North Korea sends 10,000 troops to Russia, U.S. says - Reuters",
    "North Korea sends 10000 troops to Russia, United States says | World",
    "North Korea sends 10,000 troops to Russia, US says (video)",
    "North Korea sends 10,000 troops to Russia, US says: live",
    "North Korea 'sends 10,000 troops' to Russia, US says",
    "EXCLUSIVE-North Korea sends 10,000 troops to Russia, US says",
    "N. Korea sends 10,000 troops to Russia, US says",
    "North Korea sends 10.000 troops to Russia, US says",
    "UPDATE 2-North Korea sends 10,000 troops to Russia, U.S. says - Reuters",
    "North Korea sends 10 000 troops to Russia, US says | Asia | News",
]


@pytest.mark.parametrize("variant", WIRE_VARIANTS[1:])
def test_wire_prefixes_suffixes_numbers_and_abbreviations_are_one_headline(variant: str) -> None:
    """Wire prefixes, outlet and section suffixes, thousands separators, quotes and US/U.S./
    United States do not make another story."""
    assert same_story(WIRE_VARIANTS[0], "", variant, "")


@pytest.mark.parametrize(("first", "second"), [
    ("North Korea sends 10,000 troops to Russia, US says",
     "North Korea sends 12,000 troops to Russia, US says"),
    ("UPDATE 1-North Korea sends troops to Russia", "UPDATE 1-South Korea sends aid to Ukraine"),
])
def test_normalising_headlines_keeps_other_facts_apart(first: str, second: str) -> None:
    """Other numbers or other facts stay other stories after the headlines are normalised."""
    assert not same_story(first, "", second, "")


def test_outlets_are_named_by_feed_title_or_host_never_by_url(
        tmp_path: Path, feed_server: FeedServer, sink: Sink) -> None:
    """Twelve unnamed feeds carry one story under wire variants of its headline, one more an
    unrelated story: two alerts; the story's names at least ten outlets by their documents'
    titles (a feed without a title by its host), and no URL of a feed."""
    feeds = []
    for index, title in enumerate(WIRE_VARIANTS):
        link = f"https://outlet{index}.example/world/{index}"
        body = _feed(index, title, link)
        if index == 11:
            body = body.replace(b"<title>Outlet 11</title>", b"")
        feeds.append({"url": feed_server.serve(f"/w{index}.xml", body)})
    other = _feed(99, "Lavrov meets Choe Son Hui in Moscow on tourism links",
                  "https://other.example.org/lavrov")
    feeds.append({"url": feed_server.serve("/other.xml", other)})
    config = write_config(tmp_path, feeds, [{"url": sink.url}])
    assert main(["--config", str(config), "run", "--once"]) == 0
    assert len(sink.received) == 2, sink.titles()
    story = next(m for m in sink.received if "troops" in m["title"])
    named = [f"Outlet {i}" for i in range(11) if f"Outlet {i}" in story["message"]]
    assert len(named) + ("outlet11.example" in story["message"]) >= 10, story["message"]
    assert "outlet11.example" in story["message"]
    assert feed_server.base not in story["message"]
    assert "127.0.0.1" not in story["message"]
