"""Dedupe keys: which entry of a feed this is, and which story it tells across feeds.

- `entry_key`: stable within one feed: the GUID, else the canonical link, else a hash of the text.
- `story_keys`: shared across feeds: `url:` + canonical link, and `title:` + normalised title when
  the title is long enough to name one story (a short one such as "News" would merge unrelated
  items).
A story is new when none of its story keys was recorded before, so a re-GUIDed entry with the same
link, a re-titled entry with the same GUID, or the same link carried by a second feed alert once.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from monitor.models import Entry

_TRACKING = re.compile(
    r"^(utm_\w+|fbclid|gclid|dclid|gbraid|wbraid|msclkid|mc_cid|mc_eid|yclid|_ga|_gl|igshid|"
    r"ref|ref_src|cmpid|ocid|mkt_tok|spm|at_medium|at_campaign|ns_\w+|s_kwcid)$",
    re.IGNORECASE,
)
_NON_TEXT = re.compile(r"[\W_]+")
_MIN_TITLE_CHARS = 24
_MIN_SPACELESS_TITLE_CHARS = 10
_SPACELESS = re.compile("[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")


def canonical_url(url: str) -> str:
    """Lower-case scheme and host, no `www.`, no tracking parameters, no fragment, http ≡ https."""
    try:
        parts = urlsplit(url.strip())
        number = parts.port
    except ValueError:  # an invalid host or port
        return url.strip()
    host = (parts.hostname or "").lower().removeprefix("www.")
    port = f":{number}" if number and number not in (80, 443) else ""
    query = urlencode(sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                             if not _TRACKING.match(k)))
    path = parts.path.rstrip("/") or "/"
    return urlunsplit(("https", host + port, path, query, ""))


def normalise_title(title: str) -> str:
    """Case, punctuation and spacing folded; the same headline from two feeds gives one string."""
    folded = unicodedata.normalize("NFKC", title).casefold()
    return " ".join(_NON_TEXT.sub(" ", folded).split())


def entry_key(entry: Entry) -> str:
    """Identifies an entry within its feed across polls."""
    if entry.guid:
        return "guid:" + entry.guid.strip()[:500]
    if entry.link:
        return "url:" + canonical_url(entry.link)[:500]
    text = f"{entry.title}\n{entry.summary}".encode()
    return "hash:" + hashlib.sha256(text).hexdigest()


def _title_is_specific(title: str) -> bool:
    if len(_SPACELESS.findall(title)) >= _MIN_SPACELESS_TITLE_CHARS:
        return True
    return len(title) >= _MIN_TITLE_CHARS and len(title.split()) >= 4


def story_keys(entry: Entry) -> list[str]:
    """Keys that identify the story across feeds (possibly none)."""
    keys = []
    if entry.link:
        keys.append("url:" + canonical_url(entry.link)[:500])
    title = normalise_title(entry.title)
    if _title_is_specific(title):
        keys.append("title:" + title[:500])
    return keys
