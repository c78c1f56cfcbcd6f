"""Generated feeds for benchmarks: ~70 KB RSS documents of 50 entries in several languages."""

from __future__ import annotations

import random
from xml.sax.saxutils import escape

SENTENCES = [
    "Officials met on Tuesday to discuss regional trade and transport links.",
    "Analysts said the talks could pave the way for new agreements next year.",
    "Российские и китайские официальные лица обсудили логистику и торговлю.",
    "정부 관계자들은 지역 경제 협력 방안을 논의했다고 밝혔다.",
    "政府関係者は地域の経済協力について協議したと述べた。",
    "官员们讨论了地区贸易和交通联系问题。",
    "Para pejabat membahas kerja sama ekonomi regional pada hari Selasa.",
    "Die Gespräche sollen im nächsten Monat in Berlin fortgesetzt werden.",
    "Les ministres ont évoqué la coopération économique régionale.",
    "Los ministros hablaron de la cooperación económica regional.",
]
MATCHING = [
    "Russia and North Korea signed a new agreement on rail transport.",
    "Лавров провёл переговоры с Чвэ Сон Хи в Пхеньяне.",
    "북한과 러시아가 경제협력 협정을 체결했다.",
]


def feed_body(index: int, version: int, entries: int = 50) -> bytes:
    """Feed `index` at `version`: a new version adds entries at the top (a changed feed)."""
    rng = random.Random(index * 7919 + version)
    items = []
    for number in range(version * 5, version * 5 + entries):
        words = rng.choices(SENTENCES, k=8)
        if rng.random() < 0.04:  # about two entries a feed match the default watchlist
            words[0] = rng.choice(MATCHING)
        # Descriptions carry HTML as real feeds do: paragraphs, links, emphasis.
        html = "".join(f'<p>{w} <a href="https://bench.example/t/{i}">more</a> <b>{i}</b></p>'
                       for i, w in enumerate(words))
        items.append(
            f"<item><title>{escape(words[0][:90])} ({index}-{number})</title>"
            f"<link>https://bench.example/{index}/{number}</link>"
            f"<guid>bench-{index}-{number}</guid><pubDate>Mon, 02 Jun 2025 10:00:00 +0000"
            f"</pubDate><description>{escape(html)}</description></item>")
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>Bench feed {index}</title><link>https://bench.example/{index}</link>"
            f"<description>generated</description>{''.join(reversed(items))}</channel></rss>"
            ).encode()
