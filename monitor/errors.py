"""The one exception tree of monitor: every error it raises on purpose derives from
`MonitorError`, so a caller can catch monitor's failures without catching Python's bugs.

    MonitorError
    ├── ConfigError          the config file cannot be used (message names the file and line)
    ├── WatchlistError       a watchlist cannot compile (names the alias and its place)
    ├── OpmlError            an OPML document cannot be read
    ├── FetchError           a fetch failed for a reason found while reading the body
    │   └── BodyTooLarge     the body, after decompression, is over the configured cap
    ├── ParseError           a feed document cannot be parsed (its message is the reason)
    ├── StoreError           the database cannot be used (unreachable, unwritable, newer)
    │   └── UnknownFeed      a feed that has no row in the database
    └── TemplateError        a user's message template failed or overran its bounds

The stages turn their collaborators' own exceptions (httpx, SQLAlchemy, pydantic, lxml)
into these at their edge, keeping the collaborator's reason in the message.
"""

from __future__ import annotations

from pathlib import Path


class MonitorError(Exception):
    """Any failure monitor reports on purpose."""


class ConfigError(MonitorError):
    """A config file that cannot be used, with where and why."""

    def __init__(self, path: Path | str, message: str, key: str = "", line: int | None = None):
        self.path, self.key, self.line, self.message = str(path), key, line, message
        where = self.path + (f":{line}" if line else "")
        super().__init__(f"{where}: {key + ': ' if key else ''}{message}")


class WatchlistError(MonitorError):
    """A watchlist that cannot compile; `loc` is the config key path of the culprit (the
    config loader turns it into a ConfigError naming the line)."""

    def __init__(self, problem: str, loc: tuple[str | int, ...]):
        super().__init__(problem)
        self.problem, self.loc = problem, loc


class OpmlError(MonitorError):
    """An OPML document that cannot be read."""


class FetchError(MonitorError):
    """A fetch that failed for a reason found while reading the body."""


class BodyTooLarge(FetchError):
    """The body, after decompression, is over the configured cap."""


class ParseError(MonitorError):
    """A feed document that cannot be parsed."""


class StoreError(MonitorError):
    """The database cannot be used (unreachable, unwritable, or from a newer monitor)."""


class UnknownFeed(StoreError):
    """A feed that has no row in the database (it was never configured here)."""


class TemplateError(MonitorError):
    """A user's template failed on a story (a Jinja2 error), or overran its bounds."""

    def __init__(self, reason: str, overran: bool = False):
        super().__init__(" ".join(reason.split())[:300])
        self.overran = overran
