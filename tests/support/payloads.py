"""Hostile feed payloads (entity bombs, external entities, deep nesting) and the check that
no forbidden character reaches an entry's text."""

from __future__ import annotations

import re

from monitor.models import Entry

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE rss [
 <!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
 <!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;"><!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
 <!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;"><!ENTITY h "&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;">
]>
<rss version="2.0"><channel><title>laughs</title>
<item><title>&h;</title><link>https://a.example/1</link></item></channel></rss>"""


QUADRATIC = (b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY big "' + b"x" * 50_000 + b'">]>'
             b'<rss version="2.0"><channel><title>q</title><item><title>t</title>'
             b"<description>" + b"&big;" * 20_000 + b"</description></item></channel></rss>")


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<rss version="2.0"><channel><title>x</title>
<item><title>leak &xxe;</title><link>https://a.example/x</link></item></channel></rss>"""


ITEM = (b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>c</title>'
        b"<item><title>%s</title><link>%s</link><description>%s</description></item>"
        b"</channel></rss>")


DEEP = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>d</title><item><title>t'
        b"</title><description>" + b"<x>" * 200_000 + b"</x>" * 200_000
        + b"</description></item></channel></rss>")


FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff"
                       "\U0001fffe\U0001ffff\U0010fffe\U0010ffff]")


def entry_strings(entry: Entry) -> list[str]:
    return [s for s in (entry.feed_name, entry.guid, entry.link, entry.title, entry.summary,
                        entry.content, entry.language) if s]

